//! Event streams held open during a benchmark run: each of `n` tasks
//! follows a running job's `/v1/jobs/{id}/events` until it ends, then
//! another, until stopped — the load issue 15 asks decisions to ignore.

use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the watchers did.
pub struct Held {
    /// Most streams open at once.
    pub peak: usize,
    /// Streams opened in all.
    pub opened: usize,
}

/// Starts `n` watchers over `apis` (round robin); resolves when `stop`
/// fires and every watcher has let go.
pub fn hold(
    apis: Vec<String>,
    pool: PgPool,
    n: usize,
    stop: CancellationToken,
) -> impl std::future::Future<Output = Held> {
    let (open, peak, opened) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let http = reqwest::Client::new();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (api, pool, stop, http) = (apis[i % apis.len().max(1)].clone(), pool.clone(), stop.clone(), http.clone());
            let (open, peak, opened) = (open.clone(), peak.clone(), opened.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let job: Option<uuid::Uuid> = sqlx::query_scalar(
                        "SELECT id FROM jobs WHERE status = 'running' ORDER BY random() LIMIT 1",
                    )
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten();
                    let Some(job) = job else {
                        tokio::select! { _ = stop.cancelled() => return, _ = tokio::time::sleep(Duration::from_millis(50)) => continue }
                    };
                    let Ok(mut resp) = http.get(format!("{api}/v1/jobs/{job}/events")).send().await else {
                        continue;
                    };
                    if !resp.status().is_success() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    opened.fetch_add(1, Ordering::Relaxed);
                    let now = open.fetch_add(1, Ordering::Relaxed) + 1;
                    peak.fetch_max(now, Ordering::Relaxed);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            chunk = resp.chunk() => if !matches!(chunk, Ok(Some(_))) { break },
                        }
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    async move {
        for t in tasks {
            let _ = t.await;
        }
        Held {
            peak: peak.load(Ordering::Relaxed),
            opened: opened.load(Ordering::Relaxed),
        }
    }
}
