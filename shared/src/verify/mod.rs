//! Deterministic verifiers. Each returns findings with reason codes rather
//! than a bool, so an escalation can say exactly what failed.

mod answer;
mod arithmetic;
pub mod degenerate;
mod grounded;
pub mod rag;
mod schema;

pub use answer::final_answer;
pub use arithmetic::{count_computations, eval_expr};

use crate::reasons::ReasonCode;
use crate::types::TaskType;
use serde::{Deserialize, Serialize};

/// One thing a verifier found wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The reason code.
    pub code: ReasonCode,
    /// What exactly, for people reading the route.
    pub detail: String,
}

impl Finding {
    /// A finding with a code and a detail.
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

crate::types::text_enum! {
    /// The verifiers a step can ask for.
    VerifierKind {
        /// A final answer is present and parseable and the output is not cut off.
        AnswerFormat => "answer_format",
        /// Every stated computation holds and the final answer matches the last.
        Arithmetic => "arithmetic",
        /// The output is JSON valid against the step's schema.
        JsonSchema => "json_schema",
        /// The output is exactly one of the step's labels.
        Label => "label",
        /// Retrieval found enough passages above the score floor (rag).
        Retrieval => "retrieval",
        /// Extracted facts cite retrieved passages that support them and cover
        /// the query's entities (rag).
        FactCitations => "fact_citations",
        /// An answer's sentences cite retrieved passages that support them and
        /// do not conflict (rag).
        AnswerCitations => "answer_citations",
        /// The text is not degenerate: it has content words, and no sentence,
        /// phrase or pattern loops.
        Degenerate => "degenerate",
        /// The answer names something of the type the question asks for (a
        /// setting, a command, a number …) found in a passage it cites (rag).
        AnswerType => "answer_type",
        /// An extractive choice: a span of a retrieved passage, of the type
        /// asked for, from a passage naming the question's entities, in a
        /// sentence relevant to the question (rag).
        Span => "span",
        /// An extraction's values occur in the step's input, and no two fields
        /// of one object hold the same value.
        Grounded => "grounded",
    }
}

/// Verifiers a task type gets when the request names none.
pub fn default_verifiers(task: TaskType, has_schema: bool, has_labels: bool) -> Vec<VerifierKind> {
    match task {
        TaskType::Answer => vec![VerifierKind::AnswerFormat, VerifierKind::Arithmetic],
        TaskType::Extract => vec![VerifierKind::JsonSchema, VerifierKind::Grounded],
        TaskType::Classify if has_labels => vec![VerifierKind::Label],
        _ if has_schema => vec![VerifierKind::JsonSchema],
        // Free text: at least not a loop of words or numbers.
        TaskType::Summarise | TaskType::Rewrite | TaskType::Synthesise => vec![VerifierKind::Degenerate],
        _ => Vec::new(),
    }
}

/// What a step's output is checked against besides its text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect<'a> {
    /// The step's JSON schema, if any.
    pub schema: Option<&'a serde_json::Value>,
    /// The step's closed label set (classification), if any.
    pub labels: &'a [String],
    /// What a rag step is checked against (its job's query and retrieval).
    pub rag: Option<RagExpect<'a>>,
    /// The step's input, for checks of what was taken from it (`grounded`;
    /// skipped when unknown).
    pub input: Option<&'a str>,
}

/// The evidence of a rag step's checks.
#[derive(Debug, Clone, Copy)]
pub struct RagExpect<'a> {
    /// The job's question.
    pub query: &'a str,
    /// What the retrieve step found.
    pub retrieval: &'a rag::Retrieval,
    /// The retrieval floor.
    pub floor: rag::RetrievalFloor,
    /// The floors a chosen span's evidence must clear.
    pub span: rag::SpanFloors,
}

/// The first `n` characters of `s`, with `…` when it went on (for findings).
pub(crate) fn clip(s: &str, n: usize) -> String {
    let t: String = s.chars().take(n).collect();
    if t.len() < s.len() { format!("{t}…") } else { t }
}

/// Runs `verifiers` over `output`; an empty result means every check passed.
pub fn run(verifiers: &[VerifierKind], output: &str, expect: Expect<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for v in verifiers {
        match v {
            VerifierKind::AnswerFormat => out.extend(answer::check(output)),
            VerifierKind::Arithmetic => out.extend(arithmetic::check(output)),
            VerifierKind::JsonSchema => out.extend(schema::check(output, expect.schema)),
            VerifierKind::Label => out.extend(check_label(output, expect.labels)),
            VerifierKind::Degenerate => out.extend(degenerate::check(output)),
            VerifierKind::Grounded => out.extend(expect.input.map(|i| grounded::check(output, i)).unwrap_or_default()),
            VerifierKind::Retrieval
            | VerifierKind::FactCitations
            | VerifierKind::AnswerCitations
            | VerifierKind::AnswerType
            | VerifierKind::Span => {
                let Some(r) = expect.rag else {
                    out.push(Finding::new(
                        ReasonCode::CitationMissing,
                        format!("`{}` needs the job's retrieval, which is missing", v.as_str()),
                    ));
                    continue;
                };
                match v {
                    VerifierKind::Retrieval => out.extend(rag::check_retrieval(r.retrieval, r.floor)),
                    VerifierKind::FactCitations => out.extend(rag::check_facts(output, r.retrieval, r.query)),
                    VerifierKind::AnswerType => out.extend(rag::check_answer_type(output, r.retrieval, r.query)),
                    VerifierKind::Span => out.extend(rag::check_span(
                        output,
                        r.retrieval,
                        r.query,
                        r.span,
                        expect.labels.first().map(String::as_str),
                    )),
                    _ => out.extend(rag::check_answer(output, r.retrieval)),
                }
            }
        }
    }
    out
}

/// The label `output` names, matched case-insensitively after trimming.
pub fn match_label<'a>(output: &str, labels: &'a [String]) -> Option<&'a str> {
    let o = output
        .trim()
        .trim_matches(|c: char| c == '"' || c == '.' || c == '\'')
        .trim();
    labels.iter().find(|l| l.eq_ignore_ascii_case(o)).map(String::as_str)
}

fn check_label(output: &str, labels: &[String]) -> Option<Finding> {
    if labels.is_empty() || match_label(output, labels).is_some() {
        return None;
    }
    let shown: String = output.chars().take(40).collect();
    Some(Finding::new(
        ReasonCode::AnswerFormat,
        format!("`{shown}` is not one of the labels: {}", labels.join(", ")),
    ))
}

/// Checks that a JSON schema itself is valid, for request validation.
pub fn validate_schema(schema: &serde_json::Value) -> Result<(), String> {
    schema::compile(schema).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_loosely_and_misses_are_findings() {
        let labels = vec!["positive".to_string(), "negative".to_string()];
        assert_eq!(match_label(" Positive.", &labels), Some("positive"));
        let e = Expect {
            schema: None,
            labels: &labels,
            rag: None,
            input: None,
        };
        assert!(run(&[VerifierKind::Label], "negative", e).is_empty());
        let f = run(&[VerifierKind::Label], "The sentiment is good", e);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, ReasonCode::AnswerFormat);
    }
}
