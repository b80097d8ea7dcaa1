//! How a model call is retried: a bounded number of times, for a bounded
//! total wait, with jitter. A provider's Retry-After is honoured only within
//! those bounds: one that asks for longer than `worker.retry_after_max_secs`
//! ends the retries at once (the attempt then fails `rate_limited` and the
//! router escalates), and one of 0 never turns into a hot loop because the
//! back-off's own delay is the floor.

use crate::error::ProviderError;
use backon::{ExponentialBuilder, Retryable};
use std::future::Future;
use std::time::Duration;
use upshift_shared::config::WorkerConfig;

/// The retry bounds of one worker.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Most retries after the first call.
    pub max_times: usize,
    /// Most time spent waiting between calls, all retries together.
    pub max_wait: Duration,
    /// Longest Retry-After honoured; a longer one stops retrying.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// The policy configured under `[worker]`, waiting at most half of
    /// `attempt_deadline_secs` in all, so retries never outlive the attempt.
    pub fn from_config(cfg: &WorkerConfig, attempt_deadline: Duration) -> Self {
        RetryPolicy {
            max_times: cfg.retry_max_times,
            max_wait: cfg.retry_max_wait.min(attempt_deadline / 2),
            max_retry_after: cfg.retry_after_max,
        }
    }

    /// Runs `call` until it succeeds, fails with an error that retrying
    /// cannot help, or the bounds are reached; the last error is returned.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_max_times(self.max_times)
            .with_max_delay(self.max_wait);
        let mut waited = Duration::ZERO;
        let policy = *self;
        call.retry(backoff)
            .when(ProviderError::is_retryable)
            .adjust(move |e, backoff| {
                let d = policy.delay(e, backoff, waited)?;
                waited += d;
                Some(d)
            })
            .await
    }

    /// The wait before the next call after `e`, given the back-off's own
    /// next delay (`None`: its retries are used up) and the time `waited`
    /// so far; `None` stops retrying.
    pub fn delay(&self, e: &ProviderError, backoff: Option<Duration>, waited: Duration) -> Option<Duration> {
        let backoff = backoff?;
        let d = match e {
            ProviderError::RateLimited { retry_after: Some(ra) } if *ra > self.max_retry_after => return None,
            // The back-off's delay (with its jitter) is the floor: `0` or a
            // burst of identical Retry-Afters cannot synchronise callers.
            ProviderError::RateLimited { retry_after: Some(ra) } => (*ra).max(backoff),
            _ => backoff,
        };
        (waited + d <= self.max_wait).then_some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const POLICY: RetryPolicy = RetryPolicy {
        max_times: 3,
        max_wait: Duration::from_secs(30),
        max_retry_after: Duration::from_secs(10),
    };
    const LIMITED: fn(u64) -> ProviderError = |s| ProviderError::RateLimited {
        retry_after: Some(Duration::from_secs(s)),
    };

    #[test]
    fn retry_after_is_bounded_and_never_outlives_the_backoff() {
        let b = Some(Duration::from_millis(200));
        // Used-up back-off ends retries, whatever the provider asks.
        assert_eq!(POLICY.delay(&LIMITED(1), None, Duration::ZERO), None);
        // 0 is raised to the back-off's delay; a fair one is honoured.
        assert_eq!(POLICY.delay(&LIMITED(0), b, Duration::ZERO), b);
        assert_eq!(
            POLICY.delay(&LIMITED(5), b, Duration::ZERO),
            Some(Duration::from_secs(5))
        );
        // Longer than the cap, or past the total budget: stop.
        assert_eq!(POLICY.delay(&LIMITED(11), b, Duration::ZERO), None);
        assert_eq!(POLICY.delay(&LIMITED(5), b, Duration::from_secs(26)), None);
        assert_eq!(
            POLICY.delay(&ProviderError::Timeout, b, Duration::from_secs(29)),
            Some(Duration::from_millis(200))
        );
    }

    #[tokio::test]
    async fn a_provider_that_always_says_429_gets_a_bounded_number_of_calls() {
        let calls = AtomicUsize::new(0);
        let quick = RetryPolicy {
            max_wait: Duration::from_secs(5),
            ..POLICY
        };
        let started = std::time::Instant::now();
        let r: Result<(), _> = quick
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(LIMITED(0))
            })
            .await;
        assert!(matches!(r, Err(ProviderError::RateLimited { .. })));
        // At most `max_times` retries, and fewer when the jittered delays
        // reach `max_wait` first; never more waiting than `max_wait`.
        let n = calls.load(Ordering::SeqCst);
        assert!((2..=1 + quick.max_times).contains(&n), "{n} calls");
        assert!(started.elapsed() < quick.max_wait + Duration::from_secs(1));
        // A fatal error is not retried at all.
        calls.store(0, Ordering::SeqCst);
        let r: Result<(), _> = quick
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::Fatal("bad request".into()))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
