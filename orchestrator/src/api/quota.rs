//! Per-tenant admission of jobs: a submit rate and a cap on jobs in flight,
//! so one key cannot flood the tiers (the strong one above all). Beyond
//! either the submit gets 429 JSON with Retry-After, and nothing is written.
//! The rate is checked before the request's body is read ([`Submitter`]:
//! a flood costs a bucket lookup, not a body read, a parse and a plan);
//! the cap on jobs in flight once the job is valid ([`Quotas::admit`]).
//!
//! The rate is a token bucket per tenant (governor's GCRA) in each replica,
//! so N replicas admit up to N × `limits.submit_per_sec`. Jobs in flight are
//! counted in Postgres once a second (`running` jobs per tenant) plus what
//! this replica admitted since: a cap shared by every replica, approximate by
//! at most one second of other replicas' submissions.

use super::ApiError;
use crate::store::PgStore;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use upshift_shared::config::LimitsConfig;

/// The tenant of a submission whose rate allows it: the key is checked and
/// the tenant's rate bucket taken before the body is read.
pub struct Submitter(pub String);

impl FromRequestParts<super::AppState> for Submitter {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &super::AppState,
    ) -> Result<Self, Self::Rejection> {
        let super::Tenant(tenant) = super::Tenant::from_request_parts(parts, state).await?;
        state.quotas.check_rate(&tenant)?;
        Ok(Submitter(tenant))
    }
}

/// The admission state of one replica.
pub struct Quotas {
    rate: Option<DefaultKeyedRateLimiter<String>>,
    max_in_flight: u64,
    /// Running jobs per tenant at the last count, plus admissions since.
    in_flight: Mutex<HashMap<String, u64>>,
}

impl Quotas {
    /// Quotas as configured under `[limits]`.
    pub fn new(cfg: &LimitsConfig) -> Arc<Quotas> {
        let rate = NonZeroU32::new(cfg.submit_per_sec).map(|r| {
            let burst = NonZeroU32::new(cfg.submit_burst).unwrap_or(r);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(r).allow_burst(burst))
        });
        Arc::new(Quotas {
            rate,
            max_in_flight: cfg.max_jobs_in_flight,
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one submission of `tenant` from its rate bucket, or says when
    /// to retry. Runs before the body is read, so a refused flood costs
    /// no read; a submission refused later (bad input, the cap) has used
    /// its place in the rate like any request.
    pub fn check_rate(&self, tenant: &str) -> Result<(), ApiError> {
        if let Some(rate) = &self.rate
            && let Err(not_until) = rate.check_key(&tenant.to_string())
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("tenant `{tenant}` submits faster than limits.submit_per_sec allows"),
            )
            .retry_after(wait.as_secs_f64().ceil().max(1.0) as u64));
        }
        Ok(())
    }

    /// Admits one valid job of `tenant` under its cap on jobs in flight,
    /// or says why not and when to retry.
    pub fn admit(&self, tenant: &str) -> Result<(), ApiError> {
        let mut in_flight = self.in_flight.lock().expect("quota lock");
        let running = in_flight.get(tenant).copied().unwrap_or(0);
        if self.max_in_flight > 0 && running >= self.max_in_flight {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_jobs",
                format!(
                    "tenant `{tenant}` has {running} jobs running (limits.max_jobs_in_flight = {})",
                    self.max_in_flight
                ),
            )
            .retry_after(1));
        }
        *in_flight.entry(tenant.to_string()).or_default() += 1;
        Ok(())
    }

    /// Replaces the counts of jobs in flight with Postgres's, every second
    /// until `cancel`.
    pub async fn refresh(self: Arc<Self>, store: PgStore, cancel: CancellationToken) {
        if self.max_in_flight == 0 {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match store.running_jobs_by_tenant().await {
                Ok(counts) => *self.in_flight.lock().expect("quota lock") = counts,
                Err(e) => tracing::warn!(error = %e, "counting running jobs failed; keeping the last counts"),
            }
            if let Some(rate) = &self.rate {
                rate.retain_recent();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_past_its_rate_or_cap_is_refused_with_a_retry_time() {
        let q = Quotas::new(&LimitsConfig {
            submit_per_sec: 1,
            submit_burst: 2,
            max_jobs_in_flight: 0,
            default_budget_usd: 0.0,
        });
        assert!(q.check_rate("acme").is_ok() && q.check_rate("acme").is_ok());
        let refused = q.check_rate("acme").unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.retry_secs().is_some_and(|s| s >= 1));
        // Another tenant has its own bucket; the rate is not the cap.
        assert!(q.check_rate("globex").is_ok());
        assert!((0..10).all(|_| q.admit("acme").is_ok()));

        let q = Quotas::new(&LimitsConfig {
            submit_per_sec: 0,
            submit_burst: 0,
            max_jobs_in_flight: 2,
            default_budget_usd: 0.0,
        });
        assert!(q.admit("acme").is_ok() && q.admit("acme").is_ok());
        assert_eq!(q.admit("acme").unwrap_err().status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(q.admit("globex").is_ok());
    }
}
