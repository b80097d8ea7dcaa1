//! Deterministic verifiers. Each returns findings with reason codes rather
//! than a bool, so an escalation can say exactly what failed.

mod answer;
mod arithmetic;
mod schema;

pub use answer::final_answer;
pub use arithmetic::{count_computations, eval_expr};

use crate::reasons::ReasonCode;
use crate::types::TaskType;
use serde::{Deserialize, Serialize};

/// One thing a verifier found wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The reason code.
    pub code: ReasonCode,
    /// What exactly, for people reading the route.
    pub detail: String,
}

impl Finding {
    /// A finding with a code and a detail.
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

/// The verifiers a step can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VerifierKind {
    /// A final answer is present and parseable and the output is not cut off.
    AnswerFormat,
    /// Every stated computation holds and the final answer matches the last.
    Arithmetic,
    /// The output is JSON valid against the step's schema.
    JsonSchema,
}

impl VerifierKind {
    /// Text form, as stored with the step.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifierKind::AnswerFormat => "answer_format",
            VerifierKind::Arithmetic => "arithmetic",
            VerifierKind::JsonSchema => "json_schema",
        }
    }
}

/// Verifiers a task type gets when the request names none.
pub fn default_verifiers(task: TaskType, has_schema: bool) -> Vec<VerifierKind> {
    match task {
        TaskType::Answer => vec![VerifierKind::AnswerFormat, VerifierKind::Arithmetic],
        TaskType::Extract => vec![VerifierKind::JsonSchema],
        _ if has_schema => vec![VerifierKind::JsonSchema],
        _ => Vec::new(),
    }
}

/// Runs `verifiers` over `output`; an empty result means every check passed.
pub fn run(verifiers: &[VerifierKind], output: &str, schema: Option<&serde_json::Value>) -> Vec<Finding> {
    let mut out = Vec::new();
    for v in verifiers {
        match v {
            VerifierKind::AnswerFormat => out.extend(answer::check(output)),
            VerifierKind::Arithmetic => out.extend(arithmetic::check(output)),
            VerifierKind::JsonSchema => out.extend(schema::check(output, schema)),
        }
    }
    out
}

/// Checks that a JSON schema itself is valid, for request validation.
pub fn validate_schema(schema: &serde_json::Value) -> Result<(), String> {
    schema::compile(schema).map(|_| ())
}
