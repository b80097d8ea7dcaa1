//! The pull loop of one worker process for one tier.
//!
//! Every worker of a tier pulls from the same durable consumer, and pulls
//! only as many messages as it has free slots, so adding a process adds
//! capacity and a busy worker never hoards messages another could run.
//! A message is acked only after its result was stored by JetStream; the
//! result's `Nats-Msg-Id` is the attempt id, so a redelivered task whose
//! result was already published produces no second result.

use crate::error::{Error, Result};
use crate::providers::{ModelProvider, Provider};
use crate::retry::RetryPolicy;
use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use upshift_shared::Tier;
use upshift_shared::config::{Config, ModelConfig};
use upshift_shared::cost::{call_cost, estimate_tokens};
use upshift_shared::messages::{AttemptOutcome, MESSAGE_VERSION, ResultMessage, TaskMessage};
use upshift_shared::subjects::Subjects;

/// Everything one attempt needs.
struct Ctx {
    js: jetstream::Context,
    subjects: Subjects,
    provider: Provider,
    model: ModelConfig,
    tier: Tier,
    worker_id: String,
    progress: Duration,
    /// The connection, whose server tells its `max_payload` (known once
    /// connected: the connection is made in the background).
    client: async_nats::Client,
    /// How model calls are retried.
    retry: RetryPolicy,
    /// How long after the task was received a result's publish is still
    /// retried before the attempt is handed back: the attempt's deadline
    /// (after it the orchestrator has decided the attempt as timed out and
    /// would ignore the result anyway).
    publish_patience: Duration,
    /// Test builds only (feature `fault-injection`): abort the process on
    /// inputs containing this.
    #[cfg(feature = "fault-injection")]
    crash_on: Option<String>,
}

/// Pulls and runs attempts for `tier` until `stop_pulling`; in-flight
/// attempts then get until `hard_stop` to finish, after which they are nak'ed.
pub async fn run(
    cfg: &Config,
    tier: Tier,
    stop_pulling: CancellationToken,
    hard_stop: CancellationToken,
) -> Result<()> {
    let model = cfg.tier_model(tier).clone();
    // Loading a model reads and maps hundreds of MB: off the async threads,
    // so the metrics endpoint and signal handling stay responsive meanwhile.
    let (dir, spec) = (cfg.worker.model_dir(), model.clone());
    let provider = tokio::task::spawn_blocking(move || Provider::from_config(&spec, &dir))
        .await
        .map_err(|e| Error::ProviderConfig {
            model: model.name.clone(),
            reason: format!("loading the model failed: {e}"),
        })??;
    let concurrency = provider
        .max_concurrency()
        .map_or(cfg.worker.concurrency, |m| m.min(cfg.worker.concurrency));
    let client = upshift_runtime::connect_nats(&cfg.nats).await.map_err(Error::nats)?;
    let js = jetstream::new(client.clone());
    let subjects = cfg.nats.subjects();
    let consumer = tier_consumer(&js, &subjects, tier, &stop_pulling).await?;
    let Some(consumer) = consumer else { return Ok(()) };
    let worker_id = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
        std::process::id()
    );
    tracing::info!(%tier, model = %model.name, provider = provider.kind(), %worker_id, "worker pulling");
    let ctx = Arc::new(Ctx {
        js,
        subjects,
        provider,
        model,
        tier,
        worker_id,
        progress: cfg.worker.progress_interval,
        client,
        retry: RetryPolicy::from_config(&cfg.worker, cfg.orchestrator.attempt_deadline),
        publish_patience: cfg.orchestrator.attempt_deadline,
        #[cfg(feature = "fault-injection")]
        crash_on: std::env::var("UPSHIFT_FAULT_CRASH_ON").ok().filter(|s| !s.is_empty()),
    });
    let slots = Arc::new(Semaphore::new(concurrency));
    let tracker = TaskTracker::new();
    while !stop_pulling.is_cancelled() {
        let permit = tokio::select! {
            _ = stop_pulling.cancelled() => break,
            p = slots.clone().acquire_owned() => p.expect("semaphore never closes"),
        };
        let want = slots.available_permits() + 1;
        let batch = consumer
            .batch()
            .max_messages(want)
            .expires(Duration::from_millis(500))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "pull failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut permit = Some(permit);
        while let Some(msg) = batch.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "pull error");
                    break;
                }
            };
            let p = match permit.take() {
                Some(p) => p,
                None => slots.clone().acquire_owned().await.expect("semaphore never closes"),
            };
            let (ctx, hard) = (ctx.clone(), hard_stop.clone());
            tracker.spawn(async move {
                let in_flight = metrics::gauge!("upshift_worker_in_flight", "tier" => ctx.tier.as_str());
                in_flight.increment(1.0);
                handle(&ctx, msg, hard).await;
                in_flight.decrement(1.0);
                drop(p);
            });
        }
    }
    tracker.close();
    tracker.wait().await;
    tracing::info!("worker drained");
    Ok(())
}

/// Binds the tier's durable consumer, waiting for the orchestrator to
/// create it (with the stream): a worker never creates one, so its NATS
/// user needs no right to (see `upshift_runtime::tier_consumer_config`).
/// `None` when cancelled while waiting.
async fn tier_consumer(
    js: &jetstream::Context,
    subjects: &Subjects,
    tier: Tier,
    cancel: &CancellationToken,
) -> Result<Option<consumer::PullConsumer>> {
    let (name, stream) = (subjects.worker_consumer(tier), subjects.tasks_stream());
    loop {
        match js.get_consumer_from_stream(&name, &stream).await {
            Ok(c) => return Ok(Some(c)),
            Err(e) => {
                tracing::info!(error = %e, %stream, consumer = %name, "waiting for the orchestrator to create the consumer");
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Sets an unreadable message aside on `<prefix>.dead` with its reason,
/// then terminates it so it is never redelivered.
async fn set_aside(ctx: &Ctx, msg: &jetstream::Message, reason: String) {
    tracing::error!(%reason, subject = %msg.subject, "setting an unreadable task message aside");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Upshift-Reason", reason.as_str());
    headers.insert("Upshift-Subject", msg.subject.as_str());
    let sent = match ctx
        .js
        .publish_with_headers(ctx.subjects.dead(), headers, msg.payload.clone())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    if sent {
        let _ = msg.ack_with(AckKind::Term).await;
    } else {
        // Keep it: redelivery (and at worst max_deliver) beats losing it.
        let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
    }
}

async fn handle(ctx: &Ctx, msg: jetstream::Message, hard_stop: CancellationToken) {
    let task = match TaskMessage::decode(&msg.payload) {
        Ok(t) if t.tier == ctx.tier => t,
        Ok(t) => {
            return set_aside(
                ctx,
                &msg,
                format!("task for tier {} on the {} consumer", t.tier, ctx.tier),
            )
            .await;
        }
        Err(e) => return set_aside(ctx, &msg, e.to_string()).await,
    };
    #[cfg(feature = "fault-injection")]
    if let Some(marker) = &ctx.crash_on
        && task.input.contains(marker.as_str())
    {
        // Fault injection for the dead-letter test (UPSHIFT_FAULT_CRASH_ON).
        tracing::error!(attempt = %task.attempt_id, "fault injection: crashing on this input");
        std::process::abort();
    }
    let span = tracing::info_span!(
        "attempt.run",
        job = %task.job_id,
        step = %task.step_id,
        attempt = %task.attempt_id,
        tier = %ctx.tier,
        task = %task.task,
        model = %ctx.model.name,
        provider = ctx.provider.kind(),
        outcome = tracing::field::Empty,
        tokens_in = tracing::field::Empty,
        tokens_out = tracing::field::Empty,
        cost_usd = tracing::field::Empty,
        confidence = tracing::field::Empty,
    );
    upshift_runtime::set_parent_from_headers(&span, msg.headers.as_ref());
    run_attempt(ctx, msg, task, hard_stop).instrument(span).await;
}

/// Calls the model (retrying retryable errors within the retry policy), publishes the result, acks.
async fn run_attempt(ctx: &Ctx, msg: jetstream::Message, task: TaskMessage, hard_stop: CancellationToken) {
    let started = Instant::now();
    let received_at = chrono::Utc::now();
    let model_span = tracing::info_span!("model.call", model = %ctx.model.name, provider = ctx.provider.kind());
    let call = ctx
        .retry
        .run(|| ctx.provider.complete(&task).instrument(model_span.clone()));
    let outcome = tokio::select! {
        r = keeping(&msg, ctx.progress, call) => r,
        _ = hard_stop.cancelled() => {
            tracing::warn!(attempt = %task.attempt_id, "shutting down mid-call; handing the attempt back");
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            return;
        }
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    let tier = ctx.tier.as_str();
    metrics::histogram!("upshift_worker_model_call_seconds", "tier" => tier, "model" => ctx.model.name.clone())
        .record(started.elapsed().as_secs_f64());
    let outcome_label = if outcome.is_ok() { "answered" } else { "failed" };
    metrics::counter!("upshift_worker_calls_total", "tier" => tier, "model" => ctx.model.name.clone(), "outcome" => outcome_label)
        .increment(1);
    let span = tracing::Span::current();
    span.record("outcome", outcome_label);
    let outcome = match outcome {
        Ok(c) => {
            let tokens_in = c.tokens_in.unwrap_or_else(|| prompt_tokens(&task));
            let tokens_out = c.tokens_out.unwrap_or_else(|| estimate_tokens(&c.output));
            let cost = call_cost(tokens_in, tokens_out, ctx.model.usd_per_m_in, ctx.model.usd_per_m_out);
            span.record("tokens_in", tokens_in);
            span.record("tokens_out", tokens_out);
            span.record("cost_usd", cost);
            if let Some(c) = c.confidence {
                span.record("confidence", c);
            }
            AttemptOutcome::Answered {
                cost_usd: cost,
                output: c.output,
                tokens_in,
                tokens_out,
                confidence: c.confidence,
                label_correct: c.label_correct,
            }
        }
        Err(e) => AttemptOutcome::Failed {
            class: e.class().as_str().into(),
            message: e.to_string(),
        },
    };
    let mut result = ResultMessage {
        version: MESSAGE_VERSION,
        attempt_id: task.attempt_id,
        attempt_token: task.attempt_token,
        job_id: task.job_id,
        step_id: task.step_id,
        tier: ctx.tier,
        worker_id: ctx.worker_id.clone(),
        provider: ctx.provider.kind().into(),
        model: ctx.model.name.clone(),
        latency_ms,
        received_at: Some(received_at),
        sent_at: Some(chrono::Utc::now()),
        outcome,
    };
    if let Some(why) = result.make_storable() {
        // Postgres could never store it; the router escalates a failure.
        tracing::warn!(attempt = %task.attempt_id, %why, "the model's answer cannot be stored; reporting a failure");
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", task.attempt_id.to_string().as_str());
    upshift_runtime::inject(&span, &mut headers);
    let mut body = serde_json::to_vec(&result).expect("results serialise");
    // The largest message the server carries (0 until its INFO arrived):
    // a result above it could never be published, and a redelivery would
    // pay the model again.
    let max_payload = ctx.client.server_info().max_payload;
    if let Some(failed) = too_large(&result, body.len(), max_payload) {
        // Decided once as `too_large` (the router escalates it), never re-run.
        tracing::warn!(attempt = %task.attempt_id, bytes = body.len(), max_payload, "the result is larger than NATS carries; reporting too_large");
        body = serde_json::to_vec(&failed).expect("results serialise");
    }
    // Retried until the attempt's deadline, counted from when the task was
    // received: after it the orchestrator has decided the attempt anyway.
    let until = started + ctx.publish_patience;
    match publish_result(ctx, &msg, (headers, body), until, &hard_stop).await {
        Ok(()) => {
            if let Err(e) = msg.ack().await {
                tracing::warn!(attempt = %task.attempt_id, error = %e, "ack failed; a redelivery will be deduplicated");
            }
        }
        Err(e) => {
            tracing::warn!(attempt = %task.attempt_id, error = %e, "publishing the result failed; handing the attempt back");
            let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
    }
}

/// Publishes a result, retrying with back-off until `until` while the task
/// stays claimed (progress acks every `ctx.progress`, during a try too). A publish fails
/// while a NATS cluster elects a stream leader after a node died; handing
/// the task back at once would run the model again for each failed try and
/// exhaust `max_deliver` within seconds, so a node kill would end in a dead
/// letter and an escalation instead of a short wait. Retrying is safe: the
/// result's `Nats-Msg-Id` (the attempt id) makes a second copy a duplicate
/// the stream drops.
async fn publish_result(
    ctx: &Ctx,
    msg: &jetstream::Message,
    (headers, body): (async_nats::HeaderMap, Vec<u8>),
    until: Instant,
    hard_stop: &CancellationToken,
) -> Result<(), String> {
    let body = bytes::Bytes::from(body);
    let mut delays = backon::BackoffBuilder::build(
        backon::ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .without_max_times(),
    );
    loop {
        let publish = async {
            match ctx
                .js
                .publish_with_headers(ctx.subjects.results(), headers.clone(), body.clone())
                .await
            {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        // A try can wait seconds for the stream's ack: keep the task meanwhile.
        let last = match keeping(msg, ctx.progress, publish).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let wait = delays.next().unwrap_or(Duration::from_secs(2));
        if Instant::now() + wait > until || hard_stop.is_cancelled() {
            return Err(last);
        }
        tracing::debug!(error = %last, ?wait, "publishing the result failed; retrying");
        let _ = msg.ack_with(AckKind::Progress).await;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = hard_stop.cancelled() => return Err(last),
        }
    }
}

/// Awaits `work` while keeping `msg` claimed: an in-progress ack every
/// `every`, so a long model call or a slow publish is never redelivered.
async fn keeping<T>(msg: &jetstream::Message, every: Duration, work: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = ticker.tick() => { let _ = msg.ack_with(AckKind::Progress).await; }
        }
    }
}

/// Headroom for the headers a result travels with (message id, trace context).
const HEADER_ROOM: usize = 1024;

/// When `result` (serialised to `bytes`) cannot travel in one message of
/// at most `max_payload`: the same result as a `too_large` failure.
fn too_large(result: &ResultMessage, bytes: usize, max_payload: usize) -> Option<ResultMessage> {
    if max_payload == 0 || bytes + HEADER_ROOM <= max_payload {
        return None;
    }
    let mut failed = result.clone();
    failed.outcome = AttemptOutcome::Failed {
        class: upshift_shared::ErrorClass::TooLarge.as_str().into(),
        message: format!("the result is {bytes} bytes, more than the {max_payload} bytes NATS carries"),
    };
    Some(failed)
}

/// Estimated prompt tokens: the input plus any context handed to the model.
fn prompt_tokens(task: &TaskMessage) -> u32 {
    let ctx: u32 = task.context.iter().map(|c| estimate_tokens(&c.output)).sum();
    estimate_tokens(&task.input).saturating_add(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use upshift_shared::messages::MESSAGE_VERSION;

    #[test]
    fn a_result_past_max_payload_becomes_a_too_large_failure() {
        let r = ResultMessage {
            version: MESSAGE_VERSION,
            attempt_id: uuid::Uuid::nil(),
            attempt_token: uuid::Uuid::nil(),
            job_id: uuid::Uuid::nil(),
            step_id: uuid::Uuid::nil(),
            tier: Tier::Small,
            worker_id: "w".into(),
            provider: "p".into(),
            model: "m".into(),
            latency_ms: 1,
            received_at: None,
            sent_at: None,
            outcome: AttemptOutcome::Answered {
                output: "x".repeat(2000),
                tokens_in: 1,
                tokens_out: 1,
                cost_usd: 0.0,
                confidence: None,
                label_correct: None,
            },
        };
        assert!(too_large(&r, 2100, 1 << 20).is_none());
        assert!(
            too_large(&r, 2100, 0).is_none(),
            "0: the server's limit is not known yet"
        );
        let failed = too_large(&r, 2100, 2048).unwrap();
        assert!(
            matches!(&failed.outcome, AttemptOutcome::Failed { class, message } if class == "too_large" && message.contains("2048")),
            "{failed:?}"
        );
        assert!(serde_json::to_vec(&failed).unwrap().len() < 2048);
    }
}
