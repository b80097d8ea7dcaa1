//! Wire messages between the orchestrator and the workers (JSON on JetStream).
//!
//! Every message carries `version`; a reader rejects versions it does not know
//! instead of guessing. The attempt id doubles as the `Nats-Msg-Id`, so a
//! re-publish of the same attempt is dropped by the stream's duplicate window.
//!
//! A task carries a random per-attempt token that its result must echo: the
//! ids are visible to tenants (the route API shows them), the token only to
//! whoever can read that tier's task subject, so a client that can publish
//! results cannot answer an attempt it was not sent.

use crate::types::{TaskType, Tier};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The message format version this build writes and reads.
pub const MESSAGE_VERSION: u32 = 2;

/// One attempt of one step on one tier, published on `<prefix>.tasks.<tier>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskMessage {
    /// Always [`MESSAGE_VERSION`] when written by this build.
    pub version: u32,
    /// The attempt id (UUIDv7); primary key of `attempts` and `Nats-Msg-Id`.
    pub attempt_id: Uuid,
    /// Random (UUIDv4 from the OS's generator), issued with this attempt
    /// and never shown by the API; the result must carry it back.
    pub attempt_token: Uuid,
    /// The job the step belongs to.
    pub job_id: Uuid,
    /// The step being attempted.
    pub step_id: Uuid,
    /// The tier this attempt runs on.
    pub tier: Tier,
    /// What the step asks for.
    pub task: TaskType,
    /// The step's input as the caller gave it (the replay provider keys on it).
    pub input: String,
    /// Accepted outputs of the steps this one depends on, in order.
    #[serde(default)]
    pub context: Vec<ContextItem>,
    /// JSON schema the output must satisfy, for extraction steps.
    #[serde(default)]
    pub output_schema: Option<serde_json::Value>,
    /// The closed label set of a classification step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Most tokens the model may write for this step (the request's
    /// `max_tokens`); the tier's own limit is the ceiling. This field and
    /// `stop` are left out when unset, so older workers read every message
    /// of a step without limits; a step with limits needs workers of this
    /// version or later (upgrade workers before orchestrators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sequences at which the answer is cut (the request's `stop`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

impl TaskMessage {
    /// The most tokens this call may write, given the tier's own limit.
    pub fn token_budget(&self, tier_max: u32) -> u32 {
        self.max_tokens.map_or(tier_max, |m| m.clamp(1, tier_max.max(1)))
    }

    /// `text` cut at the first of the step's stop sequences (the sequence
    /// itself dropped); the text as it is when none occurs.
    pub fn cut_at_stop<'a>(&self, text: &'a str) -> &'a str {
        let at = self.stop.iter().filter_map(|s| text.find(s.as_str())).min();
        at.map_or(text, |i| &text[..i])
    }
}

/// The accepted output of an earlier step, handed to a later one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextItem {
    /// The earlier step's name.
    pub step: String,
    /// Its accepted output.
    pub output: String,
}

/// What a worker reports for an attempt, published on `<prefix>.results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultMessage {
    /// Always [`MESSAGE_VERSION`] when written by this build.
    pub version: u32,
    /// The attempt this answers.
    pub attempt_id: Uuid,
    /// The task's [`TaskMessage::attempt_token`], echoed.
    pub attempt_token: Uuid,
    /// The job of the attempt.
    pub job_id: Uuid,
    /// The step of the attempt.
    pub step_id: Uuid,
    /// The tier that ran it.
    pub tier: Tier,
    /// Which worker process ran it (host/pid), for capacity audits.
    pub worker_id: String,
    /// Provider kind, e.g. `replay`.
    pub provider: String,
    /// Model name from the catalog.
    pub model: String,
    /// Wall time of the provider call in milliseconds.
    pub latency_ms: u64,
    /// When the worker pulled the task.
    #[serde(default)]
    pub received_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the worker published this result.
    #[serde(default)]
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The answer or the error.
    pub outcome: AttemptOutcome,
}

/// A model call either answered or failed with a classified error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum AttemptOutcome {
    /// The model answered.
    Answered {
        /// The model's output text.
        output: String,
        /// Prompt tokens (measured, or estimated when the provider has none).
        tokens_in: u32,
        /// Completion tokens.
        tokens_out: u32,
        /// Price of this call in US dollars, as the worker reckons it (for
        /// its own logs; the orchestrator books its own price, see
        /// [`crate::cost::price`]).
        cost_usd: f64,
        /// Confidence in [0,1] from the provider (e.g. token logprobs), if any.
        #[serde(default)]
        confidence: Option<f64>,
        /// Recorded correctness from a labelled dataset (replay only). Kept for
        /// scoring; the router never reads it.
        #[serde(default)]
        label_correct: Option<bool>,
    },
    /// The call failed after the worker's own retries.
    Failed {
        /// Error class, one of [`crate::ErrorClass`] (kept as text on the
        /// wire, so a class this router does not know is still decided: as
        /// a provider error).
        class: String,
        /// Human-readable message (never contains secrets).
        message: String,
    },
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not valid JSON of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A version this build does not understand.
    #[error("unsupported message version {0} (this build reads {MESSAGE_VERSION})")]
    UnknownVersion(u32),
}

#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    let probe: VersionProbe = serde_json::from_slice(bytes)?;
    if probe.version != MESSAGE_VERSION {
        return Err(DecodeError::UnknownVersion(probe.version));
    }
    Ok(serde_json::from_slice(bytes)?)
}

impl TaskMessage {
    /// Parses a task message, rejecting unknown versions.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }
}

impl ResultMessage {
    /// Parses a result message, rejecting unknown versions.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }

    /// Makes the result storable whatever a worker (or a model behind it)
    /// sent: NUL characters, which Postgres rejects in text and jsonb, are
    /// replaced in the worker's labels and error text; an answer holding
    /// one, or numbers outside their columns' ranges, turn the outcome into a
    /// `fatal` failure that says why. Returns that reason when it did.
    pub fn make_storable(&mut self) -> Option<String> {
        for s in [&mut self.worker_id, &mut self.provider, &mut self.model] {
            *s = without_nul(s);
        }
        self.latency_ms = self.latency_ms.min(i64::MAX as u64);
        let why = match &mut self.outcome {
            AttemptOutcome::Failed { class, message } => {
                *class = without_nul(class);
                *message = without_nul(message);
                return None;
            }
            AttemptOutcome::Answered {
                output,
                tokens_in,
                tokens_out,
                cost_usd,
                confidence,
                ..
            } => {
                if output.contains('\0') {
                    "the output holds NUL characters".to_string()
                } else if *tokens_in > i32::MAX as u32 || *tokens_out > i32::MAX as u32 {
                    format!("token counts {tokens_in}/{tokens_out} are out of range")
                } else if !(cost_usd.is_finite() && *cost_usd >= 0.0) {
                    format!("cost {cost_usd} is not a non-negative number")
                } else if confidence.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
                    format!("confidence {confidence:?} is outside [0, 1]")
                } else {
                    return None;
                }
            }
        };
        self.outcome = AttemptOutcome::Failed {
            class: crate::ErrorClass::Fatal.as_str().into(),
            message: format!("unstorable result: {why}"),
        };
        Some(why)
    }
}

/// `s` with every NUL character replaced by U+FFFD.
pub fn without_nul(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_limits_cap_the_tiers_and_cut_the_answer() {
        let mut t: TaskMessage = serde_json::from_value(serde_json::json!({
            "version": MESSAGE_VERSION, "attempt_id": Uuid::nil(), "attempt_token": Uuid::nil(),
            "job_id": Uuid::nil(), "step_id": Uuid::nil(), "tier": "small", "task": "answer", "input": "x",
        }))
        .unwrap();
        assert_eq!((t.token_budget(256), t.cut_at_stop("a\n#### 4")), (256, "a\n#### 4"));
        (t.max_tokens, t.stop) = (Some(32), vec!["####".into(), "\n".into()]);
        assert_eq!(t.token_budget(256), 32);
        assert_eq!(t.token_budget(16), 16, "the tier's limit stays the ceiling");
        assert_eq!(t.cut_at_stop("a\n#### 4"), "a", "cut at the first sequence found");
        // Old messages parse; new fields are left out when unset.
        let wire = serde_json::to_value(TaskMessage {
            max_tokens: None,
            stop: vec![],
            ..t
        })
        .unwrap();
        assert!(wire.get("max_tokens").is_none() && wire.get("stop").is_none());
    }

    #[test]
    fn hostile_results_become_storable_failures() {
        let answered = |output: &str, confidence| ResultMessage {
            version: MESSAGE_VERSION,
            attempt_id: Uuid::nil(),
            attempt_token: Uuid::nil(),
            job_id: Uuid::nil(),
            step_id: Uuid::nil(),
            tier: Tier::Small,
            worker_id: "w\0".into(),
            provider: "p".into(),
            model: "m".into(),
            latency_ms: u64::MAX,
            received_at: None,
            sent_at: None,
            outcome: AttemptOutcome::Answered {
                output: output.into(),
                tokens_in: 1,
                tokens_out: 1,
                cost_usd: 0.0,
                confidence,
                label_correct: None,
            },
        };
        let mut fine = answered("positive \u{202e}\u{1F600}", Some(0.5));
        assert_eq!(fine.make_storable(), None);
        assert_eq!(fine.worker_id, "w\u{FFFD}");
        assert_eq!(fine.latency_ms, i64::MAX as u64);
        for mut hostile in [answered("posi\0tive", None), answered("ok", Some(7.0))] {
            assert!(hostile.make_storable().is_some());
            assert!(
                matches!(&hostile.outcome, AttemptOutcome::Failed { class, message } if class == "fatal" && message.starts_with("unstorable result"))
            );
        }
        let mut failed = answered("", None);
        failed.outcome = AttemptOutcome::Failed {
            class: crate::ErrorClass::Fatal.as_str().into(),
            message: "HTTP 400: \0\0".into(),
        };
        assert_eq!(failed.make_storable(), None);
        assert!(matches!(&failed.outcome, AttemptOutcome::Failed { message, .. } if !message.contains('\0')));
    }

    #[test]
    fn result_round_trips_and_versions_are_checked() {
        let m = ResultMessage {
            version: MESSAGE_VERSION,
            attempt_id: Uuid::now_v7(),
            attempt_token: Uuid::new_v4(),
            job_id: Uuid::now_v7(),
            step_id: Uuid::now_v7(),
            tier: Tier::Small,
            worker_id: "w1".into(),
            provider: "replay".into(),
            model: "m".into(),
            latency_ms: 3,
            received_at: None,
            sent_at: Some(chrono::Utc::now()),
            outcome: AttemptOutcome::Answered {
                output: "#### 4".into(),
                tokens_in: 10,
                tokens_out: 2,
                cost_usd: 0.001,
                confidence: None,
                label_correct: Some(true),
            },
        };
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(ResultMessage::decode(&bytes).unwrap(), m);
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["version"] = 9.into();
        let err = ResultMessage::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::UnknownVersion(9)));
        assert!(ResultMessage::decode(b"{").is_err());
    }
}
