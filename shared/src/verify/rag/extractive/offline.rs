//! A rag job's decision from its retrieval alone, as the router makes it
//! when no model is trusted to extract (the local ladder's calibration:
//! `routing.accept.<tier>.by_class.rag_extract` never met): the retrieval
//! floor, tier zero, the composed answer and the synthesis's verifiers.
//! `upshift eval rag --replay` runs it over recorded retrievals, so a fit
//! over hundreds of questions takes seconds and reproduces the live run.

use super::{ZeroChoice, compose, tier_zero};
use crate::config::RagConfig;
use crate::reasons::ReasonCode;
use crate::verify::rag::{Retrieval, RetrievalFloor, SYNTHESISE_VERIFIERS, SpanFloors, check_retrieval};
use crate::verify::{self, Expect, Finding, RagExpect};

/// What the router decides for a question, offline.
#[derive(Debug, Clone)]
pub struct Offline {
    /// The retrieval floor's finding, if it missed.
    pub retrieval: Option<Finding>,
    /// Tier zero's choice.
    pub zero: ZeroChoice,
    /// The composed answer, when the choice is in a retrieved sentence.
    pub answer: Option<String>,
    /// The synthesis's verifiers' findings on it.
    pub synthesis: Vec<Finding>,
}

impl Offline {
    /// Whether only tier zero's score stands between the answer and
    /// "defended": what its calibration is measured on.
    pub fn eligible(&self) -> bool {
        self.retrieval.is_none() && self.zero.span_findings.is_empty() && self.synthesis.is_empty()
    }

    /// Whether the job ends `succeeded`.
    pub fn defended(&self) -> bool {
        self.eligible() && self.zero.findings.is_empty()
    }
}

/// Decides `query` over `r` under `rag`, without a model.
pub fn decide(query: &str, r: &Retrieval, rag: &RagConfig) -> Offline {
    let retrieval = check_retrieval(r, RetrievalFloor::from(rag));
    let zero = tier_zero(query, r, &rag.zero_rank, &rag.zero_score);
    let answer = compose(query, &zero.answer, r);
    let synthesis = match &answer {
        Some(a) => verify::run(
            &SYNTHESISE_VERIFIERS,
            a,
            Expect {
                schema: None,
                labels: &[],
                rag: Some(RagExpect {
                    query,
                    retrieval: r,
                    floor: RetrievalFloor::from(rag),
                    span: SpanFloors::from(rag),
                }),
                input: None,
            },
        ),
        None => vec![Finding::new(
            ReasonCode::CitationMissing,
            "the chosen span is in no retrieved sentence",
        )],
    };
    Offline {
        retrieval,
        zero,
        answer,
        synthesis,
    }
}
