//! The `rag` job: a question answered from a collection in four routed
//! steps, each verified against what retrieval found.
//!
//! 1. `retrieve` (retrieve_plan): hybrid search with the question itself,
//!    done by the orchestrator without a model (tier zero, at submission).
//!    When it misses its floor (`retrieval_empty`) the step escalates to a
//!    model that rewrites the question, and both are searched;
//! 2. `extract`: extractive mode — the model chooses among spans of the
//!    passages that fit the question's type (labels); generative mode —
//!    facts `[{fact, passage_id}]` under a schema;
//! 3. `synthesise`: extractive mode — composed without a model from the
//!    chosen span and the sentence it comes from, cited (tier zero);
//!    generative mode — the model writes the cited answer;
//! 4. `critique`: a tier below the answering model scores `supported` /
//!    `unsupported`; its verdict counts only at the confidence measured to
//!    be trustworthy for its tier (`routing.accept.<tier>.by_class`). A
//!    rejection re-runs the answering step one tier up
//!    (`critique_rejected`) and the critique runs again.
//!
//! A step that no tier can defend ends `unresolved`, and so does the job:
//! its best answer is kept, marked undefended, with the findings.
//! [`plan`] builds the steps and [`result`] assembles the job's result;
//! what the router does differently for these steps is in `router::rag`.

pub mod result;

use crate::error::{Error, Result};
use crate::request::{JobRequest, PlannedStep};
use upshift_shared::TaskType;
use upshift_shared::config::AnswerMode;
use upshift_shared::policy::estimate_ambiguity;
use upshift_shared::verify::VerifierKind;
use upshift_shared::verify::rag::{VERDICTS, facts_schema};

/// Longest question, in bytes.
pub const MAX_QUERY_BYTES: usize = 2000;

/// Step names, in order; the router finds steps by these.
pub const RETRIEVE: &str = "retrieve";
/// The extraction step.
pub const EXTRACT: &str = "extract";
/// The synthesis step.
pub const SYNTHESISE: &str = "synthesise";
/// The critique step.
pub const CRITIQUE: &str = "critique";

/// Validates a `rag` request and plans its four steps for answer `mode`.
pub fn plan(req: &JobRequest, mode: AnswerMode) -> Result<Vec<PlannedStep>> {
    if !req.steps.is_empty() {
        return Err(Error::invalid(
            "steps",
            "a `rag` job plans its own steps; leave `steps` out",
        ));
    }
    let collection = req
        .collection
        .as_deref()
        .ok_or_else(|| Error::invalid("collection", "a `rag` job needs the collection to search"))?;
    crate::request::valid_name(collection)?;
    let query = req.query.as_deref().unwrap_or_default().trim();
    if query.is_empty() {
        return Err(Error::invalid("query", "a `rag` job needs a non-empty question"));
    }
    if query.len() > MAX_QUERY_BYTES || query.contains('\0') {
        return Err(Error::invalid(
            "query",
            format!("at most {MAX_QUERY_BYTES} bytes, without NUL characters"),
        ));
    }
    let base = estimate_ambiguity(query);
    let step = |idx: i32, name: &str, task: TaskType, deps: &[i32], verifiers: Vec<VerifierKind>| PlannedStep {
        idx,
        name: name.to_string(),
        task,
        class: format!("rag_{name}"),
        input: query.to_string(),
        depends_on: deps.to_vec(),
        verifiers,
        output_schema: None,
        labels: Vec::new(),
        ambiguity: base,
        ambiguity_source: "estimate",
        max_tokens: None,
        stop: Vec::new(),
    };
    let extract = match mode {
        // Labels (the candidate spans) are set when the step starts.
        AnswerMode::Extractive => step(
            1,
            EXTRACT,
            TaskType::Extract,
            &[0],
            vec![VerifierKind::Label, VerifierKind::Span],
        ),
        // A different task from choosing a span: its own class, so the
        // trust measured for one is not lent to the other.
        AnswerMode::Generative => PlannedStep {
            output_schema: Some(facts_schema()),
            class: "rag_facts".into(),
            ..step(
                1,
                EXTRACT,
                TaskType::Extract,
                &[0],
                vec![VerifierKind::JsonSchema, VerifierKind::FactCitations],
            )
        },
    };
    Ok(vec![
        step(0, RETRIEVE, TaskType::RetrievePlan, &[], vec![VerifierKind::Retrieval]),
        extract,
        step(
            2,
            SYNTHESISE,
            TaskType::Synthesise,
            &[0, 1],
            upshift_shared::verify::rag::SYNTHESISE_VERIFIERS.to_vec(),
        ),
        PlannedStep {
            labels: VERDICTS.map(String::from).to_vec(),
            ..step(3, CRITIQUE, TaskType::Critique, &[0, 2], vec![VerifierKind::Label])
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use upshift_shared::config::Config;

    fn req(v: serde_json::Value) -> JobRequest {
        serde_json::from_value(v).unwrap()
    }

    fn plan_job(r: &JobRequest) -> Result<Vec<PlannedStep>> {
        let cfg = Config::from_toml_over_defaults("").unwrap();
        crate::router::Kind::plan(r, &cfg)
    }

    fn field(v: serde_json::Value) -> String {
        match plan_job(&req(v)) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    fn steps_req() -> JobRequest {
        req(json!({"kind":"rag","collection":"pg","query":"Which setting sets it?","blast_radius":"low"}))
    }

    #[test]
    fn plans_four_dependent_steps_and_names_bad_fields() {
        let ok = json!({"kind":"rag","collection":"pg","query":"What does wal_level control?","blast_radius":"low"});
        let steps = plan_job(&req(ok)).unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [RETRIEVE, EXTRACT, SYNTHESISE, CRITIQUE]);
        assert_eq!(steps[3].depends_on, vec![0, 2]);
        assert_eq!(steps[3].labels, VERDICTS);
        let generative = plan(&steps_req(), AnswerMode::Generative).unwrap();
        assert!(generative[1].output_schema.is_some());
        assert_eq!(generative[1].class, "rag_facts");
        let extractive = plan(&steps_req(), AnswerMode::Extractive).unwrap();
        assert_eq!(extractive[1].verifiers, [VerifierKind::Label, VerifierKind::Span]);
        assert_eq!(
            field(json!({"kind":"rag","collection":"pg","query":"  ","blast_radius":"low"})),
            "query"
        );
        assert_eq!(
            field(json!({"kind":"rag","query":"q","blast_radius":"low"})),
            "collection"
        );
        assert_eq!(
            field(json!({"kind":"rag","collection":"Bad Name","query":"q","blast_radius":"low"})),
            "collection"
        );
        assert_eq!(
            field(json!({"kind":"steps","collection":"pg","blast_radius":"low",
                "steps":[{"name":"a","task":"answer","input":"x"}]})),
            "collection"
        );
    }
}
