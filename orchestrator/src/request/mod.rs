//! What clients send, and the checks that need no state: job requests and
//! their planned steps, documents to ingest, collection names. A leaf: it
//! depends on nothing else in the orchestrator, so the planner, the rag job,
//! collections and the API all take their types from here.

mod documents;

pub use documents::{
    DocumentIn, IngestRequest, MAX_DOC_BYTES, MAX_DOCS, parse_documents, valid_name, validate_documents,
};

use serde::{Deserialize, Serialize};
use upshift_shared::verify::VerifierKind;
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

pub use upshift_shared::JobKind;

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
    /// Most tokens the model may write for this step; each tier's own
    /// `max_tokens` stays the ceiling.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 32768)]
    pub max_tokens: Option<u32>,
    /// Up to 4 sequences at which the model's answer is cut (the sequence
    /// itself is not kept).
    #[serde(default)]
    #[schema(max_items = 4)]
    pub stop: Option<Vec<String>>,
}

/// Most stop sequences of one step.
pub const MAX_STOP: usize = 4;
/// Largest `max_tokens` a step may ask for.
pub const MAX_STEP_TOKENS: u32 = 32_768;

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
    /// Most tokens the model may write (the tier's own limit when `None`).
    pub max_tokens: Option<u32>,
    /// Sequences at which the answer is cut.
    pub stop: Vec<String>,
}

/// Whether any string (or key) in `v` contains a NUL character.
pub fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}
