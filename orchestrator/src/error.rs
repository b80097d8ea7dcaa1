//! The orchestrator's error type. Classes matter: a database or NATS error is
//! transient (retry the message later), a bad request is the caller's.

/// Errors of the orchestrator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Postgres failed; the operation can be retried.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// NATS failed; the operation can be retried.
    #[error("nats: {0}")]
    Nats(String),
    /// The request is invalid; `field` names what is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// Dotted path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Nothing with that id is visible to the caller.
    #[error("{0} not found")]
    NotFound(String),
    /// Missing or unknown API key.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The embedding model failed (loading it, or running it).
    #[error("embedding: {0}")]
    Embedding(String),
    /// The orchestrator is stopping; the operation can be retried on
    /// another replica or after the restart.
    #[error("shutting down: {0}")]
    ShuttingDown(&'static str),
    /// Configuration problem at start-up.
    #[error(transparent)]
    Config(#[from] upshift_shared::config::ConfigError),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Wraps any NATS error.
    pub fn nats(e: impl std::fmt::Display) -> Self {
        Error::Nats(e.to_string())
    }
}

/// Result with the orchestrator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
