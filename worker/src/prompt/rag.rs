//! Prompts of the `rag` job's steps. A step's context carries the retrieve
//! step's passages (and the facts, and the answer); they are laid out as
//! `[passage_id] title: text` so the model can copy the ids it must cite.
//!
//! Steps scored as labels (an extractive choice among candidate spans, a
//! critique's verdict) put the evidence first and the question last, with
//! the instruction after it: the content-free twin used for calibration
//! replaces only the question (and the answer), and the phrasings differ
//! only in the instruction, so the model reads the evidence once per call.

use super::Prompt;
use upshift_shared::TaskType;
use upshift_shared::messages::TaskMessage;
use upshift_shared::verify::rag::extractive::EVIDENCE_SENTENCES;
use upshift_shared::verify::rag::text::{citations, strip_citations};
use upshift_shared::verify::rag::{Retrieval, parse_facts};

/// Phrasings of a label-scored rag prompt (variant `v` uses `v % 3`).
const EXTRACT_ASKS: [&str; 3] = [
    "Answer the question with the exact name, value or phrase from the passages.",
    "Which name, value or phrase from the passages answers the question? Copy it exactly.",
    "Reply with only the answer, copied from the passages.",
];
const CRITIQUE_ASKS: [&str; 3] = [
    "Does the passage support the proposed answer to the question? Reply supported or unsupported.",
    "Is the proposed answer right according to the passage? Reply supported or unsupported.",
    "Check the proposed answer against the passage. Reply supported or unsupported.",
];

/// The prompt of a label-scored rag step (an extraction choosing among
/// candidate spans, a critique choosing a verdict), or `None` for other
/// tasks. `content_free`: the calibration twin, with "N/A" for the
/// question and the answer.
pub(super) fn build_labels(task: &TaskMessage, variant: u32, content_free: bool) -> Option<Prompt> {
    if task.labels.is_empty() || !matches!(task.task, TaskType::Extract | TaskType::Critique) {
        return None;
    }
    let r = retrieval(task)?;
    let question = if content_free { "N/A" } else { task.input.trim() };
    let v = (variant % 3) as usize;
    let (content, instruction) = match task.task {
        TaskType::Extract => {
            let mut content = String::from("Passages:");
            for (_, sentence, _) in best_sentences(&r) {
                content.push_str(&format!("\n- {}", sentence.trim()));
            }
            content.push_str(&format!("\n\nQuestion: {question}"));
            (content, EXTRACT_ASKS[v])
        }
        _ => {
            let answer = task
                .context
                .iter()
                .find(|c| Retrieval::parse(&c.output).is_none())
                .map(|c| c.output.as_str())
                .unwrap_or_default();
            let cited = citations(answer);
            let mut content = String::new();
            for p in r
                .passages
                .iter()
                .filter(|p| cited.contains(&p.passage_id) || cited.is_empty())
            {
                content.push_str(&format!("Passage ({}): {}\n", p.title, p.text.trim()));
            }
            let shown = if content_free {
                "N/A".to_string()
            } else {
                strip_citations(answer).trim().to_string()
            };
            content.push_str(&format!("\nQuestion: {question}\nProposed answer: {shown}"));
            (content, CRITIQUE_ASKS[v])
        }
    };
    Some(Prompt {
        instruction: instruction.to_string(),
        content,
        instruction_last: true,
    })
}

/// The sentences candidates were drawn from: the most similar to the
/// question first (in ranking order without embeddings).
fn best_sentences(r: &Retrieval) -> Vec<(String, String, Option<f32>)> {
    let mut all = r.scored_sentences();
    all.sort_by(|a, b| b.2.unwrap_or(0.0).total_cmp(&a.2.unwrap_or(0.0)));
    all.truncate(EVIDENCE_SENTENCES);
    all
}

/// The prompt of a rag step after retrieval, or `None` when the task
/// carries no retrieval (the retrieve step itself uses the plain prompt).
pub(super) fn build(task: &TaskMessage) -> Option<Prompt> {
    let retrieval = retrieval(task);
    let instruction = match task.task {
        _ if retrieval.is_none() => return None,
        TaskType::Extract => {
            "Copy up to 3 sentences from the passages that answer the question, each with the id \
             of the passage it comes from. Reply with only JSON: \
             {\"facts\": [{\"fact\": \"<sentence copied from a passage>\", \"passage_id\": \"<id>\"}]}"
        }
        TaskType::Synthesise => {
            "Answer the question in one to three sentences, using only the passages. End every \
             sentence with the id of the passage it comes from in square brackets, for example \
             [page.html#2]."
        }
        TaskType::Critique => {
            "Check the answer against the passages it cites. Reply with only JSON: \
             {\"verdict\": \"supported\" or \"unsupported\", \"reason\": \"<one sentence>\"}"
        }
        _ => return None,
    };
    let mut content = format!("Question: {}", task.input.trim());
    if let Some(r) = &retrieval {
        content.push_str("\n\nPassages:");
        for p in &r.passages {
            content.push_str(&format!("\n[{}] {}: {}", p.passage_id, p.title, p.text.trim()));
        }
    }
    for c in task.context.iter().filter(|c| Retrieval::parse(&c.output).is_none()) {
        match (task.task, parse_facts(&c.output)) {
            (TaskType::Synthesise, Some(facts)) => {
                content.push_str("\n\nFacts:");
                for f in facts {
                    content.push_str(&format!("\n- {} [{}]", f.fact.trim(), f.passage_id));
                }
            }
            (TaskType::Critique, _) => content.push_str(&format!("\n\nAnswer: {}", c.output.trim())),
            _ => {}
        }
    }
    Some(Prompt {
        instruction: instruction.to_string(),
        content,
        instruction_last: false,
    })
}

/// The retrieval among the task's context, if any.
fn retrieval(task: &TaskMessage) -> Option<Retrieval> {
    task.context.iter().find_map(|c| Retrieval::parse(&c.output))
}

/// A llama.cpp grammar for a rag synthesis: one to three sentences, each
/// ending in ` [<retrieved passage id>].` Small local models do not follow
/// the citation instruction on their own; with the grammar the format holds
/// and the verifiers judge what the sentences say. `None` for other tasks.
pub fn citation_grammar(task: &TaskMessage) -> Option<String> {
    if task.task != TaskType::Synthesise {
        return None;
    }
    let r = retrieval(task).filter(|r| !r.passages.is_empty())?;
    let ids: Vec<String> = r
        .passages
        .iter()
        .map(|p| serde_json::to_string(&p.passage_id).expect("strings serialise"))
        .collect();
    Some(format!(
        "root ::= sentence (\" \" sentence){{0,2}}\n\
         sentence ::= [A-Za-z0-9] [^\\[\\]\\n.!?]{{10,200}} \" [\" id \"].\"\n\
         id ::= {}\n",
        ids.join(" | ")
    ))
}

/// Narrows `passage_id` in a facts schema to the retrieved ids, so a
/// grammar-constrained model can only cite what was retrieved. Other
/// schemas are returned unchanged.
pub(super) fn narrow_ids(task: &TaskMessage, mut schema: serde_json::Value) -> serde_json::Value {
    let Some(r) = retrieval(task).filter(|r| !r.passages.is_empty()) else {
        return schema;
    };
    let ids: Vec<&str> = r.passages.iter().map(|p| p.passage_id.as_str()).collect();
    if let Some(id) = schema.pointer_mut("/properties/facts/items/properties/passage_id") {
        *id = serde_json::json!({ "enum": ids });
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use upshift_shared::verify::rag::facts_schema;

    fn task(t: TaskType, context: Vec<(&str, &str)>) -> TaskMessage {
        crate::prompt::test_task(t, "What does wal_level control?", &context, &[])
    }

    const R: &str = r#"{"terms":"wal_level","passages":[{"passage_id":"wal.html#1","document_id":"wal.html","title":"WAL","score":0.4,"text":"wal_level determines how much is written."}]}"#;

    #[test]
    fn rag_prompts_lay_out_passages_facts_and_answer() {
        let facts = r#"{"facts":[{"fact":"wal_level determines it","passage_id":"wal.html#1"}]}"#;
        let p = build(&task(TaskType::Synthesise, vec![("retrieve", R), ("extract", facts)])).unwrap();
        assert!(
            p.content.contains("[wal.html#1] WAL: wal_level determines"),
            "{}",
            p.content
        );
        assert!(p.content.contains("- wal_level determines it [wal.html#1]"));
        let c = build(&task(
            TaskType::Critique,
            vec![("retrieve", R), ("synthesise", "It does [wal.html#1].")],
        ))
        .unwrap();
        assert!(c.content.ends_with("Answer: It does [wal.html#1]."));
        assert!(build(&task(TaskType::Extract, vec![])).is_none(), "not a rag step");
        // Label-scored steps: evidence first, question last; the content-free
        // twin differs only in the question (and answer).
        let mut pick = task(TaskType::Extract, vec![("retrieve", R)]);
        pick.labels = vec!["wal_level".into(), "none of these".into()];
        let real = build_labels(&pick, 0, false).unwrap().user_message();
        let null = build_labels(&pick, 0, true).unwrap().user_message();
        assert!(real.starts_with("Passages:\n- wal_level determines"), "{real}");
        let shared = real.chars().zip(null.chars()).take_while(|(a, b)| a == b).count();
        assert!(real[..shared].ends_with("Question: "), "{real}");
        assert!(null.contains("Question: N/A"));
        let mut judge = task(
            TaskType::Critique,
            vec![("retrieve", R), ("synthesise", "It is wal_level [wal.html#1].")],
        );
        judge.labels = vec!["supported".into(), "unsupported".into()];
        let c = build_labels(&judge, 1, false).unwrap().user_message();
        assert!(
            c.contains("Proposed answer: It is wal_level .") && c.ends_with("Reply supported or unsupported."),
            "{c}"
        );
        let g = citation_grammar(&task(TaskType::Synthesise, vec![("retrieve", R)])).unwrap();
        assert!(g.contains("id ::= \"wal.html#1\""), "{g}");
        let narrowed = narrow_ids(&task(TaskType::Extract, vec![("retrieve", R)]), facts_schema());
        assert_eq!(
            narrowed.pointer("/properties/facts/items/properties/passage_id/enum/0"),
            Some(&serde_json::json!("wal.html#1"))
        );
    }
}
