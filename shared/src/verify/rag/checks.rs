//! The verifiers of a rag job's steps (see the module above for the list).

use super::extractive::{NO_ANSWER, candidates, locate, margin, offers_a_means};
use super::question::{QuestionType, classify};
use super::spans::{fits, spans};
use super::{
    MAX_UNSUPPORTED_SHARE, MIN_CLAIM_WORDS, MIN_SUPPORT, Passage, Retrieval, RetrievalFloor, parse_facts, text,
};
use crate::reasons::ReasonCode;
use crate::verify::{Finding, clip};
use std::collections::BTreeMap;

/// `retrieval_empty` when retrieval missed its floor: too few passages, or
/// (with sentence similarities) no sentence similar enough to the question,
/// or (full-text only) too few passages ranked at or above the floor. The
/// search is judged: definitions looked up for its candidates do not count.
pub fn check_retrieval(r: &Retrieval, floor: RetrievalFloor) -> Option<Finding> {
    let miss = |d: String| Some(Finding::new(ReasonCode::RetrievalEmpty, d));
    let found = r.results().count();
    if found < floor.min_passages {
        return miss(format!(
            "`{}` found {found} passages (need {})",
            r.terms, floor.min_passages
        ));
    }
    if let Some(best) = r.best_similarity() {
        return (best < floor.min_similarity).then(|| {
            Finding::new(
                ReasonCode::RetrievalEmpty,
                format!(
                    "the sentence most similar to the question scores {best:.2} (floor {:.2})",
                    floor.min_similarity
                ),
            )
        });
    }
    let good = r
        .results()
        .filter(|p| p.lexical.unwrap_or(p.score) >= floor.min_score)
        .count();
    if good < floor.min_passages {
        return miss(format!(
            "terms `{}` found {good} passages scoring ≥ {} (need {})",
            r.terms, floor.min_score, floor.min_passages
        ));
    }
    None
}

/// Checks extracted facts against the passages and the query.
pub fn check_facts(output: &str, r: &Retrieval, query: &str) -> Vec<Finding> {
    let Some(facts) = parse_facts(output) else {
        return Vec::new(); // the schema verifier reports malformed output
    };
    let mut out = Vec::new();
    let unknown: Vec<&str> = facts
        .iter()
        .filter(|f| r.get(&f.passage_id).is_none())
        .map(|f| f.passage_id.as_str())
        .collect();
    if !unknown.is_empty() {
        out.push(Finding::new(
            ReasonCode::CitationMissing,
            format!("cites passages that were not retrieved: {}", unknown.join(", ")),
        ));
    }
    let unsupported: Vec<String> = facts
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            r.get(&f.passage_id).is_some_and(|p| {
                text::support(&f.fact, &text::word_set([p.text.as_str(), p.title.as_str()])) < MIN_SUPPORT
            })
        })
        .map(|(i, _)| format!("fact {i}"))
        .collect();
    if !unsupported.is_empty() {
        out.push(Finding::new(
            ReasonCode::UnsupportedClaims,
            format!("not supported by the cited passage: {}", unsupported.join(", ")),
        ));
    }
    let all: String = facts.iter().map(|f| f.fact.as_str()).collect::<Vec<_>>().join(" ");
    let missing = text::unmentioned(query, &all);
    if !missing.is_empty() {
        out.push(Finding::new(
            ReasonCode::UnresolvedEntities,
            format!("the facts never mention: {}", missing.join(", ")),
        ));
    }
    out
}

/// Checks a synthesised answer's citations, support and evidence. A cited
/// sentence is supported when most of its content words occur in what it
/// cites and every number and code name it states does too.
pub fn check_answer(answer: &str, r: &Retrieval) -> Vec<Finding> {
    let mut out = Vec::new();
    if answer.trim().is_empty() {
        return vec![Finding::new(ReasonCode::AnswerFormat, "empty answer")];
    }
    let unknown: Vec<String> = text::citations(answer)
        .into_iter()
        .filter(|id| r.get(id).is_none())
        .collect();
    if !unknown.is_empty() {
        out.push(Finding::new(
            ReasonCode::CitationMissing,
            format!("cites passages that were not retrieved: {}", unknown.join(", ")),
        ));
    }
    let (mut claims, mut uncited) = (0, 0);
    let mut unsupported: Vec<String> = Vec::new();
    for s in text::sentences(answer) {
        let bare = text::strip_citations(&s);
        if text::content_words(&bare).len() < MIN_CLAIM_WORDS && !text::has_facts(&bare) {
            continue;
        }
        claims += 1;
        let cited: Vec<&Passage> = text::citations(&s).iter().filter_map(|id| r.get(id)).collect();
        if cited.is_empty() {
            uncited += 1;
            continue;
        }
        let source = text::word_set(cited.iter().flat_map(|p| [p.text.as_str(), p.title.as_str()]));
        let cited_text: String = cited.iter().map(|p| format!("{} {}\n", p.title, p.text)).collect();
        let missing = text::facts_missing(&bare, &cited_text);
        if let Some(m) = missing.first() {
            unsupported.push(format!("`{m}` is not in what it cites"));
        } else if text::support(&bare, &source) < MIN_SUPPORT {
            unsupported.push(format!("`{}` is not supported by what it cites", clip(&bare, 50)));
        }
    }
    if uncited > 0 {
        out.push(Finding::new(
            ReasonCode::CitationMissing,
            format!("{uncited} of {claims} sentences cite no retrieved passage"),
        ));
    }
    let cited = claims - uncited;
    if cited > 0 && unsupported.len() as f64 / cited as f64 > MAX_UNSUPPORTED_SHARE {
        out.push(Finding::new(
            ReasonCode::UnsupportedClaims,
            format!(
                "{} of {cited} cited sentences are not supported: {}",
                unsupported.len(),
                unsupported.join("; ")
            ),
        ));
    }
    let cited: Vec<&Passage> = text::citations(answer).iter().filter_map(|id| r.get(id)).collect();
    out.extend(conflicts(&cited).map(|d| Finding::new(ReasonCode::ConflictingEvidence, d)));
    out
}

/// `answer_type_mismatch` when `answer` does not name anything of the type
/// `query` asks for that also appears in a passage it cites (or, when it
/// cites none, in a retrieved passage). Free-form questions pass.
pub fn check_answer_type(answer: &str, r: &Retrieval, query: &str) -> Option<Finding> {
    let t = classify(query);
    if !t.wants_span() {
        return None;
    }
    let cited: Vec<&Passage> = text::citations(answer).iter().filter_map(|id| r.get(id)).collect();
    let pool: Vec<&Passage> = if cited.is_empty() {
        r.passages.iter().collect()
    } else {
        cited
    };
    let bare = text::strip_citations(answer);
    // What the answer names itself, found in a cited passage; or what a
    // cited passage names (its code spans, numbers …), found in the answer.
    let own = spans(&bare, t).into_iter().any(|s| {
        pool.iter()
            .any(|p| text::contains_span(&p.text, &s) || text::contains_span(&p.title, &s))
    });
    let named = own
        || pool
            .iter()
            .flat_map(|p| text::sentences(&p.text))
            .flat_map(|sentence| spans(&sentence, t))
            .any(|s| !text::contains_span(query, &s) && text::contains_span(&bare, &s));
    (!named).then(|| {
        Finding::new(
            ReasonCode::AnswerTypeMismatch,
            format!(
                "the question asks for a {}; the answer names none that a cited passage has",
                t.describe()
            ),
        )
    })
}

/// What is true of an extractive answer on any corpus, whoever chose it:
/// a real choice (not "none of these"), found in a retrieved passage, of
/// the shape the question asks for (a name question is answered by a name,
/// never by a heading or a sentence; a value question by a value), in a
/// passage that names the asking sentence's entities.
pub fn check_span_hard(span: &str, r: &Retrieval, query: &str) -> Vec<Finding> {
    let span = span.trim();
    if span.is_empty() || span.eq_ignore_ascii_case(NO_ANSWER) {
        return vec![Finding::new(
            ReasonCode::NoAnswer,
            "no candidate of the passages was chosen",
        )];
    }
    let t = classify(query);
    let Some(ev) = locate(span, r) else {
        return vec![Finding::new(
            ReasonCode::CitationMissing,
            format!("`{}` is in no retrieved passage", clip(span, 60)),
        )];
    };
    let mut out = Vec::new();
    if t.wants_span() && !fits(span, t) {
        out.push(Finding::new(
            ReasonCode::AnswerTypeMismatch,
            format!(
                "the question asks for a {}; `{}` is not one",
                t.describe(),
                clip(span, 40)
            ),
        ));
    }
    // A sentence answer states something: a heading ("Table-Level Locks")
    // or a label is no answer to a free-form question.
    if t == QuestionType::Free && text::content_words(span).len() < MIN_CLAIM_WORDS + 1 {
        out.push(Finding::new(
            ReasonCode::AnswerTypeMismatch,
            format!(
                "`{}` is a heading or a label, not a sentence that answers",
                clip(span, 40)
            ),
        ));
    }
    // A default is a value its passage states as the default.
    if t == QuestionType::Default && !states_default(&ev.passage.text, span) {
        out.push(Finding::new(
            ReasonCode::AnswerTypeMismatch,
            format!(
                "a default is a value its passage states as the default; no sentence holding `{}` does",
                clip(span, 40)
            ),
        ));
    }
    let context = format!("{} {}", ev.passage.title, ev.passage.text);
    let missing = text::unmentioned(query, &context);
    if !missing.is_empty() {
        out.push(Finding::new(
            ReasonCode::UnresolvedEntities,
            format!("{} never mentions: {}", ev.passage.passage_id, missing.join(", ")),
        ));
    }
    out
}

/// Checks the span a model chose: [`check_span_hard`], and that it is
/// presented as what was asked (a setting defined as one, a program
/// called one, a default stated as one, a means for "how"), the span tier
/// zero ranks first (`first`: the first of the step's labels; `None`: the
/// evidence order's first), in a sentence similar enough to the question
/// and clearly more similar than any rival candidate's.
pub fn check_span(span: &str, r: &Retrieval, query: &str, floors: SpanFloors, first: Option<&str>) -> Vec<Finding> {
    let SpanFloors {
        min_relevance,
        min_margin,
    } = floors;
    let mut out = check_span_hard(span, r, query);
    let span = span.trim();
    let t = classify(query);
    let Some(ev) = locate(span, r) else {
        return out;
    };
    if t == QuestionType::Setting && fits(span, t) && !presents_setting(r, span) {
        // A name used in code (a connection parameter, a command's
        // argument) is not a setting: a setting is defined, or called one.
        out.push(Finding::new(
            ReasonCode::AnswerTypeMismatch,
            format!(
                "a setting is defined in the manual or called a setting; no retrieved passage presents `{}` so",
                clip(span, 40)
            ),
        ));
    }
    if t == QuestionType::Program && fits(span, t) && !r.passages.iter().any(|p| presents_program(p, span)) {
        out.push(Finding::new(
            ReasonCode::AnswerTypeMismatch,
            format!(
                "a program is the subject of its reference page or called a program; no retrieved passage presents `{}` so",
                clip(span, 40)
            ),
        ));
    }
    // A sentence is answered with the term it describes (`compose`), a means.
    if t == QuestionType::Free && asks_how(query) && !offers_a_means(query, &ev) {
        out.push(Finding::new(
            ReasonCode::AnswerTypeMismatch,
            "a \"how\" question is answered by a means (a command, option, function or setting); this sentence names none the question does not, nor describes one",
        ));
    }
    // The evidence's own ranking is a second judge: a model that picks
    // another span than the one tier zero ranked first (the first of the
    // step's labels; without them, the evidence order's) is not confirmed.
    let first = first
        .map(str::to_string)
        .or_else(|| candidates(query, r).into_iter().next());
    if let Some(first) = first
        && !first.eq_ignore_ascii_case(span)
    {
        out.push(Finding::new(
            ReasonCode::EvidenceDisagrees,
            format!("the evidence ranks `{}` first", clip(&first, 60)),
        ));
    }
    if let Some(sim) = ev.similarity
        && sim < min_relevance
    {
        out.push(Finding::new(
            ReasonCode::LowRelevance,
            format!("its sentence scores {sim:.2} against the question (floor {min_relevance:.2})"),
        ));
    }
    if let Some(m) = margin(query, span, r)
        && m < min_margin
    {
        out.push(Finding::new(
            ReasonCode::AmbiguousEvidence,
            if m < 0.0 {
                format!(
                    "another candidate's sentence is closer to the question, by {:.3}, than this one's",
                    -m
                )
            } else {
                format!("another candidate's sentence scores within {m:.3} of this one's (lead needed {min_margin:.3})")
            },
        ));
    }
    out
}

/// The floors a chosen span's evidence must clear.
#[derive(Debug, Clone, Copy)]
pub struct SpanFloors {
    /// Lowest similarity of its sentence to the question.
    pub min_relevance: f32,
    /// Lowest lead of its sentence's similarity over the best rival's.
    pub min_margin: f32,
}

impl From<&crate::config::RagConfig> for SpanFloors {
    fn from(cfg: &crate::config::RagConfig) -> SpanFloors {
        SpanFloors {
            min_relevance: cfg.min_relevance,
            min_margin: cfg.min_margin,
        }
    }
}

/// Whether `r` presents `name` as a setting: it defines it (a definition
/// line or list entry of any manual), or prose calls it one ("the
/// `max_widgets` setting").
fn presents_setting(r: &Retrieval, name: &str) -> bool {
    let n = name.trim().to_lowercase();
    super::extractive::judge::defined(name, r)
        || r.passages.iter().any(|p| {
            let text = p.text.to_lowercase().replace('`', "");
            text.contains(&format!("{n} setting")) || text.contains(&format!("setting {n}"))
        })
}

/// Words prose presents a program with ("the `backup` utility", "`adduser`
/// is a wrapper").
const PROGRAM_WORDS: [&str; 6] = ["program", "utility", "tool", "wrapper", "application", "client"];

/// Whether `passage` presents `name` as a program: its page is the
/// program's reference page (titled by the name), or its text calls it one
/// (`` `fsck` program ``, "`adduser` is a wrapper"). An argument of a
/// program is named in code on the same page, but is not one.
pub fn presents_program(passage: &Passage, name: &str) -> bool {
    let name = name.trim().to_lowercase();
    if passage.title.trim().to_lowercase() == name {
        return true;
    }
    let text = passage.text.to_lowercase().replace('`', "");
    PROGRAM_WORDS.iter().any(|w| {
        [
            format!("{name} {w}"),
            format!("{name} is a {w}"),
            format!("{name} is the {w}"),
        ]
        .iter()
        .any(|p| text.contains(p.as_str()))
    })
}

/// Whether a sentence of `passage` that holds `span` states a default
/// ("The default is …", "… (the default)"): a value named elsewhere in the
/// passage is not the default however similar its sentence.
pub(crate) fn states_default(passage: &str, span: &str) -> bool {
    text::sentences(passage)
        .iter()
        .any(|s| text::contains_span(s, span) && s.to_lowercase().contains("default"))
}

/// Whether `query` asks how to do something ("How do I …", "how can …"),
/// not how much or how long.
pub(crate) fn asks_how(query: &str) -> bool {
    let q = super::question::asking_sentence(query).to_lowercase();
    q.starts_with("how ")
        && ![
            "how many",
            "how much",
            "how long",
            "how large",
            "how big",
            "how often",
            "how old",
        ]
        .iter()
        .any(|p| q.starts_with(p))
}

/// Whether `sentence` names a means the question does not: a code span
/// (`` `CONCURRENTLY` ``, `` `--jobs` ``) absent from `query`.
/// A sentence similar to a "how do I" question that names none states the
/// topic, not the way.
pub(crate) fn names_a_means(sentence: &str, query: &str) -> bool {
    let q = query.to_lowercase();
    sentence
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|code| code.trim().to_lowercase())
        .any(|code| !code.is_empty() && !q.contains(&code))
}

/// The first setting to which `passages` give different values, described.
pub fn conflicts(passages: &[&Passage]) -> Option<String> {
    let mut seen: BTreeMap<String, (String, &str)> = BTreeMap::new();
    for p in passages {
        for (key, value) in text::settings(&p.text) {
            match seen.get(&key) {
                Some((v, other)) if *v != value && *other != p.passage_id => {
                    return Some(format!("`{key}` is {v} in {other} but {value} in {}", p.passage_id));
                }
                Some(_) => {}
                None => {
                    seen.insert(key, (value, &p.passage_id));
                }
            }
        }
    }
    None
}

/// Ambiguity of the steps after retrieval, from what was retrieved, with
/// its parts for the route: `0.4 × unresolved + 0.3 × flatness + 0.3 ×
/// conflict`, never below `base` (the query's own estimate).
///
/// - unresolved: share of the query's entities no passage mentions;
/// - flatness: `1 − (best − worst) / best` over the passages' similarities
///   to the question (their scores without embeddings): a flat ranking
///   means the search could not tell passages apart;
/// - conflict: 1 when the passages give different values for a setting.
///
/// The search's passages are judged, not the definitions looked up.
pub fn ambiguity(query: &str, r: &Retrieval, base: f64) -> (f64, serde_json::Value) {
    let ents = text::entities(query);
    let all: String = r.results().map(|p| p.text.as_str()).collect::<Vec<_>>().join(" ");
    let unresolved = if ents.is_empty() {
        0.0
    } else {
        ents.iter().filter(|e| !text::mentions(&all, e)).count() as f64 / ents.len() as f64
    };
    let scores: Vec<f32> = r.results().map(|p| p.similarity.unwrap_or(p.score)).collect();
    let best = scores.iter().copied().fold(0.0f32, f32::max);
    let worst = scores.iter().copied().fold(f32::INFINITY, f32::min);
    let flatness = if scores.len() < 2 || best <= 0.0 {
        1.0
    } else {
        1.0 - f64::from((best - worst) / best)
    };
    let all_refs: Vec<&Passage> = r.results().collect();
    let conflict = conflicts(&all_refs);
    let a = (0.4 * unresolved + 0.3 * flatness + 0.3 * f64::from(u8::from(conflict.is_some()))).max(base);
    let detail = serde_json::json!({
        "base": base, "unresolved_entities": unresolved, "score_flatness": flatness,
        "conflict": conflict, "question_type": classify(query).as_str(),
    });
    (a.clamp(0.0, 1.0), detail)
}

#[cfg(test)]
mod how_tests {
    use super::*;

    #[test]
    fn a_how_question_needs_a_sentence_that_names_a_means() {
        let q = "How do I build an index without locking out writes to the table?";
        assert!(asks_how(q) && !asks_how("How many bytes does a bigint take?"));
        assert!(!names_a_means(
            "Creating an index can interfere with regular operation of a database.",
            q
        ));
        assert!(names_a_means(
            "With the `CONCURRENTLY` option, the server builds the index without taking locks that prevent writes.",
            q
        ));
        // A code span the question already names is not a means.
        assert!(!names_a_means("An `index` is built by scanning the table.", q));
    }
}
