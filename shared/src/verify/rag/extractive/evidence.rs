//! Judging a chosen span by where it comes from: the sentence and passage
//! that hold it ([`locate`]), how far it leads the best rival ([`margin`]),
//! whether another candidate names almost the same thing
//! ([`close_alternative`]), and the cited answer composed from it
//! ([`compose`]).

use super::{candidates, definition_term, term_of};
use crate::verify::rag::question::{QuestionType, classify};
use crate::verify::rag::text::{contains_span, sentences};
use crate::verify::rag::{Passage, Retrieval};

/// Where a chosen span comes from.
#[derive(Debug, Clone)]
pub struct Evidence<'a> {
    /// The passage.
    pub passage: &'a Passage,
    /// The sentence of the passage that holds the span.
    pub sentence: String,
    /// The sentence's similarity to the question, when embeddings ran.
    pub similarity: Option<f32>,
}

/// A candidate other than `chosen` that names almost the same thing: the
/// parts of one name (split at `_` and spaces) are all in the other, which
/// has more (`idle_session_timeout`, `idle_in_transaction_session_timeout`),
/// or two names of four parts or more differ in one part only
/// (`log_min_duration_sample`, `log_min_duration_statement`). Which of the
/// two a question means is for a model to judge, not for the evidence's
/// ranking alone. Names of two or three parts that differ in one
/// (`seq_page_cost`, `random_page_cost`) are simply different names. A
/// name that is another with a letter or digit appended (`macaddr` /
/// `macaddr8`) is an alternative too. Values
/// (`128 kilobytes`) are never alternatives in this sense.
pub fn close_alternative<'a>(query: &str, chosen: &str, candidates: &'a [String]) -> Option<&'a str> {
    // File names (`access.conf`, `access_ident.conf`) are not split into parts.
    let t = classify(query);
    if !t.wants_name() || t == QuestionType::File {
        return None;
    }
    let parts = |s: &str| -> Vec<String> {
        s.split(['_', ' '])
            .filter(|p| !p.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let mine = parts(chosen);
    candidates
        .iter()
        .filter(|c| !c.eq_ignore_ascii_case(chosen))
        .find(|c| {
            let theirs = parts(c);
            let (short, long) = if mine.len() <= theirs.len() {
                (&mine, &theirs)
            } else {
                (&theirs, &mine)
            };
            let within = short.len() >= 2 && long.len() > short.len() && short.iter().all(|p| long.contains(p));
            let one_apart = mine.len() >= 4
                && mine.len() == theirs.len()
                && mine.iter().zip(&theirs).filter(|(a, b)| a != b).count() == 1;
            // One name is the other with a letter or digit appended
            // (`macaddr`, `macaddr8`). A separate part appended
            // (`TimeZone`, `timezone_abbreviations`; `COPY`, `COPY FROM`)
            // makes another name, as the dev questions showed.
            let (a, b) = (chosen.to_lowercase(), c.to_lowercase());
            let (short, long) = if a.len() <= b.len() { (&a, &b) } else { (&b, &a) };
            let extended = short.len() >= 4
                && long.starts_with(short.as_str())
                && long[short.len()..].starts_with(|ch: char| ch.is_ascii_alphanumeric());
            within || one_apart || extended
        })
        .map(String::as_str)
}

/// Where `span` comes from: the sentence most similar to the question that
/// contains it, and its passage. A definition line that names the span
/// (`` `backend_pid` () → `integer` ``) is taken with the sentence after
/// it, which says what it is, and is as relevant as that sentence.
pub fn locate<'a>(span: &str, r: &'a Retrieval) -> Option<Evidence<'a>> {
    let scored = r.scored_sentences();
    let sim_of = |pid: &str, text: &str| {
        scored
            .iter()
            .find(|(p, s, _)| p == pid && s == text)
            .and_then(|(_, _, sim)| *sim)
    };
    let mut best: Option<Evidence<'a>> = None;
    for p in &r.passages {
        let ss = sentences(&p.text);
        for (i, sentence) in ss.iter().enumerate() {
            if !contains_span(sentence, span) {
                continue;
            }
            let mut text = sentence.clone();
            let mut sim = sim_of(&p.passage_id, sentence);
            if term_of(sentence).is_some_and(|t| t.eq_ignore_ascii_case(span.trim_end_matches("()")))
                && let Some(next) = ss.get(i + 1)
            {
                text = format!("{} {}", sentence.trim(), next.trim());
                sim = match (sim, sim_of(&p.passage_id, next)) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            let better = best
                .as_ref()
                .is_none_or(|b| sim.unwrap_or(0.0) > b.similarity.unwrap_or(0.0));
            if better {
                best = Some(Evidence {
                    passage: p,
                    sentence: text,
                    similarity: sim,
                });
            }
        }
    }
    best
}

/// How much better the evidence for `span` is than the evidence for the
/// best other candidate from another sentence: the similarity to the question
/// of the one minus the other's. Small when the passages define two things
/// almost alike (`log_min_duration_sample` and `log_min_duration_statement`,
/// `inet` and `cidr`) and the question does not tell them apart. `None`
/// without similarities, or without a rival.
pub fn margin(query: &str, span: &str, r: &Retrieval) -> Option<f32> {
    let sim = locate(span, r)?.similarity?;
    lead(sim, rival(span, &candidates(query, r), r).as_ref())
}

/// How far a sentence scoring `sim` leads `rival`'s ([`margin`]).
pub fn lead(sim: f32, rival: Option<&(String, Evidence<'_>)>) -> Option<f32> {
    Some(sim - rival?.1.similarity?)
}

/// The one of `candidates` (the question's, [`candidates`]) other than
/// `span` whose sentence (another than `span`'s) is most similar to the
/// question, with its evidence.
pub fn rival<'a>(span: &str, candidates: &[String], r: &'a Retrieval) -> Option<(String, Evidence<'a>)> {
    let chosen = locate(span, r)?;
    candidates
        .iter()
        .filter(|c| !c.eq_ignore_ascii_case(span))
        .filter_map(|c| locate(c, r).map(|e| (c.clone(), e)))
        .filter(|(_, e)| e.sentence != chosen.sentence && e.similarity.is_some())
        .max_by(|a, b| a.1.similarity.unwrap_or(0.0).total_cmp(&b.1.similarity.unwrap_or(0.0)))
}

/// The answer composed from a chosen `span`: the span, then the sentence
/// that holds it with its citation (`wal_level — `wal_level` determines how
/// much information is written to the WAL. [runtime-config-wal.html#1]`); a
/// free-form question's answer is the cited sentence, after the term it
/// describes when it does not name it.
pub fn compose(query: &str, span: &str, r: &Retrieval) -> Option<String> {
    let ev = locate(span, r)?;
    let mut sentence = ev.sentence.trim().to_string();
    if !sentence.ends_with(['.', '!', '?']) {
        sentence.push('.');
    }
    let cite = &ev.passage.passage_id;
    if classify(query).wants_span() {
        return Some(format!("{} — {sentence} [{cite}]", span.trim()));
    }
    // "How do I dump without owners?" is answered by the option the
    // sentence describes ("Do not output commands to set ownership …").
    Some(match described_term(ev.passage, &ev.sentence) {
        Some(term) if !contains_span(&sentence, &term) => format!("`{term}` — {sentence} [{cite}]"),
        _ => format!("{sentence} [{cite}]"),
    })
}

/// How many sentences before it a description may stand from the term it
/// describes: the definition line, a first sentence, then this one.
const DESCRIBED_REACH: usize = 2;

/// The one term `sentence` describes in `passage`: the term of the nearest
/// definition line at or before it (a line that [`definition_term`] reads,
/// or any line opening with code), when that line is at most
/// [`DESCRIBED_REACH`] sentences back, is in code (holds a `` ` ``: a bare
/// `main()` line is not a definition), and its term is a plain name (no
/// brackets or separators, which would read as a citation); the same
/// wherever the sentence stands, else `None`.
pub(crate) fn described_term(passage: &Passage, sentence: &str) -> Option<String> {
    let (sentences, places) = places(passage, sentence);
    let of_line = |s: &String| {
        let term = definition_term(s);
        (term.is_some() || s.trim_start().starts_with('`')).then(|| {
            term.filter(|_| s.contains('`'))
                .map(|t| t.trim_end_matches([':', '.']).to_string())
                .filter(|t| !t.is_empty() && !t.contains(['[', ']', ';', ',']))
        })
    };
    let mut terms = places.into_iter().map(|at| {
        sentences[at.saturating_sub(DESCRIBED_REACH)..=at]
            .iter()
            .rev()
            .find_map(of_line)
            .flatten()
    });
    let first = terms.next()??;
    terms.all(|t| t.as_deref() == Some(first.as_str())).then_some(first)
}

/// The terms of the definitions `sentence` falls under in `passage`: for
/// each place it stands (a sentence such as "The default is `off`." may
/// repeat under several), the term of the nearest definition line
/// ([`definition_term`]) at or before it. An evidence sentence may be a
/// definition line joined with the sentence after it.
pub(crate) fn governing(passage: &Passage, sentence: &str) -> Vec<String> {
    let (sentences, places) = places(passage, sentence);
    places
        .into_iter()
        .filter_map(|at| sentences[..=at].iter().rev().find_map(|s| definition_term(s)))
        .collect()
}

/// `passage`'s sentences and the places `sentence` stands among them (it
/// may repeat; an evidence sentence may be a definition line joined with
/// the sentence after it, found at the line).
fn places(passage: &Passage, sentence: &str) -> (Vec<String>, Vec<usize>) {
    let sentences = sentences(&passage.text);
    let joined = |s: &str| sentence == s || sentence.starts_with(&format!("{} ", s.trim()));
    let places = (0..sentences.len()).filter(|&at| joined(&sentences[at])).collect();
    (sentences, places)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::rag::Sentence;

    fn one_passage(text: &str, sentence: &str) -> Retrieval {
        Retrieval {
            terms: "q".into(),
            mode: "hybrid".into(),
            passages: vec![Passage {
                passage_id: "app-dump.html#4".into(),
                document_id: "app-dump.html".into(),
                title: "db_dump".into(),
                score: 0.5,
                text: text.into(),
                lexical: None,
                similarity: None,
                defines: None,
            }],
            sentences: vec![Sentence {
                passage_id: "app-dump.html#4".into(),
                text: sentence.into(),
                similarity: 0.7,
            }],
        }
    }

    #[test]
    fn a_free_form_answer_is_read_with_the_term_its_sentence_describes() {
        let said = "Do not output commands to set ownership of objects.";
        let r = one_passage(
            &format!("`--no-owner`\n{said}\nUse this when restoring elsewhere."),
            said,
        );
        let q = "restores fail on the owner lines. how do I make a dump without ownership commands?";
        assert_eq!(classify(q), QuestionType::Free);
        assert_eq!(
            compose(q, said, &r).unwrap(),
            format!("`--no-owner` — {said} [app-dump.html#4]")
        );
        // A sentence that names its term already is left as it is.
        let named = "With `--no-owner` no ownership commands are written.";
        let r = one_passage(&format!("`--no-owner`\n{named}"), named);
        assert_eq!(compose(q, named, &r).unwrap(), format!("{named} [app-dump.html#4]"));
        // Prose far past a definition line, under a bare code line, or
        // under a nearer definition that is no plain name, describes no term.
        let far = format!("`--no-owner`\nOne. Two. Three. {said}");
        assert_eq!(
            compose(q, said, &one_passage(&far, said)).unwrap(),
            format!("{said} [app-dump.html#4]")
        );
        let call = format!("`--no-owner`\nmain()\n{said}");
        assert_eq!(
            compose(q, said, &one_passage(&call, said)).unwrap(),
            format!("{said} [app-dump.html#4]")
        );
    }
}
