//! NATS JetStream set-up and publishing of attempts.
//!
//! Streams are created (or updated) idempotently at start-up, so every
//! replica can run the same code. Attempts are published with
//! `Nats-Msg-Id = attempt id`: a re-publish inside the duplicate window is
//! dropped by the server, which makes the outbox sweeper safe to repeat.

use crate::error::{Error, Result};
use crate::store::Outgoing;
use async_nats::jetstream::{self, consumer, stream};
use std::time::Duration;
use tracing::Instrument;
use upshift_runtime as telemetry;
use upshift_shared::config::NatsConfig;
use upshift_shared::subjects::Subjects;

/// How long a message that could not be handled waits before its next
/// delivery: 1 s, doubling with each delivery made, at most 30 s.
pub fn redelivery_wait(msg: &jetstream::Message) -> (u64, Duration) {
    let delivered = msg.info().map_or(1, |i| i.delivered.max(1) as u64);
    (delivered, Duration::from_secs((1u64 << (delivered - 1).min(5)).min(30)))
}

/// A JetStream context plus the subject names.
#[derive(Clone)]
pub struct Bus {
    /// The underlying client (for readiness checks).
    pub client: async_nats::Client,
    /// JetStream context.
    pub js: jetstream::Context,
    /// Subject names.
    pub subjects: Subjects,
}

impl Bus {
    /// Connects (retrying in the background on loss) and ensures the streams.
    pub async fn connect(cfg: &NatsConfig) -> Result<Bus> {
        let client = upshift_runtime::connect_nats(cfg).await.map_err(Error::nats)?;
        let js = jetstream::new(client.clone());
        let subjects = cfg.subjects();
        let bus = Bus { client, js, subjects };
        bus.ensure_streams(cfg).await?;
        Ok(bus)
    }

    async fn ensure_streams(&self, cfg: &NatsConfig) -> Result<()> {
        let s = &self.subjects;
        for (name, subjects) in [
            (s.tasks_stream(), vec![s.tasks_wildcard()]),
            (s.results_stream(), vec![s.results()]),
            // Dead letters: JetStream's max-deliveries advisories for the task
            // stream, kept durably so no replica can miss one, and messages
            // set aside as unreadable.
            (s.dead_stream(), vec![s.max_deliveries_advisory(), s.dead()]),
        ] {
            let config = stream::Config {
                name: name.clone(),
                subjects,
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: cfg.duplicate_window,
                num_replicas: cfg.replicas,
                ..Default::default()
            };
            match self.js.get_stream(&name).await {
                Ok(_) => {
                    self.js.update_stream(&config).await.map_err(Error::nats)?;
                }
                Err(_) => {
                    self.js.get_or_create_stream(config).await.map_err(Error::nats)?;
                }
            }
        }
        // The tier consumers too: workers only bind to theirs (see
        // `upshift_runtime::tier_consumer_config`).
        let tasks = self.js.get_stream(s.tasks_stream()).await.map_err(Error::nats)?;
        for &tier in upshift_shared::Tier::ALL {
            let config = upshift_runtime::tier_consumer_config(cfg, tier);
            let name = s.worker_consumer(tier);
            match tasks.consumer_info(&name).await {
                Ok(_) => {
                    tasks.update_consumer(config).await.map_err(Error::nats)?;
                }
                Err(_) => {
                    tasks.get_or_create_consumer(&name, config).await.map_err(Error::nats)?;
                }
            }
        }
        Ok(())
    }

    /// The durable pull consumer shared by all orchestrator replicas on the
    /// results stream.
    pub async fn results_consumer(&self) -> Result<consumer::PullConsumer> {
        self.shared_consumer(self.subjects.results_stream()).await
    }

    /// The durable pull consumer shared by all orchestrator replicas on the
    /// dead-letter stream.
    pub async fn dead_consumer(&self) -> Result<consumer::PullConsumer> {
        self.shared_consumer(self.subjects.dead_stream()).await
    }

    /// Removes a task message from the task stream (after it was dead-lettered).
    pub async fn delete_task(&self, seq: u64) -> Result<()> {
        let stream = self
            .js
            .get_stream(self.subjects.tasks_stream())
            .await
            .map_err(Error::nats)?;
        stream.delete_message(seq).await.map_err(Error::nats)?;
        Ok(())
    }

    /// The raw task message at `seq`: `None` when it is no longer stored,
    /// an error when NATS could not say (the caller retries).
    pub async fn task_at(&self, seq: u64) -> Result<Option<bytes::Bytes>> {
        use async_nats::jetstream::stream::RawMessageErrorKind;
        let stream = self
            .js
            .get_stream(self.subjects.tasks_stream())
            .await
            .map_err(Error::nats)?;
        match stream.get_raw_message(seq).await {
            Ok(m) => Ok(Some(m.payload)),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(Error::nats(e)),
        }
    }

    async fn shared_consumer(&self, stream: String) -> Result<consumer::PullConsumer> {
        let stream = self.js.get_stream(stream).await.map_err(Error::nats)?;
        stream
            .get_or_create_consumer(
                self.subjects.orchestrator_consumer(),
                consumer::pull::Config {
                    durable_name: Some(self.subjects.orchestrator_consumer().to_string()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 1024,
                    ..Default::default()
                },
            )
            .await
            .map_err(Error::nats)
    }

    /// Publishes attempts and waits for every server ack. Returns the ids the
    /// server acknowledged (duplicates included: they are stored already).
    ///
    /// Each publish is an `attempt.publish` span in the job's trace, and its
    /// context travels to the worker in the `traceparent` header.
    pub async fn publish_tasks(&self, tasks: &[Outgoing]) -> Vec<uuid::Uuid> {
        let mut pending = Vec::with_capacity(tasks.len());
        for Outgoing { msg: t, traceparent } in tasks {
            let span = tracing::info_span!(
                "attempt.publish",
                job = %t.job_id,
                step = %t.step_id,
                attempt = %t.attempt_id,
                tier = %t.tier,
                task = %t.task,
            );
            telemetry::set_parent_from_traceparent(&span, traceparent.as_deref());
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", t.attempt_id.to_string().as_str());
            telemetry::inject(&span, &mut headers);
            let body = serde_json::to_vec(t).expect("task messages serialise");
            match self
                .js
                .publish_with_headers(self.subjects.tasks(t.tier), headers, body.into())
                .instrument(span)
                .await
            {
                Ok(ack) => pending.push((t.attempt_id, ack)),
                Err(e) => tracing::warn!(attempt = %t.attempt_id, error = %e, "publish failed; the sweeper retries"),
            }
        }
        let mut done = Vec::with_capacity(pending.len());
        for (id, ack) in pending {
            match ack.await {
                Ok(_) => done.push(id),
                Err(e) => tracing::warn!(attempt = %id, error = %e, "publish not acknowledged; the sweeper retries"),
            }
        }
        done
    }
}
