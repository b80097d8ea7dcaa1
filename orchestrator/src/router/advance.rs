//! Moving a job on after a decision: recording route events, starting the
//! steps whose dependencies are done, finishing or failing the job.

use crate::error::Result;
use crate::rag::route::{Done, RagJob, prepare_start};
use crate::store::{parse_stored, reason_texts, start_step};
use sqlx::PgConnection;
use upshift_shared::config::Config;
use upshift_shared::policy::StepRisk;
use upshift_shared::verify::rag::Retrieval;
use upshift_shared::{BlastRadius, ReasonCode, Tier};
use uuid::Uuid;

/// Records one route event of an attempt.
#[allow(clippy::too_many_arguments)]
pub(super) async fn event(
    tx: &mut PgConnection,
    cfg: &Config,
    job_id: Uuid,
    step_id: Uuid,
    attempt: Uuid,
    kind: &str,
    from: Option<Tier>,
    to: Option<Tier>,
    reasons: &[ReasonCode],
    detail: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO route_events (job_id, step_id, attempt_id, event, from_tier, to_tier, reasons, policy_version, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(job_id)
    .bind(step_id)
    .bind(attempt)
    .bind(kind)
    .bind(from.map(Tier::as_str))
    .bind(to.map(Tier::as_str))
    .bind(reason_texts(reasons))
    .bind(&cfg.routing.policy_version)
    .bind(detail)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What the job would have cost with every step done once on the strong
/// tier: each step's first answered attempt's tokens at the strong model's
/// prices. Computed once, when the job finishes (a rag step reopened by its
/// critique still counts once: it would have run once on the strong tier).
async fn always_strong_cost(tx: &mut PgConnection, cfg: &Config, job_id: Uuid) -> Result<f64> {
    let strong = cfg.tier_model(Tier::Strong);
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(tin * $2 + tout * $3), 0) / 1e6 FROM (
             SELECT DISTINCT ON (a.step_id) a.tokens_in::float8 AS tin, a.tokens_out::float8 AS tout
             FROM steps s JOIN attempts a ON a.step_id = s.id
             WHERE s.job_id = $1 AND a.tokens_in IS NOT NULL ORDER BY a.step_id, a.created_at) AS first",
    )
    .bind(job_id)
    .bind(strong.usd_per_m_in)
    .bind(strong.usd_per_m_out)
    .fetch_one(&mut *tx)
    .await?)
}

/// A step's row as the job-advancing logic needs it.
#[derive(sqlx::FromRow)]
struct StepRow {
    id: Uuid,
    idx: i32,
    name: String,
    state: String,
    task_type: String,
    task_class: String,
    ambiguity: f64,
    depends_on: Vec<i32>,
    output: Option<String>,
    open_findings: serde_json::Value,
    current_tier: Option<String>,
}

/// Starts steps whose dependencies are now all accepted; finishes the job
/// when every step is accepted. Returns attempts to publish. For a rag job,
/// `retrieval` is what its retrieve step found (the settle already has it).
pub(super) async fn advance_job(
    tx: &mut PgConnection,
    cfg: &Config,
    job_id: Uuid,
    blast: BlastRadius,
    rag: Option<&RagJob>,
    retrieval: Option<&Retrieval>,
) -> Result<Vec<Uuid>> {
    let steps: Vec<StepRow> = sqlx::query_as(
        "SELECT id, idx, name, state, task_type, task_class, ambiguity, depends_on, output, open_findings, current_tier
         FROM steps WHERE job_id = $1 ORDER BY idx",
    )
    .bind(job_id)
    .fetch_all(&mut *tx)
    .await?;
    let accepted = |i: &i32| steps.iter().any(|s| s.idx == *i && s.state == "accepted");
    let synth_tier = steps
        .iter()
        .find(|s| s.name == crate::rag::SYNTHESISE)
        .and_then(|s| s.current_tier.as_deref())
        .map(parse_stored);
    let mut publish = Vec::new();
    for s in &steps {
        if s.state == "pending" && s.depends_on.iter().all(accepted) {
            let (ambiguity, parts, forced) = match rag {
                Some(job) if s.idx > 0 => {
                    prepare_start(tx, job, retrieval, s.id, &s.name, s.ambiguity, synth_tier).await?
                }
                _ => (s.ambiguity, serde_json::Value::Null, None),
            };
            let risk = StepRisk {
                task: parse_stored(&s.task_type),
                class: &s.task_class,
                ambiguity,
                blast,
            };
            publish.push(start_step(tx, cfg, job_id, s.id, risk, forced, parts).await?);
        }
    }
    if publish.is_empty() && steps.iter().all(|s| s.state == "accepted") {
        let outputs: serde_json::Map<String, serde_json::Value> = steps
            .iter()
            .map(|s| (s.name.clone(), s.output.clone().unwrap_or_default().into()))
            .collect();
        let open: Vec<serde_json::Value> = steps
            .iter()
            .flat_map(|s| s.open_findings.as_array().cloned().unwrap_or_default())
            .collect();
        let last = steps.last().and_then(|s| s.output.clone());
        let strong = always_strong_cost(tx, cfg, job_id).await?;
        let result = if rag.is_some() {
            let cost: f64 = sqlx::query_scalar("SELECT cost_usd FROM jobs WHERE id = $1")
                .bind(job_id)
                .fetch_one(&mut *tx)
                .await?;
            let done: Vec<Done<'_>> = steps
                .iter()
                .map(|s| Done {
                    name: &s.name,
                    output: s.output.as_deref().unwrap_or_default(),
                    open_findings: &s.open_findings,
                })
                .collect();
            crate::rag::route::result(&done, cost, strong)
        } else {
            serde_json::json!({ "answer": last, "outputs": outputs, "open_findings": open })
        };
        sqlx::query(
            "UPDATE jobs SET status = 'succeeded', result = $2, finished_at = now(), always_strong_cost_usd = $3
             WHERE id = $1",
        )
        .bind(job_id)
        .bind(result)
        .bind(strong)
        .execute(&mut *tx)
        .await?;
    }
    Ok(publish)
}

/// Fails the job and cancels its other unfinished steps.
pub(super) async fn fail_job(
    tx: &mut PgConnection,
    cfg: &Config,
    job_id: Uuid,
    failed: Uuid,
    reasons: &[ReasonCode],
) -> Result<()> {
    let name: String = sqlx::query_scalar("SELECT name FROM steps WHERE id = $1")
        .bind(failed)
        .fetch_one(&mut *tx)
        .await?;
    let result = serde_json::json!({ "error": { "step": name, "reasons": reason_texts(reasons) } });
    let strong = always_strong_cost(tx, cfg, job_id).await?;
    sqlx::query(
        "UPDATE jobs SET status = 'failed', result = $2, finished_at = now(), always_strong_cost_usd = $3 WHERE id = $1",
    )
    .bind(job_id)
    .bind(result)
    .bind(strong)
        .execute(&mut *tx)
        .await?;
    let cancelled: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE steps SET state = 'cancelled' WHERE job_id = $1 AND state IN ('pending', 'running') RETURNING id",
    )
    .bind(job_id)
    .fetch_all(&mut *tx)
    .await?;
    for step in cancelled {
        sqlx::query(
            "INSERT INTO route_events (job_id, step_id, event, reasons, policy_version)
             VALUES ($1, $2, 'cancel', $3, $4)",
        )
        .bind(job_id)
        .bind(step)
        .bind(reason_texts(&[ReasonCode::DependencyFailed]))
        .bind(&cfg.routing.policy_version)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
