//! Model providers: one trait, one enum built from the `[[models]]` config.

#[cfg(feature = "local")]
pub mod local;
mod openai;
mod replay;

#[cfg(feature = "local")]
pub use local::{LocalModel, LocalProvider};
pub use openai::OpenaiProvider;
pub use replay::ReplayProvider;

use crate::error::{Error, ProviderError};
use std::future::Future;
use std::path::Path;
use upshift_shared::config::{ModelConfig, ProviderConfig};
use upshift_shared::messages::TaskMessage;

/// What a model returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Output text.
    pub output: String,
    /// Prompt tokens, when the provider counts them.
    pub tokens_in: Option<u32>,
    /// Completion tokens, when the provider counts them.
    pub tokens_out: Option<u32>,
    /// Confidence in [0,1], when the provider has a signal.
    pub confidence: Option<f64>,
    /// Recorded correctness (replay only; for scoring, never for routing).
    pub label_correct: Option<bool>,
}

/// Something that can answer a task.
pub trait ModelProvider {
    /// Runs the model on `task`. Safe to call concurrently; retrying a call
    /// that failed with a retryable error is safe.
    fn complete(&self, task: &TaskMessage) -> impl Future<Output = Result<Completion, ProviderError>> + Send;
    /// Provider kind, e.g. `replay`.
    fn kind(&self) -> &'static str;
}

/// Every provider upshift ships.
pub enum Provider {
    /// Recorded outputs.
    Replay(ReplayProvider),
    /// An OpenAI-compatible server.
    Openai(Box<OpenaiProvider>),
    /// In-process llama.cpp.
    #[cfg(feature = "local")]
    Local(LocalProvider),
}

impl Provider {
    /// Builds the provider of a catalog model; local model files are found
    /// under `model_dir`.
    pub fn from_config(model: &ModelConfig, model_dir: &Path) -> Result<Provider, Error> {
        let err = |reason: String| Error::ProviderConfig {
            model: model.name.clone(),
            reason,
        };
        match &model.provider {
            ProviderConfig::Replay {
                datasets,
                column,
                latency_ms,
            } => ReplayProvider::load(datasets, column, *latency_ms)
                .map(Provider::Replay)
                .map_err(err),
            ProviderConfig::Openai(o) => OpenaiProvider::new(o)
                .map(|p| Provider::Openai(Box::new(p)))
                .map_err(err),
            #[cfg(feature = "local")]
            ProviderConfig::Local(l) => LocalProvider::load(l, model_dir).map(Provider::Local).map_err(err),
            #[cfg(not(feature = "local"))]
            ProviderConfig::Local(_) => {
                let _ = model_dir;
                Err(err("this build has no local provider (feature `local` is off)".into()))
            }
        }
    }

    /// Most calls worth running at once, when the provider has a limit; the
    /// pool pulls no more than this, so queued work stays in NATS.
    pub fn max_concurrency(&self) -> Option<usize> {
        match self {
            Provider::Replay(_) => None,
            Provider::Openai(p) => Some(p.max_concurrency()),
            #[cfg(feature = "local")]
            Provider::Local(p) => Some(p.max_concurrency()),
        }
    }
}

impl ModelProvider for Provider {
    /// Every provider's answer is cut at the step's stop sequences here
    /// (a server that stops by itself leaves nothing to cut); `max_tokens`
    /// is each provider's to apply (`TaskMessage::token_budget`), and a
    /// replayed answer, recorded whole, is not shortened by it.
    async fn complete(&self, task: &TaskMessage) -> Result<Completion, ProviderError> {
        let mut c = match self {
            Provider::Replay(p) => p.complete(task).await,
            Provider::Openai(p) => p.complete(task).await,
            #[cfg(feature = "local")]
            Provider::Local(p) => p.complete(task).await,
        }?;
        let cut = task.cut_at_stop(&c.output).len();
        c.output.truncate(cut);
        Ok(c)
    }
    fn kind(&self) -> &'static str {
        match self {
            Provider::Replay(p) => p.kind(),
            Provider::Openai(_) => "openai",
            #[cfg(feature = "local")]
            Provider::Local(_) => "local",
        }
    }
}
