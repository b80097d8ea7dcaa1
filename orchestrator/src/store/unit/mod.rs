//! A unit of work: the rows a batch of decisions (or of new jobs) touches,
//! changed in memory and written back with one statement per table, in one
//! transaction.
//!
//! Deciding many results in one transaction is what makes the router cheap:
//! a batch of N results costs about ten statements and one commit, not ten
//! statements and a commit each. Everything the decisions read is loaded
//! once under the jobs' row locks ([`Unit::load`]); every change is applied
//! to the loaded rows and recorded as a pending write; [`Unit::flush`]
//! writes them in an order that keeps foreign keys and the route's event
//! order: jobs, steps, attempts, attempt outcomes, step changes, route
//! events, job changes. Each `UPDATE … FROM jsonb_to_recordset` also
//! names its rows by `id = ANY(ids)`: the planner cannot see how many rows
//! the JSON holds (it guesses 100) and would otherwise hash-join against a
//! sequential scan of the whole table while it is small.

use crate::error::Result;

mod flush;
mod rows;

pub(crate) use flush::flush_all;

use super::{Outgoing, TaskSource, reason_texts};
pub(crate) use rows::{AttemptRow, AttemptUpdate, JobRow, NewJob, StepRow};
use rows::{EventRow, NewAttempt, SetAsideRow};
use std::collections::HashMap;
use upshift_shared::{JobKind, JobStatus, ReasonCode, RouteEventKind, StepState, Tier};
use uuid::Uuid;

/// A route event to record.
pub(crate) struct Event<'a> {
    /// The job.
    pub job: Uuid,
    /// The step, if the event is about one.
    pub step: Option<Uuid>,
    /// The attempt, if the event is about one.
    pub attempt: Option<Uuid>,
    /// What it records.
    pub kind: RouteEventKind,
    /// Tier before (none for tier zero).
    pub from: Option<Tier>,
    /// Tier after.
    pub to: Option<Tier>,
    /// Reason codes.
    pub reasons: &'a [ReasonCode],
    /// Findings and other detail.
    pub detail: serde_json::Value,
}

/// The kinds whose stored request the router reads.
fn reading_kinds() -> Vec<&'static str> {
    JobKind::ALL
        .iter()
        .filter(|k| k.reads_stored_request())
        .map(|k| k.as_str())
        .collect()
}

/// Where a step row stands against the database.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowState {
    Kept,
    Changed,
    New,
}

/// Rows loaded under lock, and the writes pending on them.
#[derive(Default)]
pub(crate) struct Unit {
    jobs: HashMap<Uuid, JobRow>,
    /// Every step of the loaded (or new) jobs, by job then index.
    steps: Vec<StepRow>,
    step_at: HashMap<Uuid, usize>,
    /// Per step: loaded and unchanged, changed (its final state is written
    /// once), or created by this unit (inserted).
    row: Vec<RowState>,
    attempts: HashMap<Uuid, AttemptRow>,
    new_jobs: Vec<NewJob>,
    new_attempts: Vec<NewAttempt>,
    attempt_updates: Vec<AttemptUpdate>,
    events: Vec<EventRow>,
    set_aside: Vec<SetAsideRow>,
    /// Task messages of the new attempts, to publish after commit.
    pub outgoing: Vec<Outgoing>,
}

impl Unit {
    /// Locks the jobs of `attempts` (in id order, so concurrent units never
    /// deadlock) and loads them, all their steps and these attempts.
    pub async fn load(tx: &mut super::Conn, attempts: &[Uuid]) -> Result<Unit> {
        let tx = tx.pg();
        let jobs: Vec<JobRow> = sqlx::query_as(
            "SELECT id, tenant, kind, CASE WHEN kind = ANY($2) THEN input END AS input, blast_radius, budget_usd,
                    cost_usd, traceparent
             FROM jobs WHERE id IN (SELECT job_id FROM attempts WHERE id = ANY($1)) ORDER BY id FOR UPDATE",
        )
        .bind(attempts)
        .bind(reading_kinds())
        .fetch_all(&mut *tx)
        .await?;
        let job_ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
        let steps: Vec<StepRow> = sqlx::query_as(
            "SELECT s.id, s.job_id, s.idx, s.name, s.task_type, s.task_class, s.input, s.depends_on, s.verifiers,
                    s.output_schema, s.labels, s.ambiguity, s.ambiguity_source, s.state, s.current_tier, s.max_tokens, s.stop, s.output,
                    s.open_findings, f.first_in, f.first_out, f.first_tier
             FROM steps s LEFT JOIN LATERAL (
                 SELECT a.tokens_in AS first_in, a.tokens_out AS first_out, a.tier AS first_tier FROM attempts a
                 WHERE a.step_id = s.id AND a.tokens_in IS NOT NULL ORDER BY a.created_at LIMIT 1) f ON true
             WHERE s.job_id = ANY($1) ORDER BY s.job_id, s.idx",
        )
        .bind(&job_ids)
        .fetch_all(&mut *tx)
        .await?;
        let loaded: Vec<AttemptRow> = sqlx::query_as(
            "SELECT id, job_id, step_id, status, tier, model, token, (output IS NOT NULL OR error IS NOT NULL) AS has_result,
                    deadline < now() AS overdue
             FROM attempts WHERE id = ANY($1)",
        )
        .bind(attempts)
        .fetch_all(&mut *tx)
        .await?;
        let mut unit = Unit {
            jobs: jobs.into_iter().map(|j| (j.id, j)).collect(),
            attempts: loaded.into_iter().map(|a| (a.id, a)).collect(),
            ..Unit::default()
        };
        for s in steps {
            unit.add_step(s, false);
        }
        Ok(unit)
    }

    /// Adds a step row (`new`: created by this unit).
    fn add_step(&mut self, s: StepRow, new: bool) {
        self.step_at.insert(s.id, self.steps.len());
        self.steps.push(s);
        self.row.push(if new { RowState::New } else { RowState::Kept });
    }

    /// The tokens (in, out) of step `step`'s latest accepted attempt, read
    /// on the unit's transaction (what re-running it a tier up would cost).
    pub async fn accepted_tokens(tx: &mut super::Conn, step: Uuid) -> Result<Option<(i32, i32)>> {
        let tx = tx.pg();
        Ok(sqlx::query_as(
            "SELECT tokens_in, tokens_out FROM attempts WHERE step_id = $1 AND outcome = 'accepted'
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(step)
        .fetch_optional(&mut *tx)
        .await?)
    }

    /// Adds a new job with its steps (all `pending`).
    pub fn create(&mut self, job: NewJob, steps: Vec<StepRow>) {
        let row = JobRow {
            id: job.id,
            tenant: job.tenant.clone(),
            kind: job.kind,
            input: None,
            blast_radius: job.blast_radius,
            budget_usd: job.budget_usd,
            cost_usd: 0.0,
            traceparent: job.traceparent.clone(),
            added_cost: 0.0,
            finish: None,
        };
        self.jobs.insert(job.id, row);
        self.new_jobs.push(job);
        for s in steps {
            self.add_step(s, true);
        }
    }

    /// The jobs this unit finishes: (tenant, status).
    pub fn finished(&self) -> Vec<(String, JobStatus)> {
        self.jobs
            .values()
            .filter_map(|j| j.finish.as_ref().map(|f| (j.tenant.clone(), f.0)))
            .collect()
    }

    /// The loaded attempt `id`, if it exists.
    pub fn attempt(&self, id: Uuid) -> Option<&AttemptRow> {
        self.attempts.get(&id)
    }

    /// Marks a loaded attempt as decided in memory (a duplicate in the same
    /// batch is then seen as decided) and records its update.
    pub fn update_attempt(&mut self, step_id: Uuid, u: AttemptUpdate) {
        if let Some(a) = self.attempts.get_mut(&u.id) {
            a.status = u.status;
            a.has_result = a.has_result || u.output.is_some() || u.error.is_some();
        }
        if let (Some(tin), Some(tout), Some(&i)) = (u.tokens_in, u.tokens_out, self.step_at.get(&step_id)) {
            let s = &mut self.steps[i];
            if s.first_in.is_none() {
                let tier = self.attempts.get(&u.id).map(|a| a.tier);
                (s.first_in, s.first_out, s.first_tier) = (Some(tin), Some(tout), tier);
            }
        }
        self.attempt_updates.push(u);
    }

    /// The job `id`.
    pub fn job(&self, id: Uuid) -> &JobRow {
        &self.jobs[&id]
    }

    /// The job `id`, to change.
    pub fn job_mut(&mut self, id: Uuid) -> &mut JobRow {
        self.jobs.get_mut(&id).expect("the job is loaded")
    }

    /// The step `id`.
    pub fn step(&self, id: Uuid) -> &StepRow {
        &self.steps[self.step_at[&id]]
    }

    /// The step `id`, to change (it is written back at flush).
    pub fn step_mut(&mut self, id: Uuid) -> &mut StepRow {
        let i = self.step_at[&id];
        if self.row[i] == RowState::Kept {
            self.row[i] = RowState::Changed;
        }
        &mut self.steps[i]
    }

    /// The steps of job `id`, in order.
    pub fn steps_of(&self, job: Uuid) -> impl Iterator<Item = &StepRow> {
        self.steps.iter().filter(move |s| s.job_id == job)
    }

    /// Bytes of text a task message of `step_id` hands the model: its
    /// input, the outputs of the steps it depends on, its schema and labels.
    pub fn prompt_bytes(&self, step_id: Uuid) -> usize {
        let step = self.step(step_id);
        let context: usize = self
            .steps_of(step.job_id)
            .filter(|d| step.depends_on.contains(&d.idx))
            .map(|d| d.name.len() + d.output.as_ref().map_or(0, String::len))
            .sum();
        let schema = step.output_schema.as_ref().map_or(0, |s| s.to_string().len());
        let labels: usize = step.labels.iter().map(|l| l.len() + 1).sum();
        step.input.len() + context + schema + labels
    }

    /// Records a result about `attempt` that cannot be decided, with why,
    /// in `dead_letters` (once per attempt), written with the unit.
    pub fn set_aside(&mut self, attempt: Uuid, reason: String, payload: String) {
        self.set_aside.push(SetAsideRow {
            attempt_id: attempt,
            reason,
            payload: upshift_shared::messages::without_nul(&payload),
        });
    }

    /// Appends a route event.
    pub fn event(&mut self, e: Event<'_>) {
        self.events.push(EventRow {
            job_id: e.job,
            step_id: e.step,
            attempt_id: e.attempt,
            event: e.kind.as_str(),
            from_tier: e.from.map(Tier::as_str),
            to_tier: e.to.map(Tier::as_str),
            reasons: reason_texts(e.reasons),
            detail: e.detail,
        });
    }

    /// Adds a `dispatched` attempt of `step_id` on `tier` (run by `model`,
    /// due in `deadline_secs`) and marks the step running on that tier.
    /// Returns the attempt's id.
    pub fn add_attempt(&mut self, step_id: Uuid, tier: Tier, model: &str, deadline_secs: f64) -> Uuid {
        let id = Uuid::now_v7();
        // v4: random from the OS's generator, unrelated to any id.
        let token = Uuid::new_v4();
        let step = self.step_mut(step_id);
        step.state = StepState::Running;
        step.current_tier = Some(tier);
        let job_id = step.job_id;
        self.new_attempts.push(NewAttempt {
            id,
            step_id,
            job_id,
            tier: tier.as_str(),
            model: model.to_string(),
            token,
            secs: deadline_secs,
        });
        id
    }

    /// Queues the task message of the new attempt `attempt` of `step_id` on
    /// `tier`, built from the unit's rows (the outputs of the steps it
    /// depends on are its context), to be published after commit.
    pub fn queue_task(&mut self, attempt: Uuid, step_id: Uuid, tier: Tier) {
        let step = self.step(step_id);
        let context = self
            .steps_of(step.job_id)
            .filter(|d| step.depends_on.contains(&d.idx))
            .map(|d| (d.name.clone(), d.output.clone()))
            .collect();
        let token = self
            .new_attempts
            .iter()
            .rev() // queued right after it was added: the last one
            .find(|a| a.id == attempt)
            .map(|a| a.token)
            .expect("a task is queued for an attempt this unit added");
        let source = TaskSource {
            attempt_id: attempt,
            token,
            job_id: step.job_id,
            step_id,
            tier,
            task_type: step.task_type,
            input: step.input.clone(),
            output_schema: step.output_schema.clone(),
            labels: step.labels.clone(),
            max_tokens: step.max_tokens,
            stop: step.stop.clone(),
            traceparent: self.job(step.job_id).traceparent.clone(),
        };
        let out = source.into_outgoing(context);
        self.outgoing.push(out);
    }
}
