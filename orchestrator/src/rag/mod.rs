//! The `rag` job: a question answered from a collection in four routed
//! steps, each verified against what retrieval found.
//!
//! 1. `retrieve` (retrieve_plan): the model turns the question into search
//!    terms; the router runs the search and stores the passages as the
//!    step's output (`retrieval_empty` when too few clear the floor);
//! 2. `extract`: facts `[{fact, passage_id}]` (schema, citations, support,
//!    entities);
//! 3. `synthesise`: the answer with `[passage_id]` citations (coverage,
//!    support, conflicting evidence);
//! 4. `critique`: a tier below the synthesiser judges the answer; a
//!    rejection re-runs synthesis one tier up (`critique_rejected`) and the
//!    critique runs again.
//!
//! [`plan`] builds the steps; [`route`] holds what the router does
//! differently for them.

pub mod route;

use crate::error::{Error, Result};
use crate::planner::{JobRequest, PlannedStep};
use upshift_shared::TaskType;
use upshift_shared::policy::estimate_ambiguity;
use upshift_shared::verify::VerifierKind;
use upshift_shared::verify::rag::{RetrievalFloor, facts_schema, verdict_schema};

/// Longest question, in bytes.
pub const MAX_QUERY_BYTES: usize = 2000;
/// Passages the retrieve step keeps for the later steps.
pub const PASSAGES: i64 = 4;
/// Retrieval must find at least this: two passages with a rank of 0.03 or
/// more. Measured on the PostgreSQL docs (`ts_rank` normalised by log
/// length, words ORed): the best passages for twenty real questions score
/// 0.04–0.12, terms that match nothing useful ("zebra unicorn") 0.025 for a
/// single passage. OR-ranking cannot tell a vague query from a good one, so
/// the floor catches searches that found (almost) nothing.
pub const FLOOR: RetrievalFloor = RetrievalFloor {
    min_passages: 2,
    min_score: 0.03,
};

/// Step names, in order; the router finds steps by these.
pub const RETRIEVE: &str = "retrieve";
/// The extraction step.
pub const EXTRACT: &str = "extract";
/// The synthesis step.
pub const SYNTHESISE: &str = "synthesise";
/// The critique step.
pub const CRITIQUE: &str = "critique";

/// Validates a `rag` request and plans its four steps.
pub fn plan(req: &JobRequest) -> Result<Vec<PlannedStep>> {
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
    crate::collections::valid_name(collection)?;
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
    };
    Ok(vec![
        step(0, RETRIEVE, TaskType::RetrievePlan, &[], vec![VerifierKind::Retrieval]),
        PlannedStep {
            output_schema: Some(facts_schema()),
            ..step(
                1,
                EXTRACT,
                TaskType::Extract,
                &[0],
                vec![VerifierKind::JsonSchema, VerifierKind::FactCitations],
            )
        },
        step(
            2,
            SYNTHESISE,
            TaskType::Synthesise,
            &[0, 1],
            vec![VerifierKind::AnswerCitations],
        ),
        PlannedStep {
            output_schema: Some(verdict_schema()),
            ..step(3, CRITIQUE, TaskType::Critique, &[0, 2], vec![VerifierKind::JsonSchema])
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::plan as plan_job;
    use serde_json::json;

    fn req(v: serde_json::Value) -> JobRequest {
        serde_json::from_value(v).unwrap()
    }

    fn field(v: serde_json::Value) -> String {
        match plan_job(&req(v)) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn plans_four_dependent_steps_and_names_bad_fields() {
        let ok = json!({"kind":"rag","collection":"pg","query":"What does wal_level control?","blast_radius":"low"});
        let steps = plan_job(&req(ok)).unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [RETRIEVE, EXTRACT, SYNTHESISE, CRITIQUE]);
        assert_eq!(steps[3].depends_on, vec![0, 2]);
        assert!(steps[1].output_schema.is_some());
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
