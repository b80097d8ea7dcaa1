//! Cross-field validation of a loaded configuration; every error names the key.

use super::{Config, ConfigError, bad};
use crate::subjects::valid_prefix;
use crate::types::Tier;

impl Config {
    /// Checks every cross-field rule; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !valid_prefix(&self.nats.prefix) {
            return Err(bad("nats.prefix", "use letters, digits, '-' or '_' only"));
        }
        for (key, d) in [
            ("nats.duplicate_window_secs", self.nats.duplicate_window),
            ("nats.ack_wait_secs", self.nats.ack_wait),
            ("orchestrator.sweep_interval_ms", self.orchestrator.sweep_interval),
            ("orchestrator.attempt_deadline_secs", self.orchestrator.attempt_deadline),
            ("worker.progress_interval_secs", self.worker.progress_interval),
            ("api.header_read_timeout_secs", self.api.header_read_timeout),
            ("api.request_timeout_secs", self.api.request_timeout),
            ("api.stream_max_secs", self.api.stream_max),
            ("api.chat_wait_secs", self.api.chat_wait()),
        ] {
            if d.is_zero() {
                return Err(bad(key, "must be greater than 0"));
            }
        }
        for (key, v) in [
            ("api.max_concurrent_requests", self.api.max_concurrent_requests as u64),
            ("api.max_concurrent_per_key", self.api.max_concurrent_per_key as u64),
            ("api.max_streams_per_tenant", self.api.max_streams_per_tenant as u64),
            ("api.stream_db_connections", u64::from(self.api.stream_db_connections)),
        ] {
            if v == 0 {
                return Err(bad(key, "must be greater than 0"));
            }
        }
        if self.nats.urls().is_empty() {
            return Err(bad(
                "nats.url",
                "give a server URL (several, for a cluster, separated by commas)",
            ));
        }
        if !(1..=5).contains(&self.nats.replicas) {
            return Err(bad("nats.replicas", "must be 1 to 5 (JetStream's limit)"));
        }
        if self.nats.user.is_some() != self.nats.password.is_some() {
            return Err(bad("nats.user / nats.password", "give both or neither"));
        }
        if let Some(ca) = &self.nats.ca_file
            && !ca.exists()
        {
            return Err(bad("nats.ca_file", format!("{} does not exist", ca.display())));
        }
        if self.orchestrator.result_max_deliver < 2 {
            return Err(bad("orchestrator.result_max_deliver", "must be at least 2"));
        }
        if self.nats.max_deliver < 1 {
            return Err(bad("nats.max_deliver", "must be at least 1"));
        }
        if self.worker.progress_interval >= self.nats.ack_wait {
            return Err(bad(
                "worker.progress_interval_secs",
                "must be shorter than nats.ack_wait_secs, or long calls are redelivered",
            ));
        }
        if self.worker.concurrency == 0 || self.orchestrator.result_batch == 0 {
            return Err(bad(
                "worker.concurrency / orchestrator.result_batch",
                "must be greater than 0",
            ));
        }
        if !(self.limits.default_budget_usd >= 0.0 && self.limits.default_budget_usd <= 1_000_000.0) {
            return Err(bad(
                "limits.default_budget_usd",
                "must be a number between 0 and 1000000",
            ));
        }
        if self.limits.submit_per_sec > 0 && self.limits.submit_burst == 0 {
            return Err(bad(
                "limits.submit_burst",
                "must be at least 1 when limits.submit_per_sec is set",
            ));
        }
        self.rag.validate()?;
        if self.database.max_connections == 0 {
            return Err(bad("database.max_connections", "must be greater than 0"));
        }
        if self.api.chat_wait_secs.is_some() && self.api.chat_wait() >= self.api.request_timeout {
            return Err(bad(
                "api.chat_wait_secs",
                "must be less than api.request_timeout_secs, or the request times out (408) before the wait does (504)",
            ));
        }
        if self.api.max_body_bytes < 1024 {
            return Err(bad("api.max_body_bytes", "must be at least 1024"));
        }
        for (i, k) in self.api.keys.iter().enumerate() {
            match &k.key_env {
                Some(var) if !k.key_sha256.is_empty() || var.trim().is_empty() => {
                    return Err(bad(
                        format!("api.keys[{i}]"),
                        "give key_sha256 or key_env (a variable name), not both",
                    ));
                }
                Some(_) => {}
                None if k.key_sha256.len() != 64 || !k.key_sha256.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    return Err(bad(format!("api.keys[{i}].key_sha256"), "must be 64 hex digits"));
                }
                None => {}
            }
            if k.tenant.trim().is_empty() {
                return Err(bad(format!("api.keys[{i}].tenant"), "must not be empty"));
            }
        }
        for (i, m) in self.models.iter().enumerate() {
            if !(m.usd_per_m_in >= 0.0 && m.usd_per_m_out >= 0.0) {
                return Err(bad(format!("models[{i}]"), "prices must be non-negative numbers"));
            }
            if self.models[..i].iter().any(|o| o.name == m.name) {
                return Err(bad(
                    format!("models[{i}].name"),
                    format!("duplicate model `{}`", m.name),
                ));
            }
        }
        for (i, m) in self.models.iter().enumerate() {
            m.provider
                .validate()
                .map_err(|(k, r)| bad(format!("models[{i}].provider.{k}"), r))?;
        }
        for tier in Tier::ALL {
            let choice = self.tier_choice(*tier);
            if choice.names().is_empty() {
                return Err(bad(format!("tiers.{tier}"), "name at least one model"));
            }
            for name in choice.names() {
                if self.model(name).is_none() {
                    return Err(bad(
                        format!("tiers.{tier}"),
                        format!("no model named `{name}` in [[models]]"),
                    ));
                }
            }
            if self.try_tier_model_name(*tier).is_none() {
                return Err(bad(
                    format!("tiers.{tier}"),
                    "none of the models is available (an openai model needs its base URL)",
                ));
            }
        }
        self.routing.validate().map_err(|(k, r)| bad(format!("routing.{k}"), r))
    }
}
