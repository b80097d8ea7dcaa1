//! Reason codes: the closed vocabulary of why a decision was taken.
//! Stored as text in `route_events.reasons`, so audit queries group by them.

use crate::types::text_enum;

text_enum! {
    /// Why a step started where it did, was escalated, or failed.
    ReasonCode {
        /// The job's blast radius forced the strong tier.
        HighBlastRadius => "high_blast_radius",
        /// The risk rule picked the start tier from task type and ambiguity.
        RiskRule => "risk_rule",
        /// The confidence signal was under the tier's threshold.
        LowConfidence => "low_confidence",
        /// A fitted acceptance model scored the answer under its threshold.
        LowDefensibility => "low_defensibility",
        /// Output is not valid JSON or does not match the step's schema.
        SchemaInvalid => "schema_invalid",
        /// No final answer could be found or parsed, or the output is truncated.
        AnswerFormat => "answer_format",
        /// A stated computation does not evaluate to what it claims.
        ArithmeticMismatch => "arithmetic_mismatch",
        /// Retrieval found too few passages above the score floor.
        RetrievalEmpty => "retrieval_empty",
        /// A claim cites nothing, or a passage that was not retrieved.
        CitationMissing => "citation_missing",
        /// Claims not supported by their cited passages.
        UnsupportedClaims => "unsupported_claims",
        /// Cited passages disagree.
        ConflictingEvidence => "conflicting_evidence",
        /// Entities in the query were left unresolved.
        UnresolvedEntities => "unresolved_entities",
        /// The output is degenerate: no content words, a sentence or phrase
        /// looping, a repeating pattern or a run of bare numbers.
        DegenerateOutput => "degenerate_output",
        /// The answer is not of the kind the question asks for (a "which
        /// setting" question answered without naming a setting from a cited
        /// passage).
        AnswerTypeMismatch => "answer_type_mismatch",
        /// An extraction holds a value its input does not contain, or one
        /// value in two fields.
        UngroundedValue => "ungrounded_value",
        /// The evidence an answer rests on is not about the question (its
        /// similarity to the question is under the floor).
        LowRelevance => "low_relevance",
        /// The model found no answer among the candidates of the passages.
        NoAnswer => "no_answer",
        /// The evidence supports another candidate almost as well as the
        /// chosen one: the question does not tell them apart.
        AmbiguousEvidence => "ambiguous_evidence",
        /// The model chose a span other than the one the evidence ranks
        /// first (the span of the sentence most similar to the question):
        /// the two judges disagree.
        EvidenceDisagrees => "evidence_disagrees",
        /// A critic step rejected the output.
        CritiqueRejected => "critique_rejected",
        /// The provider returned an error that retries did not cure.
        ProviderError => "provider_error",
        /// No result arrived before the attempt's deadline.
        Timeout => "timeout",
        /// The message exhausted its deliveries without a result.
        DeadLettered => "dead_lettered",
        /// The job's budget does not allow another attempt.
        BudgetExhausted => "budget_exhausted",
        /// A dependency of this step failed.
        DependencyFailed => "dependency_failed",
        /// An earlier step's answer could not be defended, so this step
        /// cannot defend the job's answer either.
        DependencyUnresolved => "dependency_unresolved",
    }
}
