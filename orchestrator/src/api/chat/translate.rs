//! A chat request becomes a job: model `upshift` a one-step job of the
//! configured cascade, `upshift-rag/<collection>` a `rag` job on that
//! collection. Everything is checked here, before anything is written;
//! an error names the request's parameter, as OpenAI's do.

use super::wire::{ChatRequest, Content, ResponseFormat, Role};
use crate::error::Error;
use crate::request::{JobKind, JobRequest, MAX_STEP_TOKENS, MAX_STOP, StepRequest};
use axum::http::HeaderMap;
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};
use upshift_shared::verify::{VerifierKind, default_verifiers};
use upshift_shared::{BlastRadius, TaskType};

/// The cascade's model name.
pub const CASCADE_MODEL: &str = "upshift";
/// Prefix of a collection's rag model name.
pub const RAG_PREFIX: &str = "upshift-rag/";
/// The name of a chat job's one step.
pub const CHAT_STEP: &str = "chat";
/// The blast radius of a chat that names none.
const DEFAULT_BLAST: BlastRadius = BlastRadius::Medium;

/// What the request asks of the answer besides the job.
#[derive(Debug, Clone)]
pub struct Wanted {
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// `x-upshift-unresolved: answer`: an undefended best answer is a 200
    /// marked `defended = false` instead of a 422.
    pub unresolved_answer: bool,
    /// The model asked for.
    pub model: String,
}

/// The job `req` (with `headers`) asks for, and how to answer it.
pub fn to_job(req: ChatRequest, headers: &HeaderMap) -> Result<(JobRequest, Wanted), Error> {
    log_unknown(&req);
    let unresolved_answer = match header(headers, "x-upshift-unresolved")? {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("answer") => true,
        Some(v) if v.eq_ignore_ascii_case("error") => false,
        Some(_) => return Err(Error::invalid("x-upshift-unresolved", "must be `answer` or `error`")),
    };
    let ext = req.upshift.clone().unwrap_or_default();
    let blast = match (ext.blast_radius, header(headers, "x-upshift-blast-radius")?) {
        (Some(b), _) => b,
        (None, Some(h)) => h.parse().map_err(|e| Error::invalid("x-upshift-blast-radius", e))?,
        (None, None) => DEFAULT_BLAST,
    };
    let budget_usd = match (ext.budget_usd, header(headers, "x-upshift-budget-usd")?) {
        (Some(b), _) => Some(b),
        (None, Some(h)) => Some(
            h.parse::<f64>()
                .map_err(|_| Error::invalid("x-upshift-budget-usd", "must be a number of US dollars"))?,
        ),
        (None, None) => None,
    };
    let task = match (ext.task, header(headers, "x-upshift-task")?) {
        (Some(t), _) => Some(t),
        (None, Some(h)) => Some(h.parse().map_err(|e| Error::invalid("x-upshift-task", e))?),
        (None, None) => None,
    };
    check_generation(&req)?;
    if req.messages.is_empty() {
        return Err(Error::invalid("messages", "must hold at least one message"));
    }
    let mut texts = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        texts.push((m.role, text_of(&m.content, i)?));
    }
    let Some(last_user) = texts
        .iter()
        .rev()
        .find(|(r, _)| *r == Role::User)
        .map(|(_, t)| t.clone())
    else {
        return Err(Error::invalid("messages", "must hold a user message"));
    };
    let metadata = serde_json::json!({
        "openai": {
            "model": req.model, "user": req.user, "metadata": req.metadata,
            "max_tokens": req.max_completion_tokens.or(req.max_tokens),
            "temperature": req.temperature, "stop": req.stop,
            "response_format": match &req.response_format {
                Some(ResponseFormat::JsonSchema { json_schema }) => serde_json::json!({
                    "type": "json_schema", "name": json_schema.name,
                }),
                Some(ResponseFormat::JsonObject) => serde_json::json!({ "type": "json_object" }),
                _ => serde_json::Value::Null,
            },
        }
    });
    let wanted = Wanted {
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
        unresolved_answer,
        model: req.model.clone(),
    };
    let job = if let Some(collection) = req.model.strip_prefix(RAG_PREFIX) {
        crate::request::valid_name(collection).map_err(|_| Error::invalid("model", "no such model"))?;
        for (given, field) in [
            (
                req.response_format
                    .as_ref()
                    .is_some_and(|f| !matches!(f, ResponseFormat::Text)),
                "response_format",
            ),
            (task.is_some(), "upshift.task"),
            (ext.labels.is_some(), "upshift.labels"),
        ] {
            if given {
                return Err(Error::invalid(
                    field,
                    "a rag model answers in cited text; drop this parameter",
                ));
            }
        }
        JobRequest {
            kind: JobKind::Rag,
            blast_radius: blast,
            budget_usd,
            steps: Vec::new(),
            collection: Some(collection.to_string()),
            query: Some(last_user),
            metadata: Some(metadata),
        }
    } else if req.model == CASCADE_MODEL {
        let schema = match &req.response_format {
            None | Some(ResponseFormat::Text) => None,
            Some(ResponseFormat::JsonObject) => Some(serde_json::json!({"type": "object"})),
            Some(ResponseFormat::JsonSchema { json_schema }) => Some(json_schema.schema.clone()),
        };
        let task = task.unwrap_or(match (&ext.labels, &schema) {
            (Some(_), _) => TaskType::Classify,
            (None, Some(_)) => TaskType::Extract,
            (None, None) => TaskType::Answer,
        });
        // A schema is always checked, whatever the task's own verifiers.
        let mut verifiers = default_verifiers(task, schema.is_some(), ext.labels.is_some());
        if schema.is_some() && !verifiers.contains(&VerifierKind::JsonSchema) {
            verifiers.push(VerifierKind::JsonSchema);
        }
        JobRequest {
            kind: JobKind::Steps,
            blast_radius: blast,
            budget_usd,
            steps: vec![StepRequest {
                name: CHAT_STEP.into(),
                task,
                task_class: None,
                input: transcript(&texts),
                ambiguity: None,
                depends_on: Vec::new(),
                verifiers: Some(verifiers),
                output_schema: schema,
                labels: ext.labels,
                max_tokens: req.max_completion_tokens.or(req.max_tokens),
                stop: stop_sequences(req.stop.as_ref())?,
            }],
            collection: None,
            query: None,
            metadata: Some(metadata),
        }
    } else {
        return Err(Error::NotFound(format!("model `{}`", req.model)));
    };
    Ok((job, wanted))
}

/// The step's input: a lone user message as it is (a recorded prompt is
/// found verbatim); a conversation as a transcript, system text first.
fn transcript(texts: &[(Role, String)]) -> String {
    if let [(Role::User, only)] = texts {
        return only.clone();
    }
    let mut out = String::new();
    for (role, text) in texts {
        let who = match role {
            Role::System | Role::Developer => "System",
            Role::User => "User",
            Role::Assistant => "Assistant",
        };
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(who);
        out.push_str(": ");
        out.push_str(text);
    }
    out
}

/// A message's text: a string, or its text parts joined.
fn text_of(c: &Content, i: usize) -> Result<String, Error> {
    match c {
        Content::Text(t) => Ok(t.clone()),
        Content::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => out.push(t.as_str()),
                    _ => {
                        return Err(Error::invalid(
                            format!("messages[{i}].content[{j}]"),
                            "only text parts are supported",
                        ));
                    }
                }
            }
            Ok(out.join("\n"))
        }
    }
}

/// `stop` as OpenAI takes it: one string or a list of up to four.
fn stop_sequences(stop: Option<&serde_json::Value>) -> Result<Option<Vec<String>>, Error> {
    let bad = || {
        Error::invalid(
            "stop",
            format!("a string or at most {MAX_STOP} strings of 1 to 64 bytes"),
        )
    };
    let list: Vec<String> = match stop {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if list.len() > MAX_STOP || list.iter().any(|s| s.is_empty() || s.len() > 64 || s.contains('\0')) {
        return Err(bad());
    }
    Ok(Some(list).filter(|l| !l.is_empty()))
}

/// Checks the generation parameters' ranges.
fn check_generation(req: &ChatRequest) -> Result<(), Error> {
    for (field, v) in [
        ("max_tokens", req.max_tokens),
        ("max_completion_tokens", req.max_completion_tokens),
    ] {
        if v.is_some_and(|v| v == 0 || v > MAX_STEP_TOKENS) {
            return Err(Error::invalid(field, format!("must be 1 to {MAX_STEP_TOKENS}")));
        }
    }
    stop_sequences(req.stop.as_ref())?;
    if let Some(t) = req.temperature
        && !(t.is_finite() && (0.0..=2.0).contains(&t))
    {
        return Err(Error::invalid("temperature", "must be between 0 and 2"));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(Error::invalid("n", "only one choice (n = 1) is produced"));
    }
    Ok(())
}

/// A header's text, if present; not text is an error naming it.
fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>, Error> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| Error::invalid(name, "must be visible ASCII")),
    }
}

/// OpenAI parameters this door does not use are accepted, as gateways
/// do; each name is logged once per process.
fn log_unknown(req: &ChatRequest) {
    static SEEN: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);
    let mut seen = SEEN.lock().expect("seen lock");
    for k in req.other.keys() {
        // Bounded: at most a few hundred distinct names are remembered.
        if seen.len() < 256 && seen.insert(k.clone()) {
            tracing::info!(parameter = %k, "chat completions: parameter accepted and ignored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::stop_sequences;
    use serde_json::json;

    #[test]
    fn stop_is_a_string_or_up_to_four() {
        assert_eq!(stop_sequences(None).unwrap(), None);
        assert_eq!(
            stop_sequences(Some(&json!("\n"))).unwrap(),
            Some(vec!["\n".to_string()])
        );
        assert_eq!(
            stop_sequences(Some(&json!(["a", "b"]))).unwrap(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(stop_sequences(Some(&json!([]))).unwrap(), None);
        for bad in [json!(["a", "b", "c", "d", "e"]), json!([""]), json!(3), json!([1])] {
            let e = stop_sequences(Some(&bad)).unwrap_err();
            assert!(e.to_string().starts_with("stop:"), "{e}");
        }
    }
}
