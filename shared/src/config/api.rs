//! `[api]`: the HTTP API's listener, keys, limits and waits.

use super::units;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// HTTP API settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address, e.g. `127.0.0.1:8080` (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Bearer keys; empty means no authentication and tenant `default`.
    #[serde(default)]
    pub keys: Vec<ApiKey>,
    /// A connection that has not sent its request headers within this many
    /// seconds is closed.
    #[serde(
        rename = "header_read_timeout_secs",
        with = "units::secs",
        default = "default_header_read_timeout"
    )]
    pub header_read_timeout: Duration,
    /// A request (body included) not answered within this many seconds gets
    /// 408. Event streams are exempt.
    #[serde(
        rename = "request_timeout_secs",
        with = "units::secs",
        default = "default_request_timeout"
    )]
    pub request_timeout: Duration,
    /// Requests in flight at once; more get 503 with Retry-After.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Of those, at most this many for one credential (one bearer key, or
    /// all key-less requests together); more get 429 with Retry-After, so
    /// one key holder cannot take the whole cap.
    #[serde(default = "default_max_concurrent_per_key")]
    pub max_concurrent_per_key: usize,
    /// Requests without a key are served as tenant `default` even though
    /// keys exist or the API listens beyond loopback. Off: then key-less
    /// requests are served only while no key was ever configured or issued,
    /// and only on a loopback address.
    #[serde(default)]
    pub anonymous: bool,
    /// Event streams one tenant may hold open on one replica; more get 429.
    #[serde(default = "default_max_streams_per_tenant")]
    pub max_streams_per_tenant: usize,
    /// Postgres connections all event streams of one replica share (apart
    /// from the pool decisions use).
    #[serde(default = "default_stream_db_connections")]
    pub stream_db_connections: u32,
    /// An event stream ends after this many seconds (the client resumes
    /// with `Last-Event-ID`).
    #[serde(rename = "stream_max_secs", with = "units::secs", default = "default_stream_max")]
    pub stream_max: Duration,
    /// Address of the operations listener (`/metrics`, `/healthz`,
    /// `/readyz`), apart from the API because metrics name every tenant;
    /// none = no `/metrics`.
    #[serde(default)]
    pub ops_listen: Option<SocketAddr>,
    /// `POST /v1/chat/completions` waits this many seconds for its job's
    /// answer; then it answers 504 with the job id (`x-upshift-job-id`) and
    /// the job keeps running. Below `request_timeout_secs`; unset, 5/6 of
    /// it (50 s of the default 60): see [`ApiConfig::chat_wait`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_wait_secs: Option<u64>,
}

impl ApiConfig {
    /// How long a chat waits for its answer: `chat_wait_secs`, or 5/6 of
    /// the request timeout (at least a second), so the 504 always comes
    /// before the request timeout's 408.
    pub fn chat_wait(&self) -> Duration {
        match self.chat_wait_secs {
            Some(s) => Duration::from_secs(s),
            None => (self.request_timeout * 5 / 6).max(Duration::from_secs(1)),
        }
    }
}

fn default_stream_db_connections() -> u32 {
    2
}
fn default_max_streams_per_tenant() -> usize {
    64
}
fn default_stream_max() -> Duration {
    Duration::from_secs(3600)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_concurrent_requests() -> usize {
    512
}
fn default_max_concurrent_per_key() -> usize {
    128
}

/// One API key: the hex SHA-256 of the key (never the key), or the name of
/// an environment variable holding the key (a Kubernetes Secret, say),
/// hashed when the orchestrator starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Tenant the key belongs to.
    pub tenant: String,
    /// Lower-case hex SHA-256 of the bearer token.
    #[serde(default)]
    pub key_sha256: String,
    /// Environment variable holding the bearer token itself.
    #[serde(default)]
    pub key_env: Option<String>,
}
