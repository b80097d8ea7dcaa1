//! The planner: validates a job request and turns it into steps.
//!
//! Validation happens entirely before anything is written, so a bad request
//! leaves no rows behind. A step may depend only on steps listed before it,
//! which makes every plan a DAG by construction.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use upshift_shared::policy::estimate_ambiguity;
use upshift_shared::verify::{VerifierKind, default_verifiers, validate_schema};
use upshift_shared::{BlastRadius, TaskType};

/// Most steps one job may have.
pub const MAX_STEPS: usize = 64;
/// Largest step input, in bytes.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// `POST /v1/jobs` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Job kind: `steps` runs the listed steps; `rag` answers `query` from
    /// `collection` (retrieve → extract → synthesise → critique).
    pub kind: JobKind,
    /// How much damage a wrong answer does.
    pub blast_radius: BlastRadius,
    /// Most the job may spend, in US dollars; escalation stops when spent.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1000000.0)]
    pub budget_usd: Option<f64>,
    /// The steps of a `steps` job, in an order where dependencies come first.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub steps: Vec<StepRequest>,
    /// The collection a `rag` job searches.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9_-]+$")]
    pub collection: Option<String>,
    /// The question of a `rag` job.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    pub query: Option<String>,
    /// Free-form caller data, stored with the job.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// An explicit list of steps.
    Steps,
    /// Retrieval-augmented answer with citations, from a collection.
    Rag,
}

impl JobKind {
    /// Text form, as stored in `jobs.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Steps => "steps",
            JobKind::Rag => "rag",
        }
    }
}

/// One step of a job request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// Unique name within the job.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    /// What the step asks for.
    pub task: TaskType,
    /// The class a policy is calibrated for (e.g. an MMLU domain); the task
    /// type's name when absent.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub task_class: Option<String>,
    /// The step's input text.
    #[schema(min_length = 1, max_length = 262144, pattern = "\\S")]
    pub input: String,
    /// Ambiguity in [0,1]; estimated from the input when absent.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub ambiguity: Option<f64>,
    /// Names of earlier steps whose outputs this one needs.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Verifiers to run; the task type's defaults when absent.
    #[serde(default)]
    pub verifiers: Option<Vec<VerifierKind>>,
    /// JSON schema the output must satisfy.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub output_schema: Option<serde_json::Value>,
    /// The closed set of labels a `classify` step chooses from.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub labels: Option<Vec<String>>,
}

/// Most labels one classification step may have.
pub const MAX_LABELS: usize = 64;

/// A validated step, ready to store.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// Position in the job.
    pub idx: i32,
    /// Name.
    pub name: String,
    /// Task type.
    pub task: TaskType,
    /// Task class.
    pub class: String,
    /// Input text.
    pub input: String,
    /// Indexes of the steps this one depends on.
    pub depends_on: Vec<i32>,
    /// Verifiers.
    pub verifiers: Vec<VerifierKind>,
    /// Output schema.
    pub output_schema: Option<serde_json::Value>,
    /// Labels of a classification step (empty otherwise).
    pub labels: Vec<String>,
    /// Ambiguity.
    pub ambiguity: f64,
    /// `request` or `estimate`.
    pub ambiguity_source: &'static str,
}

/// Validates `req` and plans its steps; the error names the offending field.
pub fn plan(req: &JobRequest, cfg: &upshift_shared::config::Config) -> Result<Vec<PlannedStep>> {
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
    match req.kind {
        JobKind::Steps => {
            for (field, given) in [("collection", req.collection.is_some()), ("query", req.query.is_some())] {
                if given {
                    return Err(Error::invalid(field, "only `rag` jobs take this field"));
                }
            }
            plan_steps(req)
        }
        JobKind::Rag => crate::rag::plan(req, cfg.rag.answer),
    }
}

/// Plans a `steps` job.
fn plan_steps(req: &JobRequest) -> Result<Vec<PlannedStep>> {
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

/// Whether any string (or key) in `v` contains a NUL character.
pub(crate) fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> upshift_shared::config::Config {
        upshift_shared::config::Config::from_toml_over_defaults("").unwrap()
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
        let p = plan(&ok, &cfg()).unwrap();
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
            plan(&many, &cfg()).unwrap()[0].verifiers,
            vec![VerifierKind::Arithmetic, VerifierKind::AnswerFormat]
        );

        let mut bad = ok.clone();
        bad.steps[1].depends_on = vec!["zzz".into()];
        assert!(matches!(plan(&bad, &cfg()), Err(Error::Invalid { field, .. }) if field == "steps[1].depends_on"));
        let mut bad = ok.clone();
        bad.steps[0].ambiguity = Some(1.5);
        assert!(matches!(plan(&bad, &cfg()), Err(Error::Invalid { field, .. }) if field == "steps[0].ambiguity"));
        let mut bad = ok.clone();
        bad.steps[0].input = "a\0b".into();
        assert!(matches!(plan(&bad, &cfg()), Err(Error::Invalid { field, .. }) if field == "steps[0].input"));
        let mut bad = ok;
        bad.budget_usd = Some(-1.0);
        assert!(matches!(plan(&bad, &cfg()), Err(Error::Invalid { field, .. }) if field == "budget_usd"));
    }
}
