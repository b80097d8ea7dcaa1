//! Worker errors. Provider errors carry their class, and retry logic matches
//! on the class, never on message text.

use upshift_shared::ErrorClass;

use std::time::Duration;

/// A model call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider asked us to slow down, maybe saying for how long.
    #[error("rate limited")]
    RateLimited {
        /// The provider's Retry-After, if any.
        retry_after: Option<Duration>,
    },
    /// A failure that may succeed on retry (5xx, connection reset).
    #[error("transient provider error: {0}")]
    Transient(String),
    /// The call took too long.
    #[error("provider call timed out")]
    Timeout,
    /// The response body was larger than the provider's cap.
    #[error("response larger than {limit} bytes")]
    TooLarge {
        /// The cap, `max_response_bytes`.
        limit: usize,
    },
    /// Retrying cannot help (bad request, unknown input, auth).
    #[error("provider error: {0}")]
    Fatal(String),
}

impl ProviderError {
    /// Whether retrying the same call can help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. } | ProviderError::Transient(_) | ProviderError::Timeout
        )
    }

    /// The error class as reported in result messages.
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::RateLimited { .. } => ErrorClass::RateLimited,
            ProviderError::Transient(_) => ErrorClass::Transient,
            ProviderError::Timeout => ErrorClass::Timeout,
            ProviderError::TooLarge { .. } => ErrorClass::TooLarge,
            ProviderError::Fatal(_) => ErrorClass::Fatal,
        }
    }
}

/// Worker start-up and runtime errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// NATS failed.
    #[error("nats: {0}")]
    Nats(String),
    /// The worker's HTTP listener (`worker.listen`) could not be bound.
    #[error("worker.listen {addr}: {reason}")]
    Listen {
        /// The configured address.
        addr: String,
        /// Why binding failed.
        reason: String,
    },
    /// A provider could not be built from its configuration.
    #[error("provider `{model}`: {reason}")]
    ProviderConfig {
        /// The catalog model.
        model: String,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Wraps any NATS error.
    pub fn nats(e: impl std::fmt::Display) -> Self {
        Error::Nats(e.to_string())
    }
}

/// Result with the worker's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
