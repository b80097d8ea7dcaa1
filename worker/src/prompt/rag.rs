//! Prompts of the `rag` job's steps. A step's context carries the retrieve
//! step's passages (and the facts, and the answer); they are laid out as
//! `[passage_id] title: text` so the model can copy the ids it must cite.

use super::Prompt;
use upshift_shared::TaskType;
use upshift_shared::messages::TaskMessage;
use upshift_shared::verify::rag::{Retrieval, parse_facts};

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
        let g = citation_grammar(&task(TaskType::Synthesise, vec![("retrieve", R)])).unwrap();
        assert!(g.contains("id ::= \"wal.html#1\""), "{g}");
        let narrowed = narrow_ids(&task(TaskType::Extract, vec![("retrieve", R)]), facts_schema());
        assert_eq!(
            narrowed.pointer("/properties/facts/items/properties/passage_id/enum/0"),
            Some(&serde_json::json!("wal.html#1"))
        );
    }
}
