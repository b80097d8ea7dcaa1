//! NATS subject and stream names, derived from one configurable prefix so that
//! tests and tenants of one server can live side by side.

use crate::types::Tier;

/// Default subject prefix: `upshift.tasks.small`, `upshift.results`, ...
pub const DEFAULT_PREFIX: &str = "upshift";

/// Every name upshift uses on NATS, for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// Names under `prefix` (letters, digits, `-` and `_` only).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>.tasks.<tier>`: where attempts for a tier are published.
    pub fn tasks(&self, tier: Tier) -> String {
        format!("{}.tasks.{}", self.prefix, tier)
    }

    /// `<prefix>.tasks.*`: the subjects of the task stream.
    pub fn tasks_wildcard(&self) -> String {
        format!("{}.tasks.*", self.prefix)
    }

    /// `<prefix>.results`: where workers publish results.
    pub fn results(&self) -> String {
        format!("{}.results", self.prefix)
    }

    /// `<prefix>.dead`: where unreadable messages are set aside, with the
    /// reason in the `Upshift-Reason` header.
    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// JetStream's advisory for a task message that exhausted `max_deliver`
    /// on any tier consumer.
    pub fn max_deliveries_advisory(&self) -> String {
        format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.*", self.tasks_stream())
    }

    /// Stream holding dead letters: the advisories above and `<prefix>.dead`.
    pub fn dead_stream(&self) -> String {
        format!("{}_DEAD", self.stream_stem())
    }

    /// Work-queue stream holding attempts, e.g. `UPSHIFT_TASKS`.
    pub fn tasks_stream(&self) -> String {
        format!("{}_TASKS", self.stream_stem())
    }

    /// Stream holding results, e.g. `UPSHIFT_RESULTS`.
    pub fn results_stream(&self) -> String {
        format!("{}_RESULTS", self.stream_stem())
    }

    /// Durable consumer shared by every worker of a tier.
    pub fn worker_consumer(&self, tier: Tier) -> String {
        format!("workers-{tier}")
    }

    /// Durable consumer shared by every orchestrator replica.
    pub fn orchestrator_consumer(&self) -> &'static str {
        "orchestrator"
    }

    fn stream_stem(&self) -> String {
        self.prefix.to_ascii_uppercase().replace(['-', '.'], "_")
    }
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

/// Whether `prefix` is usable as a subject token and a stream name stem.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let s = Subjects::default();
        assert_eq!(s.tasks(Tier::Medium), "upshift.tasks.medium");
        assert_eq!(s.results(), "upshift.results");
        assert_eq!(s.tasks_stream(), "UPSHIFT_TASKS");
        assert_eq!(s.worker_consumer(Tier::Small), "workers-small");
        assert_eq!(
            s.max_deliveries_advisory(),
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.UPSHIFT_TASKS.*"
        );
        assert_eq!(
            (s.dead(), s.dead_stream()),
            ("upshift.dead".into(), "UPSHIFT_DEAD".into())
        );
        assert!(valid_prefix("t-123_a") && !valid_prefix("a.b") && !valid_prefix(""));
    }
}
