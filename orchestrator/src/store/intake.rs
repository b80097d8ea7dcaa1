//! Group commit for new jobs: concurrent submissions are written together.
//!
//! Each `POST /v1/jobs` hands its admitted job (a unit holding the job, its
//! steps, first attempts and route events) to one intake task, which
//! writes whatever arrived while the last batch was being written with one
//! statement per table and one commit, then answers each submitter with its
//! job's task messages. Under load many jobs share a commit; at rest a job is
//! written at once. If a batch fails, its jobs are written one by one, so a
//! job that cannot be written fails only its own request.

use super::unit::Unit;
use super::{Outgoing, PgStore};
use crate::error::Result;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;
use upshift_shared::config::Config;

/// Most jobs written by one transaction.
const MAX_BATCH: usize = 256;

/// An admitted job waiting to be written, and where its task messages go.
pub struct Pending {
    pub(crate) unit: Unit,
    pub(crate) reply: oneshot::Sender<Result<Vec<Outgoing>>>,
}

/// The sending side of the intake, held by the store.
pub type Intake = mpsc::Sender<Pending>;

/// A new intake channel; its receiver goes to [`run_intake`].
pub fn channel() -> (mpsc::Sender<Pending>, mpsc::Receiver<Pending>) {
    mpsc::channel(1024)
}

/// Batches written at once: while one waits on Postgres the next fills up.
const WRITERS: usize = 2;

/// Writes jobs in batches until every sender is gone, then waits for the
/// last writes. `store` must not send to this intake itself (it writes
/// directly).
pub async fn run_intake(store: PgStore, cfg: Arc<Config>, mut rx: mpsc::Receiver<Pending>) {
    let writers = Arc::new(Semaphore::new(WRITERS));
    let tracker = TaskTracker::new();
    while let Some(first) = rx.recv().await {
        // Taken before the batch is collected: while every writer is busy,
        // new submissions gather into the next batch.
        let permit = writers.clone().acquire_owned().await.expect("never closed");
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let (store, cfg) = (store.clone(), cfg.clone());
        tracker.spawn(async move {
            write_batch(&store, &cfg, batch).await;
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Writes one batch and answers its submitters.
async fn write_batch(store: &PgStore, cfg: &Config, mut batch: Vec<Pending>) {
    match store.write_jobs(cfg, &batch).await {
        Ok(()) => {
            for p in batch {
                let _ = p.reply.send(Ok(p.unit.outgoing)); // the submitter may have gone
            }
        }
        Err(e) if batch.len() > 1 => {
            tracing::warn!(error = %e, count = batch.len(), "writing a batch of jobs failed; writing them one by one");
            for p in batch {
                let one = store.write_jobs(cfg, std::slice::from_ref(&p)).await;
                let _ = p.reply.send(one.map(|()| p.unit.outgoing));
            }
        }
        Err(e) => {
            // A batch of one: its submitter gets the error.
            if let Some(p) = batch.pop() {
                let _ = p.reply.send(Err(e));
            }
        }
    }
}
