//! Extractive answering: instead of letting a small model write an answer,
//! the orchestrator offers it the spans of the retrieved passages that fit
//! the question's type (names, numbers, commands, or whole sentences for a
//! free-form question), the model scores them as labels, and the answer is
//! composed from the chosen span and the sentence it comes from, cited.
//!
//! A 135M-parameter model cannot write a reliable sentence, but it can rank
//! a handful of real spans by likelihood; whatever it picks is then a real
//! span of a real passage, and the verifiers judge the choice.

use super::Retrieval;
use super::question::{QuestionType, classify};
use super::spans::{bare_word_number, has_asked_unit, spans};
use super::text::{contains_span, names_qualified};

mod evidence;
mod features;
pub mod fit;
pub mod judge;
pub mod lookup;
pub mod offline;
mod zero;
pub use evidence::{Evidence, close_alternative, compose, lead, locate, margin, rival};
pub(crate) use evidence::{described_term, governing};
pub(crate) use features::offers_a_means;
pub use zero::{ZeroChoice, tier_zero};

/// What an extraction answers when it found nothing (a model given free
/// text, or a recorded answer); never offered as a candidate: measured on
/// the dev questions, the local models chose it for answers they had in
/// front of them, and refusals come from the floors and the critic instead.
pub const NO_ANSWER: &str = "none of these";
/// Most candidates offered.
pub const MAX_CANDIDATES: usize = 24;
/// Candidates come from this many of the sentences most similar to the question.
pub const EVIDENCE_SENTENCES: usize = 12;
/// A free-form question is answered by one of this many sentences.
pub const SENTENCE_CANDIDATES: usize = 6;

/// The retrieval's sentences, most similar to the question first (in
/// ranking order without embeddings), at most `n`.
fn best_sentences(r: &Retrieval, n: usize) -> Vec<(String, String, Option<f32>)> {
    let mut all = r.scored_sentences();
    // Stable: without similarities the ranking order stays.
    all.sort_by(|a, b| b.2.unwrap_or(0.0).total_cmp(&a.2.unwrap_or(0.0)));
    all.truncate(n);
    all
}

/// The annotations of the retrieval's definition lines: every code span
/// after the name a line defines (its type, arguments, return type:
/// `` `wal_level` (`enum`) ``, `` `copy` ( `src` `dst` ) → `path` ``) — in
/// any manual, what a definition says about its name, never the name a
/// question asks for, unless it is defined itself.
fn annotations(r: &Retrieval) -> Vec<String> {
    static CODE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"`([^`\n]{1,80})`").expect("valid regex"));
    let mut out: Vec<String> = Vec::new();
    for p in &r.passages {
        for s in super::text::sentences(&p.text) {
            let first = s.split('|').next().unwrap_or(&s);
            if term_of(first).is_none() {
                continue;
            }
            for c in CODE.captures_iter(first).skip(1) {
                let a = c[1].trim().to_lowercase();
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// Most sentences of one definition block taken as evidence.
const DEFINITION_SENTENCES: usize = 12;

/// Where the definition whose line is `ss[start]` ends: at the next line
/// that introduces a name ([`term_of`]), or with the passage.
pub(super) fn definition_end(ss: &[String], start: usize) -> usize {
    ss.get(start + 1..)
        .and_then(|rest| rest.iter().position(|s| term_of(s).is_some()))
        .map_or(ss.len(), |k| start + 1 + k)
}

/// The name a definition line introduces, when `sentence` is one: a line
/// that is a name alone, or a name followed by its type or arguments
/// (`` `wal_level` (`enum`) ``, `` `cancel_backend` ( `pid` `integer` ) → `boolean` ``).
pub(super) fn term_of(sentence: &str) -> Option<String> {
    let plain = sentence.replace('`', "");
    let plain = plain.trim();
    let name = match plain.find(" (") {
        Some(i) => &plain[..i],
        None => plain,
    };
    let name = name.trim().trim_end_matches("()");
    let ok = !name.is_empty() && !name.contains(' ') && name.len() <= 64 && name.chars().any(char::is_alphabetic);
    ok.then(|| name.to_string())
}

/// Sentences in the order candidates are drawn from:
///
/// 1. what the question names (`shared_buffers`) introduces: from the
///    sentence that first names it in each retrieved passage, that sentence
///    and the three after it, or for a definition (a line that is the name
///    itself, as in `` `shared_buffers` (`integer`) ``) its whole block up
///    to the next definition — definitions first;
/// 2. the sentences most similar to the question, each with its neighbours
///    in the passage (a definition's name is often on the line before it,
///    its default in the sentence after it).
///
/// A question about a default takes sentences stating a default first.
fn evidence_order(query: &str, r: &Retrieval, t: QuestionType) -> Vec<String> {
    let by_passage: Vec<(&str, Vec<String>)> = r
        .passages
        .iter()
        .map(|p| (p.passage_id.as_str(), super::text::sentences(&p.text)))
        .collect();
    let sentences_of = |pid: &str| by_passage.iter().find(|(id, _)| *id == pid).map(|(_, ss)| ss);
    let mut ordered: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !ordered.iter().any(|o| o == s) {
            ordered.push(s.to_string());
        }
    };
    // Names specific enough to anchor on: settings, quoted or coded terms.
    let named: Vec<String> = super::text::entities(query)
        .into_iter()
        .filter(|e| e.contains('_') || e.contains(' ') || e.chars().any(|c| c.is_ascii_digit()))
        .collect();
    let mut blocks: Vec<(bool, &[String])> = Vec::new();
    for (_, ss) in &by_passage {
        for e in &named {
            if let Some(i) = ss.iter().position(|s| super::text::mentions(s, e)) {
                let defines = term_of(&ss[i]).is_some_and(|t| t.eq_ignore_ascii_case(e));
                // A definition runs to the next definition line (its default
                // is often its last sentence); a mention, three sentences on.
                let end = if defines {
                    definition_end(ss, i).min(i + DEFINITION_SENTENCES)
                } else {
                    i + 4
                };
                blocks.push((defines, &ss[i..end.min(ss.len())]));
            }
        }
    }
    blocks.sort_by_key(|(defines, _)| !defines);
    for (_, block) in &blocks {
        for s in block.iter() {
            push(s);
        }
    }
    // Headings ("Write Ahead Log", "19.5.") look like the question but
    // state nothing; a short line that holds a name of the kind asked is a
    // definition's term line (`` `ConnectionRefusedError` (exception) ``,
    // `` `--skip-locked` ``), the name itself.
    let names = t.wants_name() || t == QuestionType::Command;
    let best: Vec<_> = best_sentences(r, EVIDENCE_SENTENCES + 8)
        .into_iter()
        .filter(|(_, s, _)| s.split_whitespace().count() >= 4 || (names && !spans(s, t).is_empty()))
        .take(EVIDENCE_SENTENCES)
        .collect();
    for (pid, s, _) in &best {
        let ss = sentences_of(pid);
        let i = ss.and_then(|ss| ss.iter().position(|x| x == s));
        let prev = i.and_then(|i| i.checked_sub(1)).and_then(|i| ss?.get(i));
        let next = i.and_then(|i| ss?.get(i + 1));
        if names && let Some(p) = prev {
            push(p);
        }
        push(s);
        if let Some(n) = next {
            push(n);
        }
        if !names && let Some(p) = prev {
            push(p);
        }
    }
    if wants_default(query, t) {
        // Stable: sentences that state a default first, in the order above.
        ordered.sort_by_key(|s| !s.to_lowercase().contains("default"));
    }
    ordered
}

/// The names retrieval's passages define: their definition lines, and the
/// titles that are a name (a reference page such as `COPY` or `tar`).
pub(crate) fn defined_terms(r: &Retrieval) -> Vec<String> {
    let titles = r.passages.iter().filter_map(|p| {
        // "20.5. Write Ahead Log" is a section, "COPY" or "tar" a name.
        let t = p
            .title
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim();
        (!t.is_empty() && (t.split_whitespace().count() == 1 || t.chars().all(|c| !c.is_lowercase())))
            .then(|| t.to_string())
    });
    r.passages
        .iter()
        .flat_map(|p| super::text::sentences(&p.text))
        .filter_map(|s| definition_term(&s))
        .chain(titles)
        .collect()
}

/// The name `sentence` defines, when it is a definition line in code (a
/// `` `name` (`type`) `` line, a definition list's term, a reference row,
/// whose subject is its first cell), not a heading or a word of prose.
pub(crate) fn definition_term(sentence: &str) -> Option<String> {
    if !(sentence.contains('`') || sentence.ends_with(')')) {
        return None;
    }
    term_of(sentence.split('|').next().unwrap_or(sentence))
}

/// Whether an answer to `query` (of type `t`) is likelier a stated default:
/// the query says "default", and it is not a value question merely naming
/// one (`default_toast_compression`, "the default is too slow").
fn wants_default(query: &str, t: QuestionType) -> bool {
    t != QuestionType::Value && query.to_lowercase().contains("default")
}

/// The candidates a model chooses among for `query`: spans of the type the
/// question asks for, drawn from the sentences most similar to it and their
/// neighbours (in that order), without the question's own words or the docs'
/// type annotations; the sentences themselves when none fits; then
/// [`NO_ANSWER`].
pub fn candidates(query: &str, r: &Retrieval) -> Vec<String> {
    let t = classify(query);
    let mut out: Vec<String> = Vec::new();
    let terms = defined_terms(r);
    let annotated = annotations(r);
    if t != QuestionType::Free {
        let wants_default = wants_default(query, t);
        // A setting's name is not its value: a value question skips the names defined.
        let value = matches!(t, QuestionType::Default | QuestionType::Number | QuestionType::Value);
        for s in evidence_order(query, r, t) {
            let mut found = spans(&s, t);
            if wants_default {
                stated_default_first(&s, &mut found);
            }
            if t == QuestionType::Default {
                // A bare word number ("one lock per …") is a default only
                // where its sentence says so ("the default is eight").
                found.retain(|span| !bare_word_number(span) || states_default(&s, span));
            }
            if t == QuestionType::Value {
                // "one of …" is a pronoun, not a value.
                found.retain(|span| !bare_word_number(span));
            }
            for span in found {
                let repeat = out.iter().any(|o| o.eq_ignore_ascii_case(&span));
                let defined = terms.iter().any(|x| x.eq_ignore_ascii_case(&span));
                let annotation = (t != QuestionType::DataType && !defined && annotated.contains(&span.to_lowercase()))
                    || (value && defined);
                // An answer that repeats the question's own words answers nothing.
                let own = contains_span(query, &span) || names_qualified(query, &span);
                if !repeat && !annotation && !own {
                    out.push(span);
                }
            }
        }
    }
    if matches!(t, QuestionType::Number | QuestionType::Default | QuestionType::Value) {
        // "How much memory": an amount with its unit (`64MB`) before a bare
        // number, and never "one" alone; "how many" keeps every number.
        let unit = |c: &String| has_asked_unit(query, c);
        if unit(&String::new()).is_some() {
            out.retain(|c| unit(c) == Some(true) || !bare_word_number(c));
            out.sort_by_key(|c| unit(c) != Some(true));
        }
    }
    if t.wants_name() || t == QuestionType::Command {
        // A name the passages define is likelier the answer than a value in
        // a definition (`wal_level` before `replica`); a question asking for
        // an option is answered by an option (`--jobs`, `-X importtime`).
        // Stable.
        let option = asks_option(query);
        out.sort_by_key(|c| {
            (
                option && !c.starts_with('-'),
                !terms.iter().any(|t| t.eq_ignore_ascii_case(c)),
            )
        });
    }
    if out.is_empty() {
        out.extend(best_sentences(r, SENTENCE_CANDIDATES).into_iter().map(|(_, s, _)| s));
    }
    out.truncate(MAX_CANDIDATES);
    out
}

/// Whether the question asks for a command-line option (an option, flag,
/// switch or argument).
fn asks_option(query: &str) -> bool {
    let asking = super::question::asking_sentence(query).to_lowercase();
    ["option", "flag", "switch", "argument"]
        .iter()
        .any(|w| asking.contains(w))
}

/// "the default <name> is" (backticks removed, lower case), at the end of
/// the text before a value.
static DEFAULT_OF: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"\bdefault\s+(?:value\s+)?(?:of\s+)?[\w.]+\s+is$").expect("valid regex")
});

/// Whether `sentence` states `span` as the default ("The default is
/// `replica`", "defaults to 64 megabytes", "`on` (the default)").
fn states_default(sentence: &str, span: &str) -> bool {
    let lower = sentence.to_lowercase().replace('`', "");
    let s = span.to_lowercase();
    lower.match_indices(&s).any(|(i, _)| {
        let before = lower[..i].trim_end_matches([' ', '(', '"']);
        let after = lower[i + s.len()..].trim_start();
        [
            "default is",
            "defaults to",
            "default value is",
            "default of",
            "default:",
            "default is typically",
        ]
        .iter()
        .any(|p| before.ends_with(p))
            || ["(the default)", "by default", "is the default", "(which is the default)", ", which is the default"]
                .iter()
                .any(|p| after.starts_with(p))
            // "The default `commit_delay` is zero": the default of a name.
            || DEFAULT_OF.is_match(before)
    })
}

/// Puts the span `sentence` states as the default first.
fn stated_default_first(sentence: &str, spans: &mut Vec<String>) {
    if let Some(k) = spans.iter().position(|span| states_default(sentence, span)) {
        let s = spans.remove(k);
        spans.insert(0, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::rag::{Passage, Sentence, check_answer, check_answer_type};

    fn retrieval() -> Retrieval {
        let p = |id: &str, text: &str| Passage {
            passage_id: id.into(),
            document_id: id.split('#').next().unwrap().into(),
            title: "19.5. Write Ahead Log".into(),
            score: 0.5,
            text: text.into(),
            lexical: None,
            similarity: None,
            defines: None,
        };
        let s = |id: &str, text: &str, similarity: f32| Sentence {
            passage_id: id.into(),
            text: text.into(),
            similarity,
        };
        Retrieval {
            terms: "q".into(),
            mode: "hybrid".into(),
            passages: vec![
                p(
                    "wal.html#1",
                    "`wal_level` determines how much information is written to the WAL. The default value is `replica`.",
                ),
                p(
                    "wal.html#0",
                    "Write-Ahead Logging (WAL) is a standard method for ensuring data integrity.",
                ),
            ],
            sentences: vec![
                s(
                    "wal.html#1",
                    "`wal_level` determines how much information is written to the WAL.",
                    0.81,
                ),
                s(
                    "wal.html#0",
                    "Write-Ahead Logging (WAL) is a standard method for ensuring data integrity.",
                    0.55,
                ),
                s("wal.html#1", "The default value is `replica`.", 0.30),
            ],
        }
    }

    #[test]
    fn candidates_are_typed_spans_of_the_best_sentences() {
        let r = retrieval();
        let q = "Which setting controls how much information is written to the WAL?";
        assert_eq!(candidates(q, &r), vec!["wal_level", "replica"]);
        // The question's own words are no answer.
        assert_eq!(
            candidates("What is the default value of wal_level?", &r),
            vec!["replica"]
        );
        let free = candidates("Why do we log changes before writing them?", &r);
        assert_eq!(free.len(), 3, "{free:?}");
        assert!(free[0].starts_with("`wal_level` determines"));
    }

    #[test]
    fn names_that_differ_by_a_part_are_close_alternatives() {
        let c = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let q = "Which setting terminates a session?";
        let labels = c(&[
            "idle_session_timeout",
            "idle_in_transaction_session_timeout",
            "statement_timeout",
        ]);
        assert_eq!(
            close_alternative(q, "idle_session_timeout", &labels),
            Some("idle_in_transaction_session_timeout")
        );
        let labels = c(&["log_min_duration_statement", "log_min_duration_sample"]);
        assert_eq!(
            close_alternative(q, "log_min_duration_statement", &labels),
            Some("log_min_duration_sample")
        );
        // Short names a part apart are different names; values never count.
        let labels = c(&[
            "seq_page_cost",
            "random_page_cost",
            "db_dump",
            "db_basebackup",
            "wal_level",
        ]);
        assert_eq!(close_alternative(q, "seq_page_cost", &labels), None);
        assert_eq!(close_alternative(q, "db_basebackup", &labels), None);
        let labels = c(&["128 megabytes", "128 kilobytes"]);
        assert_eq!(
            close_alternative("What is the default value of shared_buffers?", "128 kilobytes", &labels),
            None
        );
        // A name with something appended is an alternative.
        let labels = c(&["macaddr8", "inet", "cidr", "macaddr"]);
        let q = "Which data type stores MAC addresses?";
        assert_eq!(close_alternative(q, "macaddr8", &labels), Some("macaddr"));
        let q = "Which function converts a location to a file name?";
        let labels = c(&["log_file_name_offset", "log_file_name", "lsn"]);
        assert_eq!(
            close_alternative(q, "log_file_name", &labels),
            Some("log_file_name_offset")
        );
        // A separate part appended makes another name.
        let labels = c(&["TimeZone", "timezone_abbreviations", "COPY", "COPY FROM"]);
        assert_eq!(
            close_alternative("Which setting sets the time zone?", "TimeZone", &labels),
            None
        );
        assert_eq!(close_alternative("Which command copies data?", "COPY", &labels), None);
    }

    #[test]
    fn a_default_stated_at_the_end_of_its_definition_is_found() {
        let text = "`autovacuum_vacuum_cost_delay` (`floating point`)\nSpecifies the cost delay value that will be used \
                    in automatic `VACUUM` operations. If -1 is specified, the regular vacuum_cost_delay value will be used. \
                    If this value is specified without units, it is taken as milliseconds. The default value is 2 milliseconds.\n\
                    `autovacuum_vacuum_cost_limit` (`integer`)\nSpecifies the cost limit value. The default value is -1.";
        let id = "runtime-config-autovacuum.html#7";
        // Embeddings scored the description, not the sentence of the default:
        // only the definition's block can bring that one in.
        let sentences = crate::verify::rag::text::sentences(text)
            .into_iter()
            .filter(|s| s.starts_with("Specifies the cost delay"))
            .map(|text| Sentence {
                passage_id: id.into(),
                text,
                similarity: 0.8,
            })
            .collect::<Vec<_>>();
        assert_eq!(sentences.len(), 1);
        let r = Retrieval {
            terms: String::new(),
            mode: "hybrid".into(),
            passages: vec![Passage {
                passage_id: id.into(),
                document_id: "runtime-config-autovacuum.html".into(),
                title: "20.10. Automatic Vacuuming".into(),
                score: 0.5,
                text: text.into(),
                lexical: None,
                similarity: None,
                defines: None,
            }],
            sentences,
        };
        let got = candidates("What is the default autovacuum_vacuum_cost_delay?", &r);
        assert_eq!(got.first().map(String::as_str), Some("2 milliseconds"), "{got:?}");
    }

    #[test]
    fn a_bare_word_number_is_a_default_only_where_it_is_stated_as_one() {
        let r = Retrieval {
            terms: String::new(),
            mode: "hybrid".into(),
            passages: vec![Passage {
                passage_id: "runtime-config-locks.html#1".into(),
                document_id: "runtime-config-locks.html".into(),
                title: "20.12. Lock Management".into(),
                score: 0.5,
                text: "`max_locks_per_transaction` (`integer`) The shared lock table has space for one lock per object. The default is 64.".into(),
                lexical: None,
                similarity: None,
                defines: None,
            }],
            sentences: Vec::new(),
        };
        let got = candidates("What is the default value of max_locks_per_transaction?", &r);
        assert!(!got.iter().any(|c| c == "one"), "{got:?}");
        assert_eq!(got.first().map(String::as_str), Some("64"));
        assert!(states_default("The default is eight.", "eight"));
        // The ways any manual states one.
        assert!(states_default(
            "Setting this parameter to zero (which is the default) disables it.",
            "zero"
        ));
        assert!(states_default("The default `commit_delay` is zero (no delay).", "zero"));
        assert!(!states_default("Setting it to zero disables it.", "zero"));
        let s = "The default is 50 million transactions.";
        assert!(
            spans(s, QuestionType::Default).contains(&"50 million".to_string()),
            "{:?}",
            spans(s, QuestionType::Default)
        );
    }

    #[test]
    fn definition_lines_name_their_term() {
        assert_eq!(term_of("`wal_level` (`enum`)").as_deref(), Some("wal_level"));
        assert_eq!(
            term_of("`cancel_backend` ( `pid` `integer` ) → `boolean`").as_deref(),
            Some("cancel_backend")
        );
        assert_eq!(term_of("`backend_pid` () → `integer`").as_deref(), Some("backend_pid"));
        assert_eq!(term_of("Sets the amount of memory."), None);
    }

    #[test]
    fn the_value_a_sentence_states_as_the_default_comes_first() {
        let mut spans: Vec<String> = ["128 kilobytes", "128MB", "8kB"].map(String::from).to_vec();
        stated_default_first(
            "The default is typically 128 megabytes (`128MB`), at least 128 kilobytes.",
            &mut spans,
        );
        assert_eq!(spans[0], "128 kilobytes", "no span follows `default is` directly");
        let mut spans: Vec<String> = ["scram-sha-256", "md5"].map(String::from).to_vec();
        stated_default_first(
            "Possible values are `scram-sha-256` and `md5`; the default is `md5`.",
            &mut spans,
        );
        assert_eq!(spans[0], "md5");
        let mut spans: Vec<String> = ["remote_apply", "on", "off"].map(String::from).to_vec();
        stated_default_first(
            "Valid values are `remote_apply`, `on` (the default), and `off`.",
            &mut spans,
        );
        assert_eq!(spans[0], "on");
    }

    #[test]
    fn a_composed_answer_is_cited_and_passes_the_answer_checks() {
        let r = retrieval();
        let q = "Which setting controls how much information is written to the WAL?";
        let a = compose(q, "wal_level", &r).unwrap();
        assert_eq!(
            a,
            "wal_level — `wal_level` determines how much information is written to the WAL. [wal.html#1]"
        );
        assert!(check_answer(&a, &r).is_empty(), "{:?}", check_answer(&a, &r));
        assert!(check_answer_type(&a, &r, q).is_none());
        assert!(compose(q, "fsync", &r).is_none(), "not in any passage");
        assert_eq!(locate("replica", &r).unwrap().similarity, Some(0.30));
    }
}
