//! The planner: validates a job request and turns a `steps` job into its
//! steps. Which planner a job gets is its kind's (`router::Kind::plan`); a
//! rag job's steps are planned in `crate::rag`.
//!
//! Validation happens entirely before anything is written, so a bad request
//! leaves no rows behind. A step may depend only on steps listed before it,
//! which makes every plan a DAG by construction.

use crate::error::{Error, Result};
use crate::request::has_nul;
pub use crate::request::{
    JobKind, JobRequest, MAX_INPUT_BYTES, MAX_LABELS, MAX_STEP_TOKENS, MAX_STEPS, MAX_STOP, PlannedStep, StepRequest,
};
use upshift_shared::TaskType;
use upshift_shared::policy::estimate_ambiguity;
use upshift_shared::verify::{VerifierKind, default_verifiers, validate_schema};

/// Checks what every kind of request carries (metadata, budget); the
/// error names the offending field.
pub fn check_request(req: &JobRequest) -> Result<()> {
    // Postgres text and jsonb cannot hold NUL characters: refuse them up front.
    if let Some(m) = &req.metadata
        && has_nul(m)
    {
        return Err(Error::invalid("metadata", "must not contain NUL characters"));
    }
    if let Some(b) = req.budget_usd
        && !(b.is_finite() && (0.0..=1_000_000.0).contains(&b))
    {
        return Err(Error::invalid("budget_usd", "must be a number between 0 and 1000000"));
    }
    Ok(())
}

/// Plans a `steps` job: its listed steps, validated, in order.
pub fn plan_steps(req: &JobRequest) -> Result<Vec<PlannedStep>> {
    for (field, given) in [("collection", req.collection.is_some()), ("query", req.query.is_some())] {
        if given {
            return Err(Error::invalid(field, "only `rag` jobs take this field"));
        }
    }
    if req.steps.is_empty() {
        return Err(Error::invalid("steps", "must list at least one step"));
    }
    if req.steps.len() > MAX_STEPS {
        return Err(Error::invalid("steps", format!("at most {MAX_STEPS} steps")));
    }
    let mut out: Vec<PlannedStep> = Vec::with_capacity(req.steps.len());
    for (i, s) in req.steps.iter().enumerate() {
        let field = |f: &str| format!("steps[{i}].{f}");
        for (f, text) in [("name", &s.name), ("input", &s.input)] {
            if text.contains('\0') {
                return Err(Error::invalid(field(f), "must not contain NUL characters"));
            }
        }
        if s.task_class.as_deref().is_some_and(|c| c.contains('\0')) {
            return Err(Error::invalid(field("task_class"), "must not contain NUL characters"));
        }
        if s.output_schema.as_ref().is_some_and(has_nul) {
            return Err(Error::invalid(
                field("output_schema"),
                "must not contain NUL characters",
            ));
        }
        let name = s.name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(Error::invalid(field("name"), "must be 1 to 100 characters"));
        }
        if out.iter().any(|p| p.name == name) {
            return Err(Error::invalid(field("name"), format!("duplicate step name `{name}`")));
        }
        if s.input.trim().is_empty() {
            return Err(Error::invalid(field("input"), "must not be empty"));
        }
        if s.input.len() > MAX_INPUT_BYTES {
            return Err(Error::invalid(
                field("input"),
                format!("larger than {MAX_INPUT_BYTES} bytes"),
            ));
        }
        let class = s
            .task_class
            .as_deref()
            .map(str::trim)
            .unwrap_or(s.task.as_str())
            .to_string();
        if class.is_empty() || class.len() > 100 {
            return Err(Error::invalid(field("task_class"), "must be 1 to 100 characters"));
        }
        let (ambiguity, source) = match s.ambiguity {
            Some(a) if a.is_finite() && (0.0..=1.0).contains(&a) => (a, "request"),
            Some(_) => return Err(Error::invalid(field("ambiguity"), "must be in [0, 1]")),
            None => (estimate_ambiguity(&s.input), "estimate"),
        };
        let mut depends_on = Vec::new();
        for d in &s.depends_on {
            match out.iter().find(|p| p.name == d.as_str()) {
                Some(p) if !depends_on.contains(&p.idx) => depends_on.push(p.idx),
                Some(_) => {}
                None => {
                    return Err(Error::invalid(
                        field("depends_on"),
                        format!("`{d}` is not the name of an earlier step"),
                    ));
                }
            }
        }
        if let Some(schema) = &s.output_schema {
            validate_schema(schema).map_err(|e| Error::invalid(field("output_schema"), e))?;
        }
        let labels = plan_labels(s).map_err(|reason| Error::invalid(field("labels"), reason))?;
        if s.max_tokens.is_some_and(|m| m == 0 || m > MAX_STEP_TOKENS) {
            return Err(Error::invalid(
                field("max_tokens"),
                format!("must be 1 to {MAX_STEP_TOKENS}"),
            ));
        }
        let stop = s.stop.clone().unwrap_or_default();
        if stop.len() > MAX_STOP {
            return Err(Error::invalid(field("stop"), format!("at most {MAX_STOP} sequences")));
        }
        if stop.iter().any(|x| x.is_empty() || x.len() > 64 || x.contains('\0')) {
            return Err(Error::invalid(
                field("stop"),
                "each sequence must be 1 to 64 bytes, without NUL characters",
            ));
        }
        // Each verifier once, in the order first named: a list repeating one
        // (75,000 `json_schema` fit in a request) would otherwise run, and
        // compile its schema, that many times per attempt.
        let mut verifiers: Vec<VerifierKind> = Vec::new();
        for v in s
            .verifiers
            .clone()
            .unwrap_or_else(|| default_verifiers(s.task, s.output_schema.is_some(), !labels.is_empty()))
        {
            if !verifiers.contains(&v) {
                verifiers.push(v);
            }
        }
        out.push(PlannedStep {
            idx: i as i32,
            name: name.to_string(),
            task: s.task,
            class,
            input: s.input.clone(),
            depends_on,
            verifiers,
            output_schema: s.output_schema.clone(),
            labels,
            ambiguity,
            ambiguity_source: source,
            max_tokens: s.max_tokens,
            stop,
        });
    }
    Ok(out)
}

/// Checks a step's labels: only on `classify`, distinct, short, non-empty.
fn plan_labels(s: &StepRequest) -> std::result::Result<Vec<String>, String> {
    let Some(labels) = &s.labels else { return Ok(Vec::new()) };
    if s.task != TaskType::Classify {
        return Err("only `classify` steps take labels".into());
    }
    if !(2..=MAX_LABELS).contains(&labels.len()) {
        return Err(format!("give 2 to {MAX_LABELS} labels"));
    }
    let mut out: Vec<String> = Vec::with_capacity(labels.len());
    for l in labels {
        let l = l.trim();
        if l.is_empty() || l.len() > 100 || l.contains('\0') {
            return Err("each label must be 1 to 100 characters, without NUL".into());
        }
        if out.iter().any(|o| o.eq_ignore_ascii_case(l)) {
            return Err(format!("duplicate label `{l}`"));
        }
        out.push(l.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What submission plans a `steps` job with.
    fn plan(req: &JobRequest) -> Result<Vec<PlannedStep>> {
        check_request(req)?;
        plan_steps(req)
    }
    use serde_json::json;

    fn req(v: serde_json::Value) -> JobRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn plans_and_names_bad_fields() {
        let ok = req(json!({"kind":"steps","blast_radius":"low","steps":[
            {"name":"a","task":"answer","input":"What is 2+2?"},
            {"name":"b","task":"summarise","input":"x","ambiguity":0.2,"depends_on":["a"]}]}));
        let p = plan(&ok).unwrap();
        assert_eq!(p[1].depends_on, vec![0]);
        assert_eq!(p[0].ambiguity_source, "estimate");
        assert_eq!(
            p[0].verifiers,
            vec![VerifierKind::AnswerFormat, VerifierKind::Arithmetic]
        );

        // A repeated verifier runs once.
        let mut many = ok.clone();
        many.steps[0].verifiers = Some([VerifierKind::Arithmetic, VerifierKind::AnswerFormat].repeat(40_000));
        assert_eq!(
            plan(&many).unwrap()[0].verifiers,
            vec![VerifierKind::Arithmetic, VerifierKind::AnswerFormat]
        );

        let mut bad = ok.clone();
        bad.steps[1].depends_on = vec!["zzz".into()];
        assert!(matches!(plan(&bad), Err(Error::Invalid { field, .. }) if field == "steps[1].depends_on"));
        let mut bad = ok.clone();
        bad.steps[0].ambiguity = Some(1.5);
        assert!(matches!(plan(&bad), Err(Error::Invalid { field, .. }) if field == "steps[0].ambiguity"));
        let mut bad = ok.clone();
        bad.steps[0].input = "a\0b".into();
        assert!(matches!(plan(&bad), Err(Error::Invalid { field, .. }) if field == "steps[0].input"));
        // Generation limits are kept; out of range, they name the field.
        let mut limited = ok.clone();
        (limited.steps[0].max_tokens, limited.steps[0].stop) = (Some(64), Some(vec!["####".into()]));
        let p = plan(&limited).unwrap();
        assert_eq!(
            (p[0].max_tokens, p[0].stop.as_slice()),
            (Some(64), ["####".to_string()].as_slice())
        );
        let mut bad = ok.clone();
        bad.steps[0].max_tokens = Some(0);
        assert!(matches!(plan(&bad), Err(Error::Invalid { field, .. }) if field == "steps[0].max_tokens"));
        let mut bad = ok.clone();
        bad.steps[1].stop = Some(vec![String::new()]);
        assert!(matches!(plan(&bad), Err(Error::Invalid { field, .. }) if field == "steps[1].stop"));
        let mut bad = ok;
        bad.budget_usd = Some(-1.0);
        assert!(matches!(plan(&bad), Err(Error::Invalid { field, .. }) if field == "budget_usd"));
    }
}
