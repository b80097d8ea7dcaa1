//! Submitting a job, in the one order that is right: validate and plan it
//! (a 4xx writes nothing), admit it under the tenant's quotas (its rate was
//! taken before the body was read), give it the default budget, hand it to
//! the router as one call (`router::submit`: what its kind needs first —
//! a rag job's collection and tier zero's search — its first decisions,
//! written atomically), and publish its first attempts. Every front door
//! (`POST /v1/jobs`, the OpenAI-compatible `POST /v1/chat/completions`)
//! submits through here.

use super::{ApiError, AppState};
use crate::request::JobRequest;
use tracing::Instrument;
use uuid::Uuid;

/// Plans, admits, writes and publishes `req` for `tenant`; the job's id.
pub(crate) async fn submit_job(st: &AppState, tenant: &str, mut req: JobRequest) -> Result<Uuid, ApiError> {
    let span = tracing::info_span!("job.submit", job = tracing::field::Empty, %tenant, kind = req.kind.as_str());
    let steps = crate::router::Kind::plan(&req, &st.cfg)?;
    st.quotas.admit(tenant)?;
    if req.budget_usd.is_none() && st.cfg.limits.default_budget_usd > 0.0 {
        req.budget_usd = Some(st.cfg.limits.default_budget_usd);
    }
    let traceparent = upshift_runtime::traceparent(&span);
    let planned = steps.len();
    let job = crate::router::Submission {
        tenant,
        req: &req,
        steps: &steps,
        traceparent: traceparent.as_deref(),
    };
    let (id, attempts) = crate::router::submit(&st.store, &st.retriever, &st.cfg, job)
        .instrument(span.clone())
        .await?;
    span.record("job", id.to_string());
    crate::outbox::publish(&st.store, &st.bus, &attempts)
        .instrument(span)
        .await;
    tracing::info!(job = %id, %tenant, steps = planned, "job accepted");
    metrics::counter!("upshift_jobs_submitted_total", "tenant" => tenant.to_string()).increment(1);
    Ok(id)
}
