//! Configuration: embedded defaults → optional TOML file → `UPSHIFT_…` env.
//!
//! Loading validates everything once, so a bad value fails at start-up with the
//! offending key named. Unknown keys are errors. The database URL may hold a
//! password, so `Debug` on [`DatabaseConfig`] redacts it and nothing here logs.

use crate::types::Tier;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use routing::RoutingConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether environment variable `key` (without `UPSHIFT_`) is
/// configuration: `<SECTION>__<KEY>`. Other `UPSHIFT_*` variables
/// (`UPSHIFT_CONFIG`, `UPSHIFT_API_KEY`, a model's API key variable, …)
/// hold no `__` and are left alone.
fn is_config_var(key: &str) -> bool {
    key.contains("__")
}

/// The sections of [`Config`], by construction: the fields it serialises.
pub fn sections() -> Vec<String> {
    let cfg = Config::from_toml_over_defaults("").expect("the embedded defaults are valid");
    match serde_json::to_value(&cfg) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The first `UPSHIFT_<SECTION>__…` variable of `vars` whose section is
/// not one of [`Config`]'s, as an error naming it.
fn unknown_section(vars: impl IntoIterator<Item = String>) -> Result<(), ConfigError> {
    let known = sections();
    for var in vars {
        let Some(rest) = var.strip_prefix("UPSHIFT_") else {
            continue;
        };
        let Some((section, _)) = rest.split_once("__") else {
            continue;
        };
        if !known.iter().any(|k| k.eq_ignore_ascii_case(section)) {
            return Err(bad(
                var.clone(),
                format!(
                    "no configuration section `{}` (sections: {})",
                    section.to_ascii_lowercase(),
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The defaults compiled into every binary (`config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// The replay profile: every tier on recorded RouteLLM outputs, for `eval`,
/// `policy fit`, the benchmarks and `demo --replay`.
pub const REPLAY_TOML: &str = include_str!("../../../config/replay.toml");

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the offending key.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The whole configuration of every upshift process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// NATS connection and stream settings.
    pub nats: NatsConfig,
    /// Postgres connection.
    pub database: DatabaseConfig,
    /// HTTP API.
    pub api: ApiConfig,
    /// Orchestrator loops.
    pub orchestrator: OrchestratorConfig,
    /// Worker pools.
    pub worker: WorkerConfig,
    /// The model catalog.
    pub models: Vec<ModelConfig>,
    /// Which catalog model serves each tier.
    pub tiers: TierModels,
    /// The routing policy.
    pub routing: RoutingConfig,
    /// Rag jobs: retrieval, answering and their floors.
    pub rag: RagConfig,
    /// What one tenant may submit.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Per-tenant admission limits; 0 turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Jobs a tenant may submit per second, per orchestrator replica.
    pub submit_per_sec: u32,
    /// Jobs a tenant may submit at once above that rate.
    pub submit_burst: u32,
    /// A tenant's jobs running at once (counted in Postgres each second).
    pub max_jobs_in_flight: u64,
    /// The budget of a job that names none, US dollars; 0 = none.
    pub default_budget_usd: f64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            submit_per_sec: 100,
            submit_burst: 200,
            max_jobs_in_flight: 10_000,
            default_budget_usd: 1.0,
        }
    }
}

impl Config {
    /// The configuration as JSON with every secret replaced by `***`
    /// (`upshift config`): NATS password and token, passwords in URLs,
    /// API key hashes.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        for key in ["password", "token"] {
            if let Some(x) = v["nats"].get_mut(key)
                && !x.is_null()
            {
                *x = "***".into();
            }
        }
        v["nats"]["url"] = redact_url(&self.nats.url).into();
        v["database"]["url"] = redact_url(&self.database.url).into();
        if let Some(keys) = v["api"]["keys"].as_array_mut() {
            for k in keys {
                if let Some(h) = k.get_mut("key_sha256")
                    && !h.is_null()
                {
                    *h = "***".into();
                }
            }
        }
        v
    }
}

/// Orchestrator loop settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestratorConfig {
    /// Results pulled per batch.
    pub result_batch: usize,
    /// Sweeper period (`sweep_interval_ms`).
    #[serde(rename = "sweep_interval_ms", with = "units::millis")]
    pub sweep_interval: Duration,
    /// Grace before an unpublished attempt is re-published (`publish_grace_ms`).
    #[serde(rename = "publish_grace_ms", with = "units::millis")]
    pub publish_grace: Duration,
    /// Deadline of an attempt (`attempt_deadline_secs`).
    #[serde(rename = "attempt_deadline_secs", with = "units::secs")]
    pub attempt_deadline: Duration,
    /// Deliveries of a result that fails to settle before it is decided as
    /// a failure without its output, recorded in `dead_letters` and dropped.
    #[serde(default = "default_result_max_deliver")]
    pub result_max_deliver: u64,
}

fn default_result_max_deliver() -> u64 {
    8
}

/// Worker settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Attempts run at once per process.
    pub concurrency: usize,
    /// Period of in-progress acks during a model call (`progress_interval_secs`).
    #[serde(rename = "progress_interval_secs", with = "units::secs")]
    pub progress_interval: Duration,
    /// Most retries of a failed model call (rate limited, transient, timeout).
    #[serde(default = "default_retry_max_times")]
    pub retry_max_times: usize,
    /// Most seconds one attempt waits between retries, all together (and
    /// never more than half of `orchestrator.attempt_deadline_secs`).
    #[serde(
        rename = "retry_max_wait_secs",
        with = "units::secs",
        default = "default_retry_max_wait"
    )]
    pub retry_max_wait: Duration,
    /// Longest provider Retry-After honoured, seconds; a longer one ends the
    /// retries and the attempt fails `rate_limited` (and escalates).
    #[serde(
        rename = "retry_after_max_secs",
        with = "units::secs",
        default = "default_retry_after_max"
    )]
    pub retry_after_max: Duration,
    /// Address of the worker's `/metrics`, `/healthz` and `/readyz`; none = off.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Where local model files live; `UPSHIFT_MODEL_DIR`, else
    /// `$XDG_CACHE_HOME/upshift/models`, else `~/.cache/upshift/models`.
    #[serde(default)]
    pub model_dir: Option<PathBuf>,
}

fn default_retry_max_times() -> usize {
    3
}
fn default_retry_max_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_retry_after_max() -> Duration {
    Duration::from_secs(20)
}

impl WorkerConfig {
    /// The directory relative local model paths are resolved against.
    pub fn model_dir(&self) -> PathBuf {
        if let Some(d) = std::env::var_os("UPSHIFT_MODEL_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        if let Some(d) = &self.model_dir {
            return d.clone();
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        cache.join("upshift").join("models")
    }
}

/// One model in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Catalog name, referenced by `[tiers]`.
    pub name: String,
    /// US dollars per million input tokens.
    pub usd_per_m_in: f64,
    /// US dollars per million output tokens.
    pub usd_per_m_out: f64,
    /// How the worker reaches the model.
    pub provider: ProviderConfig,
}

impl ModelConfig {
    /// Runs of the model paid for per call: a local model's self-consistency
    /// samples, otherwise one.
    pub fn samples(&self) -> u32 {
        match &self.provider {
            ProviderConfig::Local(l) => l.samples.max(1),
            _ => 1,
        }
    }

    /// The most tokens one call of this model can read and write, for a
    /// task of `prompt_bytes` bytes of its own text whose answer is
    /// `output_bytes` long: a local model reads at most its context window
    /// twice per sample (label scoring reads a content-free prompt too) and
    /// writes `max_tokens` per sample; an OpenAI-compatible model writes at
    /// most `max_tokens` and reads at most the prompt's bytes (a token covers
    /// at least one byte) plus the templates' allowance; a replay writes
    /// what it answered.
    pub fn token_caps(&self, prompt_bytes: usize, output_bytes: usize) -> crate::cost::TokenCaps {
        use crate::cost::{TEMPLATE_ALLOWANCE_BYTES, TokenCaps, bytes_cap};
        let prompt = bytes_cap(prompt_bytes.saturating_add(TEMPLATE_ALLOWANCE_BYTES));
        match &self.provider {
            ProviderConfig::Local(l) => TokenCaps {
                tokens_in: l.context_tokens.saturating_mul(2).saturating_mul(l.samples.max(1)),
                tokens_out: l.max_tokens.saturating_mul(l.samples.max(1)),
            },
            ProviderConfig::Openai(o) => TokenCaps {
                tokens_in: prompt,
                tokens_out: o.max_tokens,
            },
            ProviderConfig::Replay { .. } => TokenCaps {
                tokens_in: prompt,
                tokens_out: bytes_cap(output_bytes.saturating_add(1)),
            },
        }
    }
}

/// Provider settings, tagged by `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderConfig {
    /// Answers from a RouteLLM-format CSV of recorded outputs.
    Replay {
        /// CSV files, searched in order (a prompt found in an earlier file wins).
        datasets: Vec<PathBuf>,
        /// Column holding this model's correctness; `<column>_response` holds its text.
        column: String,
        /// Simulated latency per call, milliseconds.
        #[serde(default)]
        latency_ms: u64,
    },
    /// An OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama,
    /// llama.cpp's server, LiteLLM).
    Openai(OpenaiConfig),
    /// In-process GGUF inference on CPU with llama.cpp.
    Local(LocalConfig),
}

impl ProviderConfig {
    /// Whether the model can be used with the current environment: an
    /// `openai` model needs a base URL (given, or from `base_url_env`).
    pub fn available(&self) -> bool {
        match self {
            ProviderConfig::Openai(o) => o.resolved_base_url().is_some(),
            _ => true,
        }
    }
}

/// The model serving each tier: a catalog name, or a list of names of which
/// the first [available](ProviderConfig::available) one serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierModels {
    /// Model(s) of the small tier.
    pub small: TierChoice,
    /// Model(s) of the medium tier.
    pub medium: TierChoice,
    /// Model(s) of the strong tier.
    pub strong: TierChoice,
}

impl Config {
    /// Loads defaults, then `file` if given, then `UPSHIFT_*` environment
    /// variables (`__` separates nesting), and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_layers(file.as_slice())
    }

    /// Like [`Config::load`] with several files, later ones winning (e.g. a
    /// deployment config, then a fitted policy).
    /// `UPSHIFT_PROFILE=replay` layers [`REPLAY_TOML`] under the files.
    pub fn load_layers(files: &[&Path]) -> Result<Config, ConfigError> {
        let profile = match std::env::var("UPSHIFT_PROFILE").unwrap_or_default().as_str() {
            "" | "local" => None,
            "replay" => Some(REPLAY_TOML),
            other => {
                return Err(bad(
                    "UPSHIFT_PROFILE",
                    format!("unknown profile `{other}` (expected local or replay)"),
                ));
            }
        };
        Self::load_profile(profile, files)
    }

    /// Like [`Config::load_layers`] with an embedded profile (e.g.
    /// [`REPLAY_TOML`]) between the defaults and the files.
    pub fn load_profile(profile: Option<&str>, files: &[&Path]) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(p) = profile {
            fig = fig.merge(Toml::string(p));
        }
        for path in files {
            if !path.exists() {
                return Err(bad("--config", format!("file {} does not exist", path.display())));
            }
            fig = fig.merge(Toml::file(path));
        }
        unknown_section(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))?;
        fig = fig.merge(
            Env::prefixed("UPSHIFT_")
                .filter(|k| is_config_var(k.as_str()))
                .split("__"),
        );
        Self::from_figment(fig)
    }

    /// Parses and validates a TOML document layered over the defaults.
    pub fn from_toml_over_defaults(toml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(toml)))
    }

    fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let cfg: Config = fig.extract().map_err(|e| {
            let key = if e.path.is_empty() {
                "<root>".to_string()
            } else {
                e.path.join(".")
            };
            bad(key, e.kind.to_string())
        })?;
        let mut cfg = cfg;
        cfg.validate()?;
        // Fix each tier to its first available model, so every reader (and a
        // config written back out) sees one name.
        for tier in Tier::ALL {
            let name = cfg.tier_model_name(*tier).to_string();
            let slot = match tier {
                Tier::Small => &mut cfg.tiers.small,
                Tier::Medium => &mut cfg.tiers.medium,
                Tier::Strong => &mut cfg.tiers.strong,
            };
            *slot = TierChoice::One(name);
        }
        Ok(cfg)
    }

    fn tier_choice(&self, tier: Tier) -> &TierChoice {
        match tier {
            Tier::Small => &self.tiers.small,
            Tier::Medium => &self.tiers.medium,
            Tier::Strong => &self.tiers.strong,
        }
    }

    fn try_tier_model_name(&self, tier: Tier) -> Option<&str> {
        let names = self.tier_choice(tier).names();
        let available = names
            .iter()
            .find(|n| self.model(n).is_some_and(|m| m.provider.available()));
        // A single name is taken as given: its provider reports its own problem.
        available
            .or(if names.len() == 1 { names.first() } else { None })
            .map(String::as_str)
    }

    /// Catalog name of the model serving `tier` (after validation).
    pub fn tier_model_name(&self, tier: Tier) -> &str {
        self.try_tier_model_name(tier)
            .expect("validated: every tier resolves to a model")
    }

    /// Catalog entry by name.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The catalog entry an attempt on `tier` is priced with: the model the
    /// result names when it is one of the tier's candidates (a worker may
    /// serve another of them), else the one this orchestrator dispatched to.
    pub fn pricing_model(&self, tier: Tier, named: &str) -> &ModelConfig {
        let candidate = self.tier_choice(tier).names().iter().any(|n| n == named);
        match self.model(named) {
            Some(m) if candidate => m,
            _ => self.tier_model(tier),
        }
    }

    /// Catalog entry serving `tier` (exists after validation).
    pub fn tier_model(&self, tier: Tier) -> &ModelConfig {
        self.model(self.tier_model_name(tier))
            .expect("validated: every tier names a model")
    }
}

mod api;
mod connections;
mod providers;
mod rag;
pub mod routing;
mod tiers;
pub mod units;
mod validate;

pub use api::{ApiConfig, ApiKey};
pub use connections::{DatabaseConfig, NatsConfig, redact_url};
pub use rag::{AnswerMode, CritiqueMode, RANKING_READS, RagConfig, ZERO_FEATURES, ZeroRank, ZeroScore};
pub use tiers::TierChoice;

pub use providers::{LocalConfig, OpenaiConfig, PromptFormat, StructuredOutput};

#[cfg(test)]
mod tests;
