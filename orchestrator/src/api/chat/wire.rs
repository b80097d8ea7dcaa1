//! The OpenAI chat-completions wire format, as far as this door reads and
//! writes it, plus the `upshift` extension object.

use serde::{Deserialize, Serialize};
use upshift_shared::{BlastRadius, TaskType};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/chat/completions` body. Parameters not listed are accepted
/// and ignored (each name logged once), as OpenAI gateways do.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// `upshift` (the cascade) or `upshift-rag/<collection>`.
    #[schema(example = "upshift")]
    pub model: String,
    /// The conversation; the last user message is the question.
    pub messages: Vec<Message>,
    /// Most tokens of the answer (recorded with the job; each tier's model
    /// runs with its configured `max_tokens`).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The same, by its newer name.
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, 0–2 (recorded with the job).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Stop sequences (recorded with the job).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub stop: Option<serde_json::Value>,
    /// `text`, `json_object`, or `json_schema` (its schema becomes the
    /// step's `output_schema`, checked by the `json_schema` verifier).
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    /// The end user, kept on the job.
    #[serde(default)]
    pub user: Option<String>,
    /// Caller data, kept on the job.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Server-sent `chat.completion.chunk` events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `include_usage` adds a usage chunk before `[DONE]`.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Choices wanted; only 1.
    #[serde(default)]
    pub n: Option<u32>,
    /// upshift's own parameters (also settable as `x-upshift-…` headers;
    /// the body wins).
    #[serde(default)]
    pub upshift: Option<UpshiftParams>,
    /// Every other parameter, ignored.
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// One message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text, or text parts.
    pub content: Content,
}

/// Roles a message may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions.
    System,
    /// Instructions (OpenAI's newer name for `system`).
    Developer,
    /// The user.
    User,
    /// An earlier answer.
    Assistant,
}

/// A message's content.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts; only `{"type": "text", "text": …}` ones are read.
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Part {
    /// `text` (other kinds are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// The answer's format.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// `response_format.json_schema`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct JsonSchemaFormat {
    /// Its name (kept on the job). `strict` is accepted and implied: the
    /// schema is always enforced.
    #[serde(default)]
    pub name: Option<String>,
    /// The JSON schema.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
}

/// `stream_options`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a usage chunk before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// upshift's parameters of a chat.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpshiftParams {
    /// How much damage a wrong answer does (default `medium`).
    #[serde(default)]
    pub blast_radius: Option<BlastRadius>,
    /// Most the job may spend, in US dollars.
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// The step's task (default `answer`; `extract` with a JSON
    /// `response_format`, `classify` with `labels`).
    #[serde(default)]
    pub task: Option<TaskType>,
    /// The closed label set of a `classify` chat.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
}

/// Token counts, summed over every attempt of the job.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Usage {
    /// Prompt tokens of every attempt.
    pub prompt_tokens: i64,
    /// Answer tokens of every attempt.
    pub completion_tokens: i64,
    /// Their sum.
    pub total_tokens: i64,
}

/// One step of the route as the `upshift` object shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RouteStep {
    /// The job step.
    pub step: Option<String>,
    /// What the event records.
    pub event: upshift_shared::RouteEventKind,
    /// The tier the event left (or ran on).
    pub from_tier: Option<String>,
    /// The tier it went to.
    pub to_tier: Option<String>,
    /// Reason codes.
    pub reasons: Vec<String>,
    /// The attempt's model.
    pub model: Option<String>,
    /// The attempt's cost.
    pub cost_usd: Option<f64>,
}

/// The `upshift` object of every answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UpshiftInfo {
    /// The job (follow it at `/v1/jobs/{id}`).
    pub job_id: Uuid,
    /// `succeeded`, `unresolved` or `failed`.
    pub status: String,
    /// Whether the answer was defended by its verifiers.
    pub defended: bool,
    /// The tier whose answer this is (`zero`: no model, e.g. composed from
    /// the retrieved passages).
    pub tier: String,
    /// Spent, every attempt counted.
    pub cost_usd: f64,
    /// What the job would have cost once on the strong tier.
    pub always_strong_cost_usd: f64,
    /// The route: every event of the job, in order.
    pub route: Vec<RouteStep>,
    /// Findings that kept the answer from being defended.
    #[schema(value_type = Vec<Object>)]
    pub findings: serde_json::Value,
    /// Citations of a rag answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub citations: Option<serde_json::Value>,
}

/// A `chat.completion`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Completion {
    /// `chatcmpl-<job id>`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: i64,
    /// The model that produced the answer.
    pub model: String,
    /// The one choice.
    pub choices: Vec<Choice>,
    /// Tokens of every attempt.
    pub usage: Usage,
    /// What upshift did.
    pub upshift: UpshiftInfo,
}

/// The choice of a completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct Choice {
    /// 0.
    pub index: u32,
    /// The answer.
    pub message: AnswerMessage,
    /// `stop`.
    pub finish_reason: &'static str,
}

/// The assistant's message.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnswerMessage {
    /// `assistant`.
    pub role: &'static str,
    /// The answer.
    pub content: String,
}

/// `GET /v1/models` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<ModelCard>,
}

/// One model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCard {
    /// `upshift` or `upshift-rag/<collection>`.
    pub id: String,
    /// `model`.
    pub object: &'static str,
    /// Unix seconds (0: always there).
    pub created: i64,
    /// `upshift`, or the tenant for a collection.
    pub owned_by: String,
}

/// An OpenAI-shaped error body, with the `upshift` object when a job ran.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatErrorBody {
    /// The error.
    pub error: ChatErrorDetail,
    /// What upshift did, when a job ran (its best answer included).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub upshift: Option<serde_json::Value>,
}

/// OpenAI's error object.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatErrorDetail {
    /// What went wrong.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `unresolved`, `timeout`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Machine-readable code (`unresolved`, `budget_exhausted`, …).
    pub code: String,
    /// The offending parameter, if any.
    pub param: Option<String>,
}
