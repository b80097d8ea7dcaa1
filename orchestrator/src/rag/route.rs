//! What the router does differently for the steps of a `rag` job: run the
//! search for the retrieve step, hand the retrieval to the verifiers, set
//! the later steps' ambiguity and the critique's tier, reopen synthesis
//! when the critique rejects it, and assemble the cited result.

use super::{CRITIQUE, FLOOR, PASSAGES, RETRIEVE, SYNTHESISE};
use crate::error::{Error, Result};
use crate::router::unit::{Lead, Unit};
use crate::store::parse_stored;
use sqlx::PgConnection;
use upshift_shared::config::Config;
use upshift_shared::policy::StartDecision;
use upshift_shared::verify::rag::text::{citations, keywords};
use upshift_shared::verify::rag::{Retrieval, Verdict, ambiguity};

/// Most keywords a search runs with (the prompt asks for 3 to 8).
pub const MAX_TERMS: usize = 8;
use upshift_shared::verify::{Finding, RagExpect};
use upshift_shared::{ReasonCode, Tier};
use uuid::Uuid;

/// The question and collection of a `rag` job, from its stored request.
#[derive(Debug, Clone)]
pub struct RagJob {
    /// The question.
    pub query: String,
    /// The collection searched.
    pub collection: String,
}

impl RagJob {
    /// Reads them from `jobs.input`; `None` for other kinds of job.
    pub fn from_input(kind: &str, input: &serde_json::Value) -> Option<RagJob> {
        (kind == "rag").then(|| RagJob {
            query: input["query"].as_str().unwrap_or_default().trim().to_string(),
            collection: input["collection"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// What the verifiers check a step against.
    pub fn expect<'a>(&'a self, retrieval: &'a Retrieval) -> RagExpect<'a> {
        RagExpect {
            query: &self.query,
            retrieval,
            floor: FLOOR,
        }
    }
}

/// Runs the search for a retrieve step's `terms` (the model's output, cut to
/// its first [`MAX_TERMS`] keywords). A collection that has gone missing
/// retrieves nothing, which the retrieval verifier then reports.
pub async fn search(conn: &mut PgConnection, tenant: &str, job: &RagJob, terms: &str) -> Result<Retrieval> {
    let terms = keywords(terms, MAX_TERMS);
    let hits = match crate::collections::search_in(conn, tenant, &job.collection, &terms, PASSAGES).await {
        Ok(h) => h,
        Err(Error::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let passages = hits
        .into_iter()
        .map(|h| upshift_shared::verify::rag::Passage {
            passage_id: h.passage_id,
            document_id: h.document_id,
            title: h.title,
            score: h.score,
            text: h.text,
        })
        .collect();
    Ok(Retrieval { terms, passages })
}

/// The retrieval the job's retrieve step stored, once it is accepted.
pub(crate) fn stored_retrieval(unit: &Unit, job_id: Uuid) -> Option<Retrieval> {
    let step = unit.steps_of(job_id).find(|s| s.name == RETRIEVE)?;
    step.output.as_deref().and_then(Retrieval::parse)
}

/// Prepares a later rag step's start: its ambiguity from `retrieval`
/// (set on the step, parts returned for the start event) and, for the
/// critique, a start tier one below the synthesiser's.
pub(crate) fn prepare_start(
    unit: &mut Unit,
    job: &RagJob,
    retrieval: Option<&Retrieval>,
    step_id: Uuid,
) -> (f64, serde_json::Value, Option<StartDecision>) {
    let step = unit.step(step_id);
    let (name, base, job_id) = (step.name.clone(), step.ambiguity, step.job_id);
    let Some(r) = retrieval else {
        return (base, serde_json::Value::Null, None);
    };
    let (a, parts) = ambiguity(&job.query, r, base);
    unit.step_mut(step_id).ambiguity = a;
    let synth_tier = unit
        .steps_of(job_id)
        .find(|s| s.name == SYNTHESISE)
        .and_then(|s| s.current_tier.as_deref())
        .map(parse_stored);
    let forced = (name == CRITIQUE).then(|| StartDecision {
        tier: below(synth_tier.unwrap_or(Tier::Small)),
        reasons: vec![ReasonCode::RiskRule],
        rule: None,
    });
    (a, parts, forced)
}

/// The tier below `t` (the small tier stays small).
fn below(t: Tier) -> Tier {
    Tier::ALL.iter().copied().rev().find(|x| *x < t).unwrap_or(Tier::Small)
}

/// What an accepted critique is about.
pub struct Critique<'a> {
    /// Its step.
    pub step: Uuid,
    /// Its attempt.
    pub attempt: Uuid,
    /// Its output (the verdict).
    pub output: &'a str,
    /// Budget left after it, if the job has one.
    pub budget_left: Option<f64>,
}

/// After a critique was accepted: when its verdict rejects the answer,
/// re-dispatches synthesis one tier up (`critique_rejected`) and puts the
/// critique back to pending, returning the new attempt. When synthesis is
/// already on the top tier, or the budget cannot pay for another attempt,
/// the rejection stays on the critique as an open finding and the job goes on.
pub(crate) async fn after_critique(
    tx: &mut PgConnection,
    unit: &mut Unit,
    cfg: &Config,
    job_id: Uuid,
    c: Critique<'_>,
) -> Result<Option<Uuid>> {
    let Some(v) = Verdict::parse(c.output).filter(Verdict::rejects) else {
        return Ok(None);
    };
    let synth = unit
        .steps_of(job_id)
        .find(|s| s.name == SYNTHESISE)
        .ok_or(sqlx::Error::RowNotFound)?;
    let (synth, tier) = (synth.id, synth.current_tier.clone());
    let tokens: Option<(i32, i32)> = sqlx::query_as(
        "SELECT tokens_in, tokens_out FROM attempts WHERE step_id = $1 AND outcome = 'accepted'
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(synth)
    .fetch_optional(&mut *tx)
    .await?;
    let from: Tier = tier.as_deref().map(parse_stored).unwrap_or(Tier::Strong);
    let (tin, tout) = tokens.unwrap_or((0, 0));
    let estimate = upshift_shared::policy::escalation_estimate(cfg, from, (tin as u32, tout as u32));
    let affordable = match (c.budget_left, estimate) {
        (Some(left), Some(cost)) => cost <= left,
        _ => true,
    };
    let detail = serde_json::json!({ "critique_attempt": c.attempt, "reason": v.reason });
    let to = from.next().filter(|_| affordable);
    let Some(to) = to else {
        let why = if from.next().is_none() {
            "the synthesiser is already on the top tier"
        } else {
            "the budget does not allow another synthesis"
        };
        let mut open = vec![Finding::new(
            ReasonCode::CritiqueRejected,
            format!("{}; {why}", v.reason.trim()),
        )];
        if !affordable {
            open.push(Finding::new(ReasonCode::BudgetExhausted, why));
        }
        let step = unit.step_mut(c.step);
        if let Some(list) = step.open_findings.as_array_mut() {
            list.extend(
                open.iter()
                    .map(|f| serde_json::to_value(f).expect("findings serialise")),
            );
        }
        return Ok(None);
    };
    let step = unit.step_mut(c.step);
    step.state = "pending".into();
    step.output = None;
    step.open_findings = serde_json::json!([]);
    let lead = Lead {
        event: "escalate",
        attempt: None,
        from: Some(from),
        reasons: &[ReasonCode::CritiqueRejected],
        detail,
    };
    Ok(Some(unit.dispatch(cfg, synth, to, lead)))
}

/// An accepted step's name and output, as the result needs them.
pub struct Done<'a> {
    /// Step name.
    pub name: &'a str,
    /// Accepted output.
    pub output: &'a str,
    /// Findings accepted with it.
    pub open_findings: &'a serde_json::Value,
}

/// The result of a finished rag job: the answer, its citations resolved to
/// passages, the critique's verdict, the open findings and the spend.
pub fn result(steps: &[Done<'_>], cost_usd: f64, always_strong_cost_usd: f64) -> serde_json::Value {
    let find = |n: &str| steps.iter().find(|s| s.name == n).map(|s| s.output).unwrap_or_default();
    let retrieval = Retrieval::parse(find(RETRIEVE));
    let answer = find(SYNTHESISE).trim();
    let cites: Vec<serde_json::Value> = citations(answer)
        .iter()
        .filter_map(|id| retrieval.as_ref()?.passages.iter().find(|p| p.passage_id == *id))
        .map(|p| {
            serde_json::json!({
                "passage_id": p.passage_id, "document_id": p.document_id, "title": p.title,
                "snippet": snippet(&p.text, 240),
            })
        })
        .collect();
    let open: Vec<serde_json::Value> = steps
        .iter()
        .flat_map(|s| {
            s.open_findings
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut f| {
                    f["step"] = s.name.into();
                    f
                })
        })
        .collect();
    let facts: serde_json::Value = serde_json::from_str(find(super::EXTRACT)).unwrap_or(serde_json::Value::Null);
    let verdict: serde_json::Value = serde_json::from_str(find(CRITIQUE)).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "answer": answer,
        "citations": cites,
        "open_findings": open,
        "verdict": verdict,
        "facts": facts,
        "search_terms": retrieval.as_ref().map(|r| r.terms.clone()),
        "retrieved": retrieval.as_ref().map(|r| r.passages.iter().map(|p| p.passage_id.clone()).collect::<Vec<_>>()),
        "cost_usd": cost_usd,
        "always_strong_cost_usd": always_strong_cost_usd,
    })
}

/// The first `max` bytes of `text` (on a character boundary), with `…` when cut.
fn snippet(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critique_runs_below_the_synthesiser_and_results_resolve_citations() {
        assert_eq!(below(Tier::Strong), Tier::Medium);
        assert_eq!(below(Tier::Medium), Tier::Small);
        assert_eq!(below(Tier::Small), Tier::Small);
        let r = r#"{"terms":"wal","passages":[{"passage_id":"a#1","document_id":"a","title":"A","score":0.5,"text":"wal_level sets it"}]}"#;
        let empty = serde_json::json!([]);
        let steps = [
            Done {
                name: RETRIEVE,
                output: r,
                open_findings: &empty,
            },
            Done {
                name: SYNTHESISE,
                output: "It is wal_level [a#1]. Also [zz#9].",
                open_findings: &empty,
            },
        ];
        let v = result(&steps, 0.5, 2.0);
        assert_eq!(v["citations"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["citations"][0]["document_id"], "a");
        assert_eq!(snippet("ééé", 3), "é…");
    }
}
