//! The result of a finished rag job: the answer and whether it was defended,
//! its citations resolved to passages, the critic's verdict with its
//! confidence, every open finding with its step, and the spend.

use super::{CRITIQUE, EXTRACT, RETRIEVE, SYNTHESISE};
use upshift_shared::StepState;
use upshift_shared::verify::rag::extractive::{NO_ANSWER, compose, locate, margin};
use upshift_shared::verify::rag::question::classify;
use upshift_shared::verify::rag::text::citations;
use upshift_shared::verify::rag::{Retrieval, parse_facts};

/// A finished (or stopped) step's name, state, output and findings.
pub struct Done<'a> {
    /// Step name.
    pub name: &'a str,
    /// `accepted`, `unresolved`, `cancelled` …
    pub state: StepState,
    /// Output kept (empty when none).
    pub output: &'a str,
    /// Findings still open on it.
    pub open_findings: &'a serde_json::Value,
}

/// What the result is built from.
pub struct Outcome<'a> {
    /// The question.
    pub query: &'a str,
    /// The steps.
    pub steps: &'a [Done<'a>],
    /// Whether every step was defended.
    pub defended: bool,
    /// Spend.
    pub cost_usd: f64,
    /// What the steps would have cost once on the strong tier.
    pub always_strong_cost_usd: f64,
}

/// The job's result document.
pub fn result(o: &Outcome<'_>) -> serde_json::Value {
    let find = |n: &str| {
        o.steps
            .iter()
            .find(|s| s.name == n && !s.output.is_empty())
            .map(|s| s.output)
    };
    let retrieval = find(RETRIEVE).and_then(Retrieval::parse);
    let span = find(EXTRACT)
        .filter(|s| parse_facts(s).is_none() && !s.trim().eq_ignore_ascii_case(NO_ANSWER))
        .map(str::trim);
    // The synthesised answer; when the job stopped before synthesis, the
    // answer composed from the chosen span (still undefended).
    let answer: Option<String> = find(SYNTHESISE).map(|a| a.trim().to_string()).or_else(|| {
        let (span, r) = span.zip(retrieval.as_ref())?;
        compose(o.query, span, r)
    });
    let cites: Vec<serde_json::Value> = answer
        .as_deref()
        .map(citations)
        .unwrap_or_default()
        .iter()
        .filter_map(|id| retrieval.as_ref()?.passages.iter().find(|p| p.passage_id == *id))
        .map(|p| {
            serde_json::json!({
                "passage_id": p.passage_id, "document_id": p.document_id, "title": p.title,
                "snippet": snippet(&p.text, 240),
            })
        })
        .collect();
    let open: Vec<serde_json::Value> = o
        .steps
        .iter()
        .flat_map(|s| {
            s.open_findings
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut f| {
                    f["step"] = s.name.into();
                    f
                })
        })
        .collect();
    let facts = find(EXTRACT).and_then(parse_facts);
    let verdict: serde_json::Value = find(CRITIQUE)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or(serde_json::Value::Null);
    // How close the answer's evidence is to the question, and the best
    // evidence retrieval found: what the relevance floors are set from.
    let evidence_similarity = span
        .zip(retrieval.as_ref())
        .and_then(|(s, r)| locate(s, r))
        .and_then(|e| e.similarity);
    let best_similarity = retrieval.as_ref().and_then(Retrieval::best_similarity);
    let evidence_margin = span.zip(retrieval.as_ref()).and_then(|(s, r)| margin(o.query, s, r));
    // What the search found; a definition looked up for a candidate is no
    // search result (`definitions`).
    let retrieved: Option<Vec<&str>> = retrieval
        .as_ref()
        .map(|r| r.results().map(|p| p.passage_id.as_str()).collect());
    let definitions: Option<Vec<&str>> = retrieval
        .as_ref()
        .map(|r| r.definitions().map(|p| p.passage_id.as_str()).collect());
    serde_json::json!({
        "answer": answer,
        "defended": o.defended,
        "short_answer": span.filter(|_| classify(o.query).wants_span()),
        "question_type": classify(o.query).as_str(),
        "citations": cites,
        "verdict": verdict,
        "open_findings": open,
        "facts": facts,
        "retrieval_mode": retrieval.as_ref().map(|r| r.mode.clone()),
        "evidence_similarity": evidence_similarity,
        "best_similarity": best_similarity,
        "evidence_margin": evidence_margin,
        "search_terms": retrieval.as_ref().map(|r| r.terms.clone()),
        "retrieved": retrieved,
        "definitions": definitions,
        "cost_usd": o.cost_usd,
        "always_strong_cost_usd": o.always_strong_cost_usd,
    })
}

/// The first `max` bytes of `text` (on a character boundary), with `…` when cut.
fn snippet(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    format!("{}…", &text[..text.floor_char_boundary(max)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_resolve_citations_and_say_whether_the_answer_was_defended() {
        let r = r#"{"terms":"wal","passages":[{"passage_id":"a#1","document_id":"a","title":"A","score":0.5,"text":"`wal_level` sets it."}]}"#;
        let empty = serde_json::json!([]);
        let open = serde_json::json!([{"code": "low_confidence", "detail": "0.4"}]);
        let done = |name, output, open_findings| Done {
            name,
            state: StepState::Accepted,
            output,
            open_findings,
        };
        let steps = [
            done(RETRIEVE, r, &empty),
            done(EXTRACT, "wal_level", &empty),
            done(SYNTHESISE, "It is wal_level [a#1]. Also [zz#9].", &empty),
            done(
                CRITIQUE,
                r#"{"verdict":"supported","confidence":0.4,"tier":"small"}"#,
                &open,
            ),
        ];
        let q = "Which setting sets it?";
        let outcome = |steps| Outcome {
            query: q,
            steps,
            defended: false,
            cost_usd: 0.5,
            always_strong_cost_usd: 2.0,
        };
        let v = result(&outcome(&steps));
        assert_eq!(v["citations"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["citations"][0]["document_id"], "a");
        assert_eq!(
            (v["defended"].as_bool(), v["short_answer"].as_str()),
            (Some(false), Some("wal_level"))
        );
        assert_eq!(v["open_findings"][0]["step"], "critique");
        assert_eq!(v["verdict"]["confidence"], 0.4);
        // Stopped before synthesis: the answer is composed from the span.
        let v = result(&outcome(&steps[..2]));
        assert_eq!(v["answer"], "wal_level — `wal_level` sets it. [a#1]");
        assert_eq!(snippet("ééé", 3), "é…");
    }
}
