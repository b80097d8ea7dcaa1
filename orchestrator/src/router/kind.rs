//! The job-kind seam. What the router does differently for a kind of job
//! goes through [`Kind`]'s hooks — at submission, when a step is admitted
//! or starts, the evidence a step is checked against, after an accept,
//! what a decided step keeps, whether the job stops early, and how its
//! result is composed. The rest of the router calls the hooks and names no
//! kind; this file is the one place that matches on them, and each kind's
//! behaviour lives in a module of its own (`steps`: the defaults here;
//! `rag`: `router/rag/`). Where a new kind goes: docs/architecture.md.

use super::rag::{self, RagJob};
use super::steps::{self, AfterAccept, Reopen, StepStart};
use crate::collections::Retriever;
use crate::error::Result;
use crate::request::{JobRequest, PlannedStep};
use crate::store::unit::Unit;
use crate::store::{Conn, PgStore};
use upshift_shared::config::Config;
use upshift_shared::policy::StepRisk;
use upshift_shared::verify::rag::Retrieval;
use upshift_shared::verify::{Finding, RagExpect};
use upshift_shared::{JobKind, StepState, Tier};
use uuid::Uuid;

/// A job's kind as the router decides it, with what that kind reads from
/// the job's stored request.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// An explicit list of steps: each starts on the policy's tier, nothing
    /// is searched, the result is every step's output.
    Steps,
    /// A question answered from a collection (`router/rag/`).
    Rag(RagJob),
}

/// Runs an earlier step again after [`AfterAccept::Reopen`].
pub(crate) fn reopen(unit: &mut Unit, cfg: &Config, job_id: Uuid, r: Reopen) {
    rag::reopen(unit, cfg, job_id, r);
}

impl Kind {
    /// The kind of a job of `kind` whose stored request is `input` (loaded
    /// only for the kinds that read it: [`JobKind::reads_stored_request`]).
    pub(crate) fn of(kind: JobKind, input: Option<&serde_json::Value>) -> Kind {
        match (kind, input) {
            (JobKind::Rag, Some(input)) => Kind::Rag(RagJob::from_input(input)),
            _ => Kind::Steps,
        }
    }

    /// Validates `req` and plans its steps (the planner of its kind); the
    /// error names the offending field.
    pub(crate) fn plan(req: &JobRequest, cfg: &Config) -> Result<Vec<PlannedStep>> {
        crate::planner::check_request(req)?;
        match req.kind {
            JobKind::Steps => crate::planner::plan_steps(req),
            JobKind::Rag => crate::rag::plan(req, cfg.rag.answer),
        }
    }

    /// At submission, before anything is written: what the kind needs
    /// first (a rag job's collection must exist, and its question is
    /// searched — tier zero). The search result is handed to [`admit_step`].
    ///
    /// [`admit_step`]: Kind::admit_step
    pub(crate) async fn at_submit(
        store: &PgStore,
        retriever: &Retriever,
        tenant: &str,
        req: &JobRequest,
    ) -> Result<Option<Retrieval>> {
        match req.kind {
            JobKind::Steps => Ok(None),
            JobKind::Rag => rag::at_submit(store, retriever, tenant, req).await.map(Some),
        }
    }

    /// A first step at admission: when the kind starts it itself (a rag
    /// job's retrieve step, from the search done at submission), does so
    /// and returns true; false leaves it to the start rules.
    pub(crate) fn admit_step(
        &self,
        unit: &mut Unit,
        cfg: &Config,
        step: (Uuid, &PlannedStep, StepRisk<'_>),
        searched: Option<&Retrieval>,
    ) -> bool {
        match (self, searched) {
            (Kind::Rag(_), Some(r)) if step.1.idx == 0 => {
                rag::admit_retrieve(unit, cfg, step.0, &step.1.class, step.2, r);
                true
            }
            _ => false,
        }
    }

    /// How step `id` starts once its dependencies are done (`first`: it is
    /// the job's first step); `None` leaves it to the start rules.
    pub(crate) fn start(&self, unit: &mut Unit, cfg: &Config, id: Uuid, first: bool) -> Option<StepStart> {
        match self {
            Kind::Rag(job) if !first => {
                let retrieval = rag::stored_retrieval(unit, unit.step(id).job_id);
                Some(rag::start::prepare(unit, cfg, job, retrieval.as_ref(), id))
            }
            _ => None,
        }
    }

    /// Whether the job stops before its remaining steps run (a rag step
    /// that decides the answer ended unresolved): the caller cancels them.
    pub(crate) fn stops_early(&self, unit: &Unit, cfg: &Config, job_id: Uuid) -> bool {
        match self {
            Kind::Rag(_) => rag::undefended(unit, cfg, job_id),
            Kind::Steps => false,
        }
    }

    /// What a step's answer is checked against besides itself: a rag
    /// job's retrieval, searched again when a model rewrote the question
    /// (`rewrite`, on the decision's connection), else the stored one.
    pub(crate) async fn evidence(
        &self,
        tx: &mut Conn,
        retriever: &Retriever,
        unit: &Unit,
        (tenant, job_id): (&str, Uuid),
        rewrite: Option<&str>,
    ) -> Result<Option<Retrieval>> {
        match self {
            Kind::Rag(job) => match rewrite {
                Some(r) => Ok(Some(rag::research(tx, retriever, tenant, job, r).await?)),
                None => Ok(rag::stored_retrieval(unit, job_id)),
            },
            Kind::Steps => Ok(None),
        }
    }

    /// Whether a decision on a step of task `task` searches again with its
    /// answer (a rag retrieve step's rewrite of the question).
    pub(crate) fn searches_again(&self, task: upshift_shared::TaskType) -> bool {
        matches!(self, Kind::Rag(_)) && task == upshift_shared::TaskType::RetrievePlan
    }

    /// What the verifiers check a rag step against.
    pub(crate) fn expect<'a>(&'a self, retrieval: Option<&'a Retrieval>, cfg: &Config) -> Option<RagExpect<'a>> {
        match self {
            Kind::Rag(job) => retrieval.map(|r| job.expect(r, cfg)),
            Kind::Steps => None,
        }
    }

    /// Adds to a decision's event what the kind's trust is measured on (a
    /// critic's verdict, an extraction's chosen span).
    pub(crate) fn annotate(&self, detail: &mut serde_json::Value, step: &super::StepFacts, output: &str) {
        if let Kind::Rag(_) = self {
            rag::annotate(detail, step, output);
        }
    }

    /// What an accepted answer of step `step` leads to.
    pub(crate) async fn after_accept(
        &self,
        tx: &mut Conn,
        unit: &Unit,
        cfg: &Config,
        step: &super::StepFacts,
        accepted: (Uuid, Uuid, &str, Option<f64>),
    ) -> Result<AfterAccept> {
        match self {
            Kind::Rag(_) => rag::after_accept(tx, unit, cfg, step, accepted).await,
            Kind::Steps => Ok(AfterAccept::Accepted),
        }
    }

    /// What a decided step keeps as its output when it is not the answer
    /// itself (a rag retrieval, a critic's verdict with its confidence, the
    /// evidence's own first choice); `None`: the answer.
    pub(crate) fn stored_output(
        &self,
        d: &super::Decided<'_>,
        (state, open): (StepState, &[Finding]),
        tier: Tier,
    ) -> Option<String> {
        match self {
            Kind::Rag(_) => rag::stored_output(d, state, open, tier),
            Kind::Steps => None,
        }
    }

    /// The job's result once every step is done (`defended`: every step
    /// accepted; `always_strong`: what it would have cost on the strong tier).
    pub(crate) fn result(&self, unit: &Unit, job_id: Uuid, defended: bool, always_strong: f64) -> serde_json::Value {
        match self {
            Kind::Rag(job) => rag::result(unit, job, job_id, defended, always_strong),
            Kind::Steps => steps::result(unit, job_id, defended),
        }
    }
}
