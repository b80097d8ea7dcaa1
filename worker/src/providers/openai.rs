//! Any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama,
//! llama.cpp's server, LiteLLM.
//!
//! - Errors are classified by status: 429 → rate limited (with Retry-After),
//!   408/409/5xx and connection failures → transient, a client timeout →
//!   timeout, other 4xx and unreadable replies → fatal. The pool retries the
//!   retryable ones with jittered back-off.
//! - Confidence is `exp(mean token logprob)` when the server returns
//!   logprobs, absent otherwise.
//! - Steps with an output schema (and label steps) send `response_format`
//!   with a JSON schema; the verifiers still check the output.
//! - The API key is read from its environment variable once and only ever
//!   put in the `Authorization` header.

use super::Completion;
use crate::error::ProviderError;
use crate::prompt;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use tokio::sync::Semaphore;
use upshift_shared::config::{OpenaiConfig, StructuredOutput};
use upshift_shared::messages::TaskMessage;

/// A client for one model on one OpenAI-compatible server.
pub struct OpenaiProvider {
    http: reqwest::Client,
    url: String,
    model: String,
    key: Option<String>,
    cfg: OpenaiConfig,
    slots: Semaphore,
}

impl std::fmt::Debug for OpenaiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenaiProvider")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("key", &self.key.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Message,
    #[serde(default)]
    logprobs: Option<Logprobs>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Logprobs {
    #[serde(default)]
    content: Option<Vec<TokenLogprob>>,
}

#[derive(Deserialize)]
struct TokenLogprob {
    #[serde(default)]
    token: String,
    logprob: f64,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl OpenaiProvider {
    /// Builds the client; fails when no base URL is configured.
    pub fn new(cfg: &OpenaiConfig) -> Result<Self, String> {
        // Only ring is compiled in; make it the process-wide TLS provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = cfg
            .resolved_base_url()
            .ok_or("no base URL: set base_url, or the variable named by base_url_env")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .connect_timeout(Duration::from_secs(cfg.timeout_secs.min(10)))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            url: format!("{base}/chat/completions"),
            model: cfg.resolved_model(),
            key: cfg.api_key(),
            cfg: cfg.clone(),
            slots: Semaphore::new(cfg.max_concurrency),
        })
    }

    /// Calls in flight at once.
    pub fn max_concurrency(&self) -> usize {
        self.cfg.max_concurrency
    }

    /// The request body for `task`.
    fn body(&self, task: &TaskMessage) -> serde_json::Value {
        let p = prompt::build(task, 0);
        let mut body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": p.user_message()}],
            "max_tokens": task.token_budget(self.cfg.max_tokens),
            "temperature": 0.0,
        });
        if !task.stop.is_empty() {
            body["stop"] = json!(task.stop);
        }
        if self.cfg.logprobs {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(1);
        }
        let schema = prompt::decoding_schema(task);
        match (schema, self.cfg.structured_output) {
            (Some(schema), StructuredOutput::JsonSchema) => {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema, "strict": true},
                });
            }
            (Some(schema), StructuredOutput::JsonObject) => {
                body["response_format"] = json!({"type": "json_object", "schema": schema});
            }
            _ => {}
        }
        body
    }

    /// Runs one chat completion.
    pub async fn complete(&self, task: &TaskMessage) -> Result<Completion, ProviderError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ProviderError::Fatal("provider closed".into()))?;
        let mut req = self.http.post(&self.url).json(&self.body(task));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.map_err(classify_send_error)?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = read_capped(resp, 4096).await.ok().flatten().unwrap_or_default();
            let snippet: String = String::from_utf8_lossy(&text).chars().take(200).collect();
            return Err(match status.as_u16() {
                429 => ProviderError::RateLimited { retry_after },
                408 | 409 | 500..=599 => ProviderError::Transient(format!("HTTP {status}: {snippet}")),
                _ => ProviderError::Fatal(format!("HTTP {status}: {snippet}")),
            });
        }
        let limit = self.cfg.max_response_bytes;
        let bytes = match read_capped(resp, limit).await? {
            Some(b) => b,
            None => return Err(ProviderError::TooLarge { limit }),
        };
        let body: ChatResponse =
            serde_json::from_slice(&bytes).map_err(|e| ProviderError::Fatal(format!("unreadable reply: {e}")))?;
        let choice = body
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::Fatal("reply has no choices".into()))?;
        let mut output = choice.message.content.unwrap_or_default();
        // A label constrained by a JSON schema arrives as a JSON string.
        if !task.labels.is_empty()
            && let Ok(serde_json::Value::String(label)) = serde_json::from_str(output.trim())
        {
            output = label;
        }
        let confidence = choice.logprobs.and_then(|l| l.content).and_then(|t| mean_prob(&t));
        Ok(Completion {
            output,
            tokens_in: body.usage.as_ref().map(|u| u.prompt_tokens),
            tokens_out: body.usage.as_ref().map(|u| u.completion_tokens),
            confidence,
            label_correct: None,
        })
    }
}

/// The body of `resp`, or `None` when it is longer than `limit` bytes:
/// read chunk by chunk, so a huge or endless reply is never held whole.
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Option<Vec<u8>>, ProviderError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(classify_send_error)? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn classify_send_error(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else if e.is_connect() || e.is_request() {
        ProviderError::Transient(format!("cannot reach the server: {e}"))
    } else {
        ProviderError::Fatal(e.to_string())
    }
}

/// `exp(mean logprob)`: the geometric mean of the chosen tokens'
/// probabilities. Tokens that are only JSON punctuation or whitespace are
/// left out: structured output forces them, so their raw probability says
/// nothing about the answer.
fn mean_prob(tokens: &[TokenLogprob]) -> Option<f64> {
    let structural = |t: &str| t.chars().all(|c| c.is_whitespace() || "{}[]\":,".contains(c));
    let finite: Vec<f64> = tokens
        .iter()
        .filter(|t| !structural(&t.token))
        .map(|t| t.logprob)
        .filter(|l| l.is_finite())
        .collect();
    if finite.is_empty() {
        return None;
    }
    Some((finite.iter().sum::<f64>() / finite.len() as f64).exp().clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_is_the_geometric_mean_probability() {
        let t = |s: &str, l| TokenLogprob {
            token: s.into(),
            logprob: l,
        };
        let c = mean_prob(&[t("a", 0.0), t("\"", -6.0), t("b", (0.25f64).ln())]).unwrap();
        assert!((c - 0.5).abs() < 1e-9, "{c}");
        assert_eq!(mean_prob(&[]), None);
    }
}
