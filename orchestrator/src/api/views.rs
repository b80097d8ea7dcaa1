//! What the API shows of a stored job, step, route event, ingest, search
//! hit and collection, and their OpenAPI schemas. The store returns records
//! ([`crate::store::JobRecord`] and the rest); the wire shape is decided here, so a column can change
//! without changing a response, and a response without a migration.

use crate::store::{CollectionStatus, EventRecord, Hit, Ingested, JobEnd, JobRecord, StepRecord};
use chrono::{DateTime, Utc};
use serde::Serialize;
use upshift_shared::{JobStatus, RouteEventKind, StepState};
use utoipa::ToSchema;
use uuid::Uuid;

/// A job as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Job id.
    pub id: Uuid,
    /// Owner.
    pub tenant: String,
    /// Kind.
    pub kind: String,
    /// `running`, `succeeded` (every step's answer was defended),
    /// `unresolved` (a step's answer could not be defended on any tier; the
    /// result keeps the best answer, marked undefended, with the findings)
    /// or `failed`.
    pub status: JobStatus,
    /// Caller's blast radius.
    pub blast_radius: String,
    /// Caller's budget.
    pub budget_usd: Option<f64>,
    /// Answer, outputs and open findings, or the error.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Spent so far, every call counted.
    pub cost_usd: f64,
    /// What each finished step would have cost once on the strong tier.
    pub always_strong_cost_usd: f64,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The steps.
    pub steps: Vec<StepView>,
}

/// A step as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    /// Step name.
    pub name: String,
    /// Task type.
    pub task: String,
    /// `pending`, `running`, `accepted` (defended), `unresolved` (the best
    /// answer, undefended: see `open_findings`), `failed`, `cancelled`.
    pub state: StepState,
    /// Tier of the latest attempt.
    pub tier: Option<String>,
    /// Ambiguity used for routing.
    pub ambiguity: f64,
    /// `request` or `estimate`.
    pub ambiguity_source: String,
    /// Accepted output.
    pub output: Option<String>,
    /// A label step's choices (a classification's labels, a rag
    /// extraction's candidate spans, a critique's verdicts).
    pub labels: Vec<String>,
    /// Findings that kept the answer from being defended.
    #[schema(value_type = Vec<Object>)]
    pub open_findings: serde_json::Value,
    /// Attempts made.
    pub attempts: i64,
}

/// One route event as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteEvent {
    /// Sequence number of the event (increasing; the SSE event id).
    pub id: i64,
    /// Time.
    pub at: DateTime<Utc>,
    /// Step name.
    pub step: Option<String>,
    /// Attempt id.
    pub attempt_id: Option<Uuid>,
    /// What it records. A step done without a model (tier zero) has
    /// `start` and `accept` without tiers.
    pub event: RouteEventKind,
    /// Tier before.
    pub from_tier: Option<String>,
    /// Tier after.
    pub to_tier: Option<String>,
    /// Reason codes.
    pub reasons: Vec<String>,
    /// Model of the attempt.
    pub model: Option<String>,
    /// Cost of the attempt.
    pub cost_usd: Option<f64>,
    /// Latency of the attempt.
    pub latency_ms: Option<i64>,
    /// Confidence of the attempt.
    pub confidence: Option<f64>,
    /// Policy version that decided.
    pub policy_version: String,
    /// Findings and other detail.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// The `done` event of a job's stream: its status and what it cost.
#[derive(Debug, Serialize)]
pub struct JobDone {
    /// Its status.
    pub status: JobStatus,
    /// Spent, every call counted.
    pub cost_usd: f64,
    /// What each finished step would have cost once on the strong tier.
    pub always_strong_cost_usd: f64,
}

impl From<JobRecord> for JobView {
    fn from(r: JobRecord) -> JobView {
        JobView {
            id: r.id,
            tenant: r.tenant,
            kind: r.kind,
            status: r.status,
            blast_radius: r.blast_radius,
            budget_usd: r.budget_usd,
            result: r.result,
            cost_usd: r.cost_usd,
            always_strong_cost_usd: r.always_strong_cost_usd,
            created_at: r.created_at,
            finished_at: r.finished_at,
            steps: r.steps.into_iter().map(StepView::from).collect(),
        }
    }
}

impl From<StepRecord> for StepView {
    fn from(r: StepRecord) -> StepView {
        StepView {
            name: r.name,
            task: r.task,
            state: r.state,
            tier: r.tier,
            ambiguity: r.ambiguity,
            ambiguity_source: r.ambiguity_source,
            output: r.output,
            labels: r.labels,
            open_findings: r.open_findings,
            attempts: r.attempts,
        }
    }
}

impl From<&EventRecord> for RouteEvent {
    fn from(r: &EventRecord) -> RouteEvent {
        RouteEvent {
            id: r.id,
            at: r.at,
            step: r.step.clone(),
            attempt_id: r.attempt_id,
            event: r.event,
            from_tier: r.from_tier.clone(),
            to_tier: r.to_tier.clone(),
            reasons: r.reasons.clone(),
            model: r.model.clone(),
            cost_usd: r.cost_usd,
            latency_ms: r.latency_ms,
            confidence: r.confidence,
            policy_version: r.policy_version.clone(),
            detail: r.detail.clone(),
        }
    }
}

impl From<&JobEnd> for JobDone {
    fn from(e: &JobEnd) -> JobDone {
        JobDone {
            status: e.status,
            cost_usd: e.cost_usd,
            always_strong_cost_usd: e.always_strong_cost_usd,
        }
    }
}

/// What an ingest wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestView {
    /// The collection.
    pub collection: String,
    /// Documents written (new or replaced).
    pub documents: usize,
    /// Passages written.
    pub passages: usize,
}

/// One search result.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    /// Passage id, `<document id>#<n>`.
    pub passage_id: String,
    /// The document it belongs to.
    pub document_id: String,
    /// The document's title.
    pub title: String,
    /// Rank score (higher is better): the fused score of a hybrid search,
    /// the full-text rank of a lexical one.
    pub score: f32,
    /// The passage text.
    pub text: String,
    /// Full-text rank, when full-text search found the passage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lexical: Option<f32>,
    /// Similarity of the passage to the query, when dense search ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
}

/// A collection's size and how far its embeddings are.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionView {
    /// The collection.
    pub collection: String,
    /// Documents.
    pub documents: i64,
    /// Passages.
    pub passages: i64,
    /// Passages whose embedding exists (dense search covers these).
    pub embedded: i64,
    /// The embedding model, when dense retrieval is on.
    pub embedding_model: Option<String>,
}

impl From<Ingested> for IngestView {
    fn from(i: Ingested) -> IngestView {
        IngestView {
            collection: i.collection,
            documents: i.documents,
            passages: i.passages,
        }
    }
}

impl From<Hit> for SearchHit {
    fn from(h: Hit) -> SearchHit {
        SearchHit {
            passage_id: h.passage_id,
            document_id: h.document_id,
            title: h.title,
            score: h.score,
            text: h.text,
            lexical: h.lexical,
            similarity: h.similarity,
        }
    }
}

impl From<CollectionStatus> for CollectionView {
    fn from(c: CollectionStatus) -> CollectionView {
        CollectionView {
            collection: c.collection,
            documents: c.documents,
            passages: c.passages,
            embedded: c.embedded,
            embedding_model: c.embedding_model,
        }
    }
}
