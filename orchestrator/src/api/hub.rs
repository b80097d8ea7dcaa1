//! One poller per replica for every open event stream. Each 250 ms it asks
//! Postgres once which jobs have new route events (and each one's newest
//! event id) and tells the streams that follow those jobs; an idle stream
//! costs no query. Events commit out of id order (two transactions), so
//! each poll looks back over the ids of the poll before. A stream reads
//! only when the newest id it is told of is above the last one it sent, so
//! the look-back costs it nothing; it also reads on its own every few
//! seconds in case a wake-up was missed.

use crate::store::PgStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the poller asks.
const POLL: Duration = Duration::from_millis(250);

/// Per followed job: how many streams follow it, and the newest event id
/// the poller has seen for it.
type Followed = HashMap<Uuid, (usize, watch::Sender<i64>)>;

/// The jobs followed by open streams, each with its newest event id.
#[derive(Clone, Default)]
pub struct Hub(Arc<Mutex<Followed>>);

/// A stream's hold on a job's newest event id; let go on drop.
pub struct Watch {
    hub: Hub,
    job: Uuid,
    /// Changes when the job has an event newer than any seen before.
    pub newest: watch::Receiver<i64>,
}

impl Hub {
    /// Follows `job` until the returned watch is dropped. A change after
    /// this call is seen by the watch even if nobody waits for it yet.
    pub fn watch(&self, job: Uuid) -> Watch {
        let mut jobs = self.0.lock().expect("hub lock");
        let entry = jobs.entry(job).or_insert_with(|| (0, watch::channel(0).0));
        entry.0 += 1;
        Watch {
            hub: self.clone(),
            job,
            newest: entry.1.subscribe(),
        }
    }

    /// Polls until `cancel`, telling the streams of jobs with new events.
    pub async fn run(self, store: PgStore, cancel: CancellationToken) {
        let (mut seen, mut before) = (None::<i64>, None::<i64>);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            if self.0.lock().expect("hub lock").is_empty() {
                continue;
            }
            // From the ids the poll before last had seen: an event whose id
            // was taken before a newer one's but committed after it is
            // still found.
            let from = before.or(seen);
            match store.jobs_with_events_after(from).await {
                Ok((jobs, max)) => {
                    before = seen;
                    seen = max.or(seen);
                    let watched = self.0.lock().expect("hub lock");
                    for (job, newest) in jobs {
                        if let Some((_, tx)) = watched.get(&job) {
                            tx.send_if_modified(|v| {
                                let newer = newest > *v;
                                *v = (*v).max(newest);
                                newer
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event streams: polling for new events failed"),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut jobs = self.hub.0.lock().expect("hub lock");
        if let Some(entry) = jobs.get_mut(&self.job) {
            entry.0 -= 1;
            if entry.0 == 0 {
                jobs.remove(&self.job);
            }
        }
    }
}
