//! One poller per replica for every open event stream. Each 250 ms it asks
//! Postgres once which jobs have new route events and wakes the streams
//! that follow those jobs; an idle stream costs no query. Events commit out
//! of id order (two transactions), so each poll looks back over the ids of
//! the poll before; a wake-up too many is harmless (the stream reads
//! nothing new), and a stream also reads on its own every few seconds in
//! case one was missed.

use crate::store::PgStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the poller asks.
const POLL: Duration = Duration::from_millis(250);

/// Per followed job: how many streams follow it, and their wake-up.
type Followed = HashMap<Uuid, (usize, Arc<Notify>)>;

/// The jobs followed by open streams, each with its wake-up.
#[derive(Clone, Default)]
pub struct Hub(Arc<Mutex<Followed>>);

/// A stream's hold on a job's wake-up; let go on drop.
pub struct Watch {
    hub: Hub,
    job: Uuid,
    /// Notified when the job may have new events.
    pub notify: Arc<Notify>,
}

impl Hub {
    /// Follows `job` until the returned watch is dropped.
    pub fn watch(&self, job: Uuid) -> Watch {
        let mut jobs = self.0.lock().expect("hub lock");
        let entry = jobs.entry(job).or_insert_with(|| (0, Arc::new(Notify::new())));
        entry.0 += 1;
        Watch {
            hub: self.clone(),
            job,
            notify: entry.1.clone(),
        }
    }

    /// Polls until `cancel`, waking the streams of jobs with new events.
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
                    for job in jobs {
                        if let Some((_, n)) = watched.get(&job) {
                            n.notify_waiters();
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
