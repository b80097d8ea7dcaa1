//! A finished job as a chat answer: the completion (or the OpenAI-shaped
//! error of an answer no tier could defend), the model and tier that
//! produced it, usage over every attempt, the route, and the
//! `x-upshift-*` headers. It reads only what every job kind's result has
//! (`answer`, `defended`, `open_findings`), so a new kind needs nothing here.

use super::wire::{AnswerMessage, ChatErrorBody, ChatErrorDetail, Choice, Completion, RouteStep, UpshiftInfo, Usage};
use crate::store::{EventRecord, JobRecord};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use upshift_shared::{JobStatus, RouteEventKind};

/// A finished job, as read for its answer.
pub struct Finished {
    /// The job.
    pub job: JobRecord,
    /// Its route.
    pub events: Vec<EventRecord>,
    /// Tokens of every attempt.
    pub usage: Usage,
}

/// What the answer is and who gave it.
pub struct Answer {
    /// The answer text (none when no step produced one).
    pub content: Option<String>,
    /// The model that produced it (the model asked for when none did).
    pub model: String,
    /// The `upshift` object.
    pub info: UpshiftInfo,
    /// Tokens of every attempt.
    pub usage: Usage,
    /// Unix seconds the job was created.
    pub created: i64,
}

impl Finished {
    /// The answer of this job to a chat that asked for `asked`.
    pub fn answer(&self, asked: &str) -> Answer {
        let result = self.job.result.clone().unwrap_or_default();
        let content = result.get("answer").and_then(|a| a.as_str()).map(str::to_string);
        let defended = self.job.status == JobStatus::Succeeded && result["defended"].as_bool().unwrap_or(false);
        // The step whose output is the answer, and the model decision it
        // rests on: that step's, or (for an answer composed without a
        // model, say from a span a model chose) the last one before it.
        let upto = content.as_deref().and_then(|a| {
            self.job
                .steps
                .iter()
                .rposition(|s| s.output.as_deref().is_some_and(|o| o.trim() == a.trim()))
        });
        let names: Vec<&str> = upto.map_or(Vec::new(), |i| {
            self.job.steps[..=i].iter().map(|s| s.name.as_str()).collect()
        });
        let by = self.events.iter().rev().find(|e| {
            e.model.is_some()
                && matches!(e.event, RouteEventKind::Accept | RouteEventKind::Unresolved)
                && e.step.as_deref().is_some_and(|s| names.contains(&s))
        });
        let (model, tier) = match by {
            Some(e) => (
                e.model.clone().unwrap_or_default(),
                e.from_tier
                    .clone()
                    .or(e.to_tier.clone())
                    .unwrap_or_else(|| "zero".into()),
            ),
            None => (asked.to_string(), "zero".to_string()),
        };
        let route = self
            .events
            .iter()
            .map(|e| RouteStep {
                step: e.step.clone(),
                event: e.event,
                from_tier: e.from_tier.clone(),
                to_tier: e.to_tier.clone(),
                reasons: e.reasons.clone(),
                model: e.model.clone(),
                cost_usd: e.cost_usd,
            })
            .collect();
        let info = UpshiftInfo {
            job_id: self.job.id,
            status: self.job.status.as_str().to_string(),
            defended,
            tier,
            cost_usd: self.job.cost_usd,
            always_strong_cost_usd: self.job.always_strong_cost_usd,
            route,
            findings: result
                .get("open_findings")
                .cloned()
                .unwrap_or_else(|| serde_json::json!([])),
            citations: result.get("citations").cloned().filter(|c| c.is_array()),
        };
        Answer {
            content,
            model,
            info,
            usage: self.usage,
            created: self.job.created_at.timestamp(),
        }
    }
}

impl Answer {
    /// The standard completion of this answer.
    pub fn completion(&self) -> Completion {
        Completion {
            id: completion_id(self.info.job_id),
            object: "chat.completion",
            created: self.created,
            model: self.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: AnswerMessage {
                    role: "assistant",
                    content: self.content.clone().unwrap_or_default(),
                },
                finish_reason: "stop",
            }],
            usage: self.usage,
            upshift: self.info.clone(),
        }
    }

    /// The error of an answer no tier could defend (or of a failed job):
    /// its status and OpenAI-shaped body, the best answer in `upshift`.
    pub fn refusal(&self) -> (StatusCode, ChatErrorBody) {
        let budget = self
            .info
            .route
            .iter()
            .any(|e| e.reasons.iter().any(|r| r == "budget_exhausted"));
        let job = self.info.job_id;
        let (status, kind, code, message) = match self.info.status.as_str() {
            "failed" => (
                StatusCode::BAD_GATEWAY,
                "server_error",
                "job_failed",
                format!("job {job} failed: no tier produced an answer (see upshift.route)"),
            ),
            _ if budget => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unresolved",
                "budget_exhausted",
                format!("job {job}: the budget ran out before any tier could defend an answer (see upshift.findings)"),
            ),
            _ => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unresolved",
                "unresolved",
                format!("job {job}: no tier could defend an answer (see upshift.findings and upshift.best_answer)"),
            ),
        };
        let mut upshift = serde_json::to_value(&self.info).expect("info serialises");
        upshift["best_answer"] = self.content.clone().into();
        upshift["model"] = self.model.clone().into();
        let body = ChatErrorBody {
            error: ChatErrorDetail {
                message,
                kind: kind.into(),
                code: code.into(),
                param: None,
            },
            upshift: Some(upshift),
        };
        (status, body)
    }

    /// The `x-upshift-*` headers of this answer.
    pub fn headers(&self) -> HeaderMap {
        let mut h = job_header(self.info.job_id);
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        put("x-upshift-status", self.info.status.clone());
        put("x-upshift-tier", self.info.tier.clone());
        put("x-upshift-model", self.model.clone());
        put("x-upshift-route", compact_route(&self.info.route));
        put("x-upshift-cost-usd", format!("{:.6}", self.info.cost_usd));
        put(
            "x-upshift-always-strong-usd",
            format!("{:.6}", self.info.always_strong_cost_usd),
        );
        put("x-upshift-defended", self.info.defended.to_string());
        h
    }
}

/// `chatcmpl-<job id>`.
pub fn completion_id(job: uuid::Uuid) -> String {
    format!("chatcmpl-{}", job.simple())
}

/// Just `x-upshift-job-id`.
pub fn job_header(job: uuid::Uuid) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_static("x-upshift-job-id"),
        HeaderValue::from_str(&job.to_string()).expect("a uuid is a header value"),
    );
    h
}

/// The route in one line: per step, each tier left with its reasons, then
/// the tier that decided and how: `small:low_confidence>medium:accept`.
/// A job of several steps names each: `retrieve=zero:accept;extract=…`.
pub fn compact_route(route: &[RouteStep]) -> String {
    let mut steps: Vec<(Option<&str>, Vec<String>)> = Vec::new();
    for e in route {
        let from = e.from_tier.as_deref().unwrap_or("zero");
        let piece = match e.event {
            RouteEventKind::Escalate => format!("{from}:{}", e.reasons.join("+")),
            RouteEventKind::Accept | RouteEventKind::Unresolved | RouteEventKind::Fail => format!("{from}:{}", e.event),
            _ => continue,
        };
        match steps.iter_mut().find(|(s, _)| *s == e.step.as_deref()) {
            Some((_, pieces)) => pieces.push(piece),
            None => steps.push((e.step.as_deref(), vec![piece])),
        }
    }
    let one = steps.len() == 1;
    steps
        .iter()
        .map(|(s, pieces)| match (one, s) {
            (false, Some(s)) => format!("{s}={}", pieces.join(">")),
            _ => pieces.join(">"),
        })
        .collect::<Vec<_>>()
        .join(";")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(step: &str, event: &str, from: Option<&str>, reasons: &[&str]) -> RouteStep {
        RouteStep {
            step: Some(step.into()),
            event: event.parse().unwrap(),
            from_tier: from.map(str::to_string),
            to_tier: None,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            model: None,
            cost_usd: None,
        }
    }

    #[test]
    fn the_route_reads_as_one_line() {
        let one = [
            ev("chat", "start", None, &["risk_rule"]),
            ev("chat", "dispatch", Some("small"), &[]),
            ev("chat", "escalate", Some("small"), &["low_confidence"]),
            ev("chat", "dispatch", Some("medium"), &[]),
            ev("chat", "accept", Some("medium"), &[]),
        ];
        assert_eq!(compact_route(&one), "small:low_confidence>medium:accept");
        let two = [
            ev("retrieve", "accept", None, &[]),
            ev("extract", "escalate", Some("small"), &["ungrounded", "low_confidence"]),
            ev("extract", "unresolved", Some("medium"), &["ungrounded"]),
        ];
        assert_eq!(
            compact_route(&two),
            "retrieve=zero:accept;extract=small:ungrounded+low_confidence>medium:unresolved"
        );
    }
}
