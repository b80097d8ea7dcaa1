//! Model providers: one trait, one enum built from the `[[models]]` config.
//! Real providers (OpenAI-compatible, local GGUF) slot in as new variants.

mod replay;

pub use replay::ReplayProvider;

use crate::error::{Error, ProviderError};
use std::future::Future;
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
}

impl Provider {
    /// Builds the provider of a catalog model.
    pub fn from_config(model: &ModelConfig) -> Result<Provider, Error> {
        match &model.provider {
            ProviderConfig::Replay {
                datasets,
                column,
                latency_ms,
            } => ReplayProvider::load(datasets, column, *latency_ms)
                .map(Provider::Replay)
                .map_err(|reason| Error::ProviderConfig {
                    model: model.name.clone(),
                    reason,
                }),
        }
    }
}

impl ModelProvider for Provider {
    async fn complete(&self, task: &TaskMessage) -> Result<Completion, ProviderError> {
        match self {
            Provider::Replay(p) => p.complete(task).await,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Provider::Replay(p) => p.kind(),
        }
    }
}
