//! The connection sections: `[nats]` and `[database]`, whose secrets
//! (passwords, tokens, URLs with credentials) never reach a log.

use super::units;
use crate::subjects::Subjects;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// NATS settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, or the URLs of a cluster's servers separated by commas
    /// (the client fails over between them, and learns the rest of the
    /// cluster from the server it reaches).
    pub url: String,
    /// Replicas of each JetStream stream (and so of its consumers): 1 on a
    /// single server, 3 on a 3-node cluster, where a stream then survives
    /// the loss of one node.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Subject prefix (see [`Subjects`]).
    pub prefix: String,
    /// JetStream duplicate window (`duplicate_window_secs`).
    #[serde(rename = "duplicate_window_secs", with = "units::secs")]
    pub duplicate_window: Duration,
    /// Deliveries of a task message before it is dead-lettered.
    pub max_deliver: i64,
    /// Ack wait of the task consumers (`ack_wait_secs`).
    #[serde(rename = "ack_wait_secs", with = "units::secs")]
    pub ack_wait: Duration,
    /// User name, with `password` (set the password via `UPSHIFT_NATS__PASSWORD`).
    #[serde(default)]
    pub user: Option<String>,
    /// Password for `user`; never logged.
    #[serde(default)]
    pub password: Option<String>,
    /// Token authentication; never logged.
    #[serde(default)]
    pub token: Option<String>,
    /// Refuse to talk to the server without TLS.
    #[serde(default)]
    pub tls_required: bool,
    /// PEM file of extra root certificates for the server's TLS certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Subject prefix of this process's reply inboxes. Default: `_INBOX_<user>`
    /// when `user` is set (so each role's NATS permissions can allow only its
    /// own inboxes), else `_INBOX`.
    #[serde(default)]
    pub inbox_prefix: Option<String>,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("NatsConfig")
            .field("url", &self.urls().into_iter().map(redact_url).collect::<Vec<_>>())
            .field("replicas", &self.replicas)
            .field("prefix", &self.prefix)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("tls_required", &self.tls_required)
            .field("ca_file", &self.ca_file)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish_non_exhaustive()
    }
}

fn default_replicas() -> usize {
    1
}

impl NatsConfig {
    /// The inbox prefix in use (see [`NatsConfig::inbox_prefix`]).
    pub fn inbox_prefix(&self) -> String {
        match (&self.inbox_prefix, &self.user) {
            (Some(p), _) => p.clone(),
            (None, Some(user)) => format!("_INBOX_{}", user.replace(['.', '*', '>', ' '], "_")),
            (None, None) => "_INBOX".to_string(),
        }
    }

    /// The server URLs: `url` split at commas.
    pub fn urls(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
    }

    /// The subject names for this prefix.
    pub fn subjects(&self) -> Subjects {
        Subjects::new(&self.prefix)
    }
}

/// Postgres settings.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL (may contain a password; never logged).
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
