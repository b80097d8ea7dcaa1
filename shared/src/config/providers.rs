//! Settings of the real model providers (`openai`, `local`), kept apart from
//! the rest of the configuration because each has many knobs.

use super::ProviderConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// An OpenAI-compatible chat-completions endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenaiConfig {
    /// Base URL up to and including `/v1`, e.g. `https://api.openai.com/v1`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable whose value, when set, replaces `base_url`.
    #[serde(default)]
    pub base_url_env: Option<String>,
    /// Model name sent to the server.
    pub model: String,
    /// Environment variable whose value, when set, replaces `model`.
    #[serde(default)]
    pub model_env: Option<String>,
    /// Environment variable holding the API key (sent as a bearer token,
    /// never logged). No key is sent when unset.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Timeout of one HTTP call, seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Calls in flight at once from one worker process.
    #[serde(default = "default_openai_concurrency")]
    pub max_concurrency: usize,
    /// Most tokens to generate.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Ask for token logprobs (a confidence signal) where the server has them.
    #[serde(default = "yes")]
    pub logprobs: bool,
    /// How steps with an output schema (and label steps) ask for structured output.
    #[serde(default)]
    pub structured_output: StructuredOutput,
    /// Largest response body read, bytes; a longer one fails the call
    /// (`too_large`) and the step escalates.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

/// NATS's default `max_payload` (1 MiB): a longer answer could not travel
/// as a result anyway (the worker reports any result past the server's
/// own `max_payload` as `too_large`, decided once, never re-run).
fn default_max_response_bytes() -> usize {
    1 << 20
}

/// The `response_format` dialect a server understands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// OpenAI's `{"type": "json_schema", "json_schema": {"schema": …}}` (OpenAI, vLLM, LiteLLM).
    #[default]
    JsonSchema,
    /// `{"type": "json_object", "schema": …}` (llama-cpp-python's server).
    JsonObject,
    /// Do not send `response_format`; the verifiers still check the output.
    None,
}

impl OpenaiConfig {
    /// The base URL after the environment override, if any is set.
    pub fn resolved_base_url(&self) -> Option<String> {
        env_value(self.base_url_env.as_deref())
            .or_else(|| self.base_url.clone())
            .filter(|u| !u.trim().is_empty())
            .map(|u| u.trim_end_matches('/').to_string())
    }

    /// The model name after the environment override.
    pub fn resolved_model(&self) -> String {
        env_value(self.model_env.as_deref()).unwrap_or_else(|| self.model.clone())
    }

    /// The API key, if its variable is set. Never log it.
    pub fn api_key(&self) -> Option<String> {
        env_value(self.api_key_env.as_deref())
    }
}

/// How a local model's prompt is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptFormat {
    /// The chat template from the GGUF file (instruction-tuned models).
    Chat,
    /// Plain text completion with a few-shot layout (base models).
    Completion,
}

/// In-process GGUF inference with llama.cpp.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// GGUF file; a relative path is resolved against the model directory.
    pub path: PathBuf,
    /// Prompt layout.
    pub prompt: PromptFormat,
    /// System prompt for chat models (some templates drop the model's own).
    #[serde(default)]
    pub system: Option<String>,
    /// CPU threads for one call.
    #[serde(default = "default_threads")]
    pub threads: u32,
    /// Context window, tokens.
    #[serde(default = "default_context")]
    pub context_tokens: u32,
    /// Most tokens to generate.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Self-consistency: answers drawn per call (majority vote; each counts
    /// towards the cost). For labels, the number of prompt phrasings averaged.
    #[serde(default = "one")]
    pub samples: u32,
    /// Sampling temperature when `samples` > 1 (one sample is always greedy).
    #[serde(default = "default_temperature")]
    pub temperature: f32,
    /// Seed of the sampler, for reproducible votes.
    #[serde(default = "default_seed")]
    pub seed: u32,
    /// Calls running at once on the one loaded model.
    #[serde(default = "one_usize")]
    pub max_concurrency: usize,
}

impl LocalConfig {
    /// The GGUF file: `path` itself when absolute, else under `model_dir`.
    pub fn file(&self, model_dir: &std::path::Path) -> PathBuf {
        if self.path.is_absolute() {
            self.path.clone()
        } else {
            model_dir.join(&self.path)
        }
    }
}

impl ProviderConfig {
    /// Checks the provider's own settings; the error is `(key, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, r: &str| Err((k.to_string(), r.to_string()));
        match self {
            ProviderConfig::Replay { .. } => Ok(()),
            ProviderConfig::Openai(o) => {
                if let Some(u) = &o.base_url
                    && !(u.starts_with("http://") || u.starts_with("https://"))
                {
                    return bad("base_url", "must start with http:// or https://");
                }
                if o.model.trim().is_empty() {
                    return bad("model", "must not be empty");
                }
                if o.timeout_secs == 0 || o.max_concurrency == 0 || o.max_tokens == 0 {
                    return bad("timeout_secs / max_concurrency / max_tokens", "must be greater than 0");
                }
                if o.max_response_bytes < 1024 {
                    return bad("max_response_bytes", "must be at least 1024");
                }
                Ok(())
            }
            ProviderConfig::Local(l) => {
                if l.path.as_os_str().is_empty() {
                    return bad("path", "must name a GGUF file");
                }
                if l.threads == 0 || l.samples == 0 || l.max_concurrency == 0 || l.max_tokens == 0 {
                    return bad(
                        "threads / samples / max_concurrency / max_tokens",
                        "must be greater than 0",
                    );
                }
                if l.context_tokens < 256 {
                    return bad("context_tokens", "must be at least 256");
                }
                if !(l.temperature.is_finite() && (0.0..=2.0).contains(&l.temperature)) {
                    return bad("temperature", "must be in [0, 2]");
                }
                Ok(())
            }
        }
    }
}

fn env_value(var: Option<&str>) -> Option<String> {
    var.and_then(|v| std::env::var(v).ok()).filter(|v| !v.trim().is_empty())
}

fn default_timeout_secs() -> u64 {
    60
}
fn default_openai_concurrency() -> usize {
    8
}
fn default_max_tokens() -> u32 {
    256
}
fn yes() -> bool {
    true
}
fn default_threads() -> u32 {
    2
}
fn default_context() -> u32 {
    2048
}
fn one() -> u32 {
    1
}
fn one_usize() -> usize {
    1
}
fn default_temperature() -> f32 {
    0.7
}
fn default_seed() -> u32 {
    42
}
