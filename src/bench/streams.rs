//! Event streams followed during a benchmark run, the way clients follow
//! their own jobs: job `i` of the run is followed by watcher `i mod n` from
//! when it is submitted to its `done` event, one job after another. So every
//! job is followed once, at most `n` streams are open at once, and how many
//! streams open does not depend on how fast streams end — the load issue 15
//! asks decisions to ignore.
//!
//! Watchers learn job ids from the submitter, as a client learns the id
//! `POST /v1/jobs` returns; none of them asks Postgres which jobs exist
//! (an earlier version picked random running jobs with a query of its own,
//! which put the harness's cost on the database it was measuring).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What the watchers did.
pub struct Held {
    /// Most streams open at once.
    pub peak: usize,
    /// Streams opened in all.
    pub opened: usize,
    /// Streams that ended with the job's `done` event.
    pub done: usize,
}

/// Hands submitted jobs to their watchers; dropping it tells the watchers
/// that no more jobs come.
pub struct Followers(Vec<mpsc::UnboundedSender<Uuid>>);

impl Followers {
    /// Job `i` of the run, just submitted as `id`, is followed by watcher
    /// `i mod n` (none when there are no watchers).
    pub fn follow(&self, i: usize, id: Uuid) {
        if !self.0.is_empty() {
            let _ = self.0[i % self.0.len()].send(id);
        }
    }
}

#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    peak: AtomicUsize,
    opened: AtomicUsize,
    done: AtomicUsize,
}

/// Starts `n` watchers over `apis` (round robin). Returns the handle the
/// submitter feeds and a future that resolves when every watcher has
/// followed its last job or `stop` fired.
pub fn hold(
    apis: Vec<String>,
    n: usize,
    stop: CancellationToken,
) -> (Followers, impl std::future::Future<Output = Held>) {
    let counts = Arc::new(Counts::default());
    let http = reqwest::Client::new();
    let (senders, tasks): (Vec<_>, Vec<_>) = (0..n)
        .map(|i| {
            let (tx, rx) = mpsc::unbounded_channel();
            let url = apis[i % apis.len().max(1)].clone();
            let task = tokio::spawn(watch(url, http.clone(), rx, counts.clone(), stop.clone()));
            (tx, task)
        })
        .unzip();
    let held = async move {
        for t in tasks {
            let _ = t.await;
        }
        Held {
            peak: counts.peak.load(Ordering::Relaxed),
            opened: counts.opened.load(Ordering::Relaxed),
            done: counts.done.load(Ordering::Relaxed),
        }
    };
    (Followers(senders), held)
}

/// One watcher: follows each job it is handed to its end, in turn.
async fn watch(
    api: String,
    http: reqwest::Client,
    mut jobs: mpsc::UnboundedReceiver<Uuid>,
    counts: Arc<Counts>,
    stop: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            _ = stop.cancelled() => return,
            job = jobs.recv() => match job { Some(job) => job, None => return },
        };
        // A few tries: a 429 (the tenant's stream cap) or a refused
        // connection is retried, anything else gives the job up.
        for _ in 0..20 {
            if stop.is_cancelled() {
                return;
            }
            let resp = http.get(format!("{api}/v1/jobs/{job}/events")).send().await;
            match resp {
                Ok(resp) if resp.status().is_success() => {
                    follow(resp, &counts, &stop).await;
                    break;
                }
                Ok(resp) if resp.status() != reqwest::StatusCode::TOO_MANY_REQUESTS => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// Reads one open stream to its end, counting it.
async fn follow(mut resp: reqwest::Response, counts: &Counts, stop: &CancellationToken) {
    counts.opened.fetch_add(1, Ordering::Relaxed);
    let now = counts.open.fetch_add(1, Ordering::Relaxed) + 1;
    counts.peak.fetch_max(now, Ordering::Relaxed);
    const DONE: &[u8] = b"event: done";
    // The last bytes seen, so a `done` split across two chunks is found.
    let (mut tail, mut saw_done) = (Vec::new(), false);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            chunk = resp.chunk() => match chunk {
                Ok(Some(bytes)) => {
                    tail.extend_from_slice(&bytes);
                    saw_done |= tail.windows(DONE.len()).any(|w| w == DONE);
                    tail.drain(..tail.len().saturating_sub(DONE.len()));
                }
                _ => break,
            },
        }
    }
    if saw_done {
        counts.done.fetch_add(1, Ordering::Relaxed);
    }
    counts.open.fetch_sub(1, Ordering::Relaxed);
}
