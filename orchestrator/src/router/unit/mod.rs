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

use crate::store::{Outgoing, parse_stored, reason_texts};
pub(crate) use rows::{AttemptRow, AttemptUpdate, JobRow, NewJob, StepRow};
use rows::{EventRow, NewAttempt};
use sqlx::PgConnection;
use std::collections::HashMap;
use upshift_shared::config::Config;
use upshift_shared::messages::{ContextItem, MESSAGE_VERSION, TaskMessage};
use upshift_shared::policy::{StartDecision, StepRisk, start_tier};
use upshift_shared::{ReasonCode, Tier};
use uuid::Uuid;

/// The route event that leads to a dispatch (`start`, or `escalate` from an
/// attempt); it is written right before the `dispatch` event.
pub(crate) struct Lead<'a> {
    /// `start` or `escalate`.
    pub event: &'static str,
    /// The attempt escalated from, if any.
    pub attempt: Option<Uuid>,
    /// The tier escalated from, if any.
    pub from: Option<Tier>,
    /// Why.
    pub reasons: &'a [ReasonCode],
    /// The event's detail.
    pub detail: serde_json::Value,
}

/// A route event to record.
pub(crate) struct Event<'a> {
    /// The job.
    pub job: Uuid,
    /// The step, if the event is about one.
    pub step: Option<Uuid>,
    /// The attempt, if the event is about one.
    pub attempt: Option<Uuid>,
    /// `start`, `dispatch`, `accept`, `unresolved`, `escalate`, `fail`,
    /// `late_result` or `cancel`.
    pub kind: &'static str,
    /// Tier before (none for tier zero).
    pub from: Option<Tier>,
    /// Tier after.
    pub to: Option<Tier>,
    /// Reason codes.
    pub reasons: &'a [ReasonCode],
    /// Findings and other detail.
    pub detail: serde_json::Value,
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
    /// Task messages of the new attempts, to publish after commit.
    pub outgoing: Vec<Outgoing>,
}

impl Unit {
    /// Locks the jobs of `attempts` (in id order, so concurrent units never
    /// deadlock) and loads them, all their steps and these attempts.
    pub async fn load(tx: &mut PgConnection, attempts: &[Uuid]) -> Result<Unit> {
        let jobs: Vec<JobRow> = sqlx::query_as(
            "SELECT id, tenant, kind, CASE WHEN kind = 'rag' THEN input END AS input, blast_radius, budget_usd,
                    cost_usd, traceparent
             FROM jobs WHERE id IN (SELECT job_id FROM attempts WHERE id = ANY($1)) ORDER BY id FOR UPDATE",
        )
        .bind(attempts)
        .fetch_all(&mut *tx)
        .await?;
        let job_ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
        let steps: Vec<StepRow> = sqlx::query_as(
            "SELECT s.id, s.job_id, s.idx, s.name, s.task_type, s.task_class, s.input, s.depends_on, s.verifiers,
                    s.output_schema, s.labels, s.ambiguity, s.ambiguity_source, s.state, s.current_tier, s.output,
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
            "SELECT id, job_id, step_id, status, tier, (output IS NOT NULL OR error IS NOT NULL) AS has_result,
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

    /// Adds a new job with its steps (all `pending`).
    pub fn create(&mut self, job: NewJob, steps: Vec<StepRow>) {
        let row = JobRow {
            id: job.id,
            tenant: job.tenant.clone(),
            kind: job.kind.clone(),
            input: None,
            blast_radius: job.blast_radius.clone(),
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

    /// Takes in everything `other` created and recorded (a new job admitted
    /// on its own), so both are written by one flush.
    pub fn absorb(&mut self, other: Unit) {
        let Unit {
            jobs,
            steps,
            row,
            attempts,
            new_jobs,
            new_attempts,
            attempt_updates,
            events,
            outgoing,
            ..
        } = other;
        self.jobs.extend(jobs);
        for (s, r) in steps.into_iter().zip(row) {
            self.add_step(s, r == RowState::New);
        }
        self.attempts.extend(attempts);
        self.new_jobs.extend(new_jobs);
        self.new_attempts.extend(new_attempts);
        self.attempt_updates.extend(attempt_updates);
        for mut e in events {
            e.n = self.events.len();
            self.events.push(e);
        }
        self.outgoing.extend(outgoing);
    }

    /// The jobs this unit finishes: (tenant, status).
    pub fn finished(&self) -> Vec<(String, &'static str)> {
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
            a.status = u.status.to_string();
            a.has_result = a.has_result || u.output.is_some() || u.error.is_some();
        }
        if let (Some(tin), Some(tout), Some(&i)) = (u.tokens_in, u.tokens_out, self.step_at.get(&step_id)) {
            let s = &mut self.steps[i];
            if s.first_in.is_none() {
                let tier = self.attempts.get(&u.id).map(|a| a.tier.clone());
                (s.first_in, s.first_out, s.first_tier) = (Some(tin), Some(tout), tier);
            }
        }
        self.attempt_updates.push(u);
    }

    /// What job `id` would have cost with every step done once on the strong
    /// tier: each step's first answered attempt's tokens at the strong
    /// model's prices, per run of each model (a strong model sampled three
    /// times pays three runs; a rag step reopened by its critique counts once).
    pub fn always_strong_cost(&self, cfg: &Config, job: Uuid) -> f64 {
        let strong = cfg.tier_model(Tier::Strong);
        let usd: f64 = self
            .steps_of(job)
            .filter_map(|s| {
                let runs = s
                    .first_tier
                    .as_deref()
                    .and_then(|t| t.parse::<Tier>().ok())
                    .map_or(1, |t| cfg.tier_model(t).samples());
                let scale = f64::from(strong.samples()) / f64::from(runs);
                Some((s.first_in? as f64 * scale, s.first_out? as f64 * scale))
            })
            .map(|(tin, tout)| tin * strong.usd_per_m_in + tout * strong.usd_per_m_out)
            .sum();
        usd / 1e6
    }

    /// Picks a step's start tier (or takes `forced`, e.g. a rag critique's
    /// tier below its synthesiser), records `start` with the ambiguity and
    /// its `parts` when known, and dispatches the first attempt.
    pub fn start(
        &mut self,
        cfg: &Config,
        step_id: Uuid,
        risk: StepRisk<'_>,
        forced: Option<StartDecision>,
        parts: serde_json::Value,
    ) -> Uuid {
        let (d, rule) = match forced {
            Some(d) => (d, serde_json::json!("below_answerer")),
            None => {
                let d = start_tier(&cfg.routing, risk);
                let rule = serde_json::json!(d.rule);
                (d, rule)
            }
        };
        let StepRisk {
            ambiguity,
            blast,
            class,
            ..
        } = risk;
        let lead = Lead {
            event: "start",
            attempt: None,
            from: None,
            reasons: &d.reasons,
            detail: serde_json::json!({
                "ambiguity": ambiguity, "ambiguity_parts": parts, "blast_radius": blast, "task_class": class,
                "rule": rule,
            }),
        };
        self.dispatch(cfg, step_id, d.tier, lead)
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

    /// Appends a route event.
    pub fn event(&mut self, e: Event<'_>) {
        self.events.push(EventRow {
            n: self.events.len(),
            job_id: e.job,
            step_id: e.step,
            attempt_id: e.attempt,
            event: e.kind,
            from_tier: e.from.map(Tier::as_str),
            to_tier: e.to.map(Tier::as_str),
            reasons: reason_texts(e.reasons),
            detail: e.detail,
        });
    }

    /// Keeps `output` as what tier zero decided for the step (`state`,
    /// with `findings` open) and records its `start` event without a tier;
    /// returns the job.
    fn decided_without_model(
        &mut self,
        step_id: Uuid,
        state: &str,
        output: String,
        findings: &[upshift_shared::verify::Finding],
        detail: &serde_json::Value,
    ) -> Uuid {
        let job = self.step(step_id).job_id;
        let s = self.step_mut(step_id);
        s.state = state.into();
        s.output = Some(output);
        s.open_findings = serde_json::to_value(findings).expect("findings serialise");
        s.current_tier = None;
        self.event(Event {
            kind: "start",
            reasons: &[ReasonCode::RiskRule],
            detail: detail.clone(),
            ..start_like(job, step_id)
        });
        job
    }

    /// Records a step done without a model ("tier zero": a search, or an
    /// answer composed from a chosen span): `start` and `accept` events
    /// without tiers, and its output. `detail` says what did it.
    pub fn accept_without_model(&mut self, step_id: Uuid, output: String, detail: serde_json::Value) {
        let job = self.decided_without_model(step_id, "accepted", output, &[], &detail);
        self.event(Event {
            kind: "accept",
            detail,
            ..start_like(job, step_id)
        });
    }

    /// Records a step tier zero could not defend and no tier is trusted to:
    /// `start` and `unresolved` without tiers, its output kept undefended
    /// with the findings.
    pub fn unresolved_without_model(
        &mut self,
        step_id: Uuid,
        output: String,
        findings: &[upshift_shared::verify::Finding],
        detail: serde_json::Value,
    ) {
        let job = self.decided_without_model(step_id, "unresolved", output, findings, &detail);
        let codes: Vec<ReasonCode> = findings.iter().map(|f| f.code).collect();
        let mut detail = detail;
        detail["findings"] = serde_json::to_value(findings).expect("findings serialise");
        self.event(Event {
            kind: "unresolved",
            reasons: &codes,
            detail,
            ..start_like(job, step_id)
        });
    }

    /// Records a step tier zero could not defend: `start` without a tier,
    /// then `escalate` from it to `tier` with the findings' reasons, and the
    /// first model attempt. Returns the attempt's id.
    pub fn escalate_from_zero(
        &mut self,
        cfg: &Config,
        step_id: Uuid,
        tier: Tier,
        findings: &[upshift_shared::verify::Finding],
        detail: serde_json::Value,
    ) -> Uuid {
        let job = self.step(step_id).job_id;
        self.event(Event {
            kind: "start",
            reasons: &[ReasonCode::RiskRule],
            detail: detail.clone(),
            ..start_like(job, step_id)
        });
        let mut reasons: Vec<ReasonCode> = Vec::new();
        for f in findings {
            if !reasons.contains(&f.code) {
                reasons.push(f.code);
            }
        }
        let mut detail = detail;
        detail["findings"] = serde_json::to_value(findings).expect("findings serialise");
        let lead = Lead {
            event: "escalate",
            attempt: None,
            from: None,
            reasons: &reasons,
            detail,
        };
        self.dispatch(cfg, step_id, tier, lead)
    }

    /// Creates a `dispatched` attempt of `step_id` on `tier`, marks the step
    /// running, records the `lead` event and the `dispatch` event, and queues
    /// the task message. Returns the attempt's id.
    pub fn dispatch(&mut self, cfg: &Config, step_id: Uuid, tier: Tier, lead: Lead<'_>) -> Uuid {
        let id = Uuid::now_v7();
        let model = cfg.tier_model_name(tier).to_string();
        let step = self.step_mut(step_id);
        step.state = "running".into();
        step.current_tier = Some(tier.as_str().into());
        let job_id = step.job_id;
        self.new_attempts.push(NewAttempt {
            id,
            step_id,
            job_id,
            tier: tier.as_str(),
            model: model.clone(),
            secs: cfg.orchestrator.attempt_deadline_secs as f64,
        });
        let from = lead.from;
        self.event(Event {
            job: job_id,
            step: Some(step_id),
            attempt: lead.attempt,
            kind: lead.event,
            from,
            to: Some(tier),
            reasons: lead.reasons,
            detail: lead.detail,
        });
        self.event(Event {
            job: job_id,
            step: Some(step_id),
            attempt: Some(id),
            kind: "dispatch",
            from,
            to: Some(tier),
            reasons: &[],
            detail: serde_json::json!({ "model": model }),
        });
        let step = self.step(step_id);
        let context = self
            .steps_of(job_id)
            .filter(|d| step.depends_on.contains(&d.idx))
            .map(|d| ContextItem {
                step: d.name.clone(),
                output: d.output.clone().unwrap_or_default(),
            })
            .collect();
        let msg = TaskMessage {
            version: MESSAGE_VERSION,
            attempt_id: id,
            job_id,
            step_id,
            tier,
            task: parse_stored(&step.task_type),
            input: step.input.clone(),
            context,
            output_schema: step.output_schema.clone(),
            labels: step.labels.clone(),
        };
        let traceparent = self.job(job_id).traceparent.clone();
        self.outgoing.push(Outgoing { msg, traceparent });
        id
    }
}

/// An event about `step` of `job` with no attempt and no tiers; callers set the rest.
fn start_like(job: Uuid, step: Uuid) -> Event<'static> {
    Event {
        job,
        step: Some(step),
        attempt: None,
        kind: "start",
        from: None,
        to: None,
        reasons: &[],
        detail: serde_json::Value::Null,
    }
}
