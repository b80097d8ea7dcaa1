//! The features of one candidate's evidence that read the question and the
//! passage's text (what [`super::judge::judge_all`] weighs): how much of the
//! asking sentence the evidence covers, how near the answer stands to the
//! asked words, whether its shape is the kind asked for, which definition
//! its sentence falls under, and how much of its own name the question
//! holds. Pure functions of text, true of any manual.

use super::{Evidence, described_term, governing};
use crate::verify::rag::Passage;
use crate::verify::rag::checks::{asks_how, names_a_means, presents_program, states_default};
use crate::verify::rag::question::QuestionType;
use crate::verify::rag::text::content_words;

/// Share of the asking sentence's content words that `text` holds.
pub(super) fn coverage(asked: &[String], text: &str) -> f64 {
    if asked.is_empty() {
        return 0.0;
    }
    let words = content_words(text);
    asked.iter().filter(|w| words.contains(w)).count() as f64 / asked.len() as f64
}

/// How close `answer` stands to the asking sentence's words in its
/// sentence: 1 / (1 + the number of words between it and the nearest one;
/// 0 when the sentence holds none). Candidates of one sentence share its
/// similarity; the one the question's words stand by is likelier meant.
pub(super) fn proximity(asked: &[String], sentence: &str, answer: &str) -> f64 {
    static WORD: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"[\w]+").expect("valid regex"));
    let (lower, answer) = (sentence.to_lowercase(), answer.to_lowercase());
    let words: Vec<(usize, usize, bool)> = WORD
        .find_iter(&lower)
        .map(|m| {
            let hit = content_words(m.as_str()).first().is_some_and(|c| asked.contains(c));
            (m.start(), m.end(), hit)
        })
        .collect();
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    // Every occurrence of the answer as a whole word (`on`, not the `on` of
    // `option`); the nearest asked word to any of them.
    lower
        .match_indices(&answer)
        .filter(|(at, _)| {
            let end = at + answer.len();
            !lower[..*at].ends_with(word_char) && !lower[end..].starts_with(word_char)
        })
        .filter_map(|(at, _)| {
            let end = at + answer.len();
            let before = words.iter().filter(|w| w.1 <= at).rev().position(|w| w.2);
            let after = words.iter().filter(|w| w.0 >= end).position(|w| w.2);
            before.into_iter().chain(after).min()
        })
        .min()
        .map_or(0.0, |d| 1.0 / (1.0 + d as f64))
}

/// Whether `answer` has the shape the kind the asking sentence names has in
/// software generally: an option starts with `-`, an environment variable
/// is in capitals (`PYTHONPATH`), a class or exception is CamelCase
/// (`ValueError`), a module or function is lower case. 1: it has; -1: it
/// has not; 0: the kind asked has no such shape.
pub(super) fn shape_fit(asking: &str, answer: &str) -> f64 {
    static KIND: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        // The kind the question asks for: the noun after "which" / "what"
        // ("which option", "what's the datetime method"), not any word.
        regex::Regex::new(concat!(
            r"(?i)\b(?:which|what(?:'s|\s+is|\s+are)?(?:\s+the)?|is\s+there\s+an?|i\s+(?:need|want)\s+an?)\s+(?:[\w.-]+\s+){0,3}?",
            r"(?:(options?|flags?|switch(?:es)?|arguments?)|((?:environment|env|shell)\s+var(?:iable)?s?)|",
            r"(class(?:es)?|exceptions?|errors?)|(modules?|packages?|functions?|methods?))\b"
        ))
            .expect("valid regex")
    });
    let Some(c) = KIND.captures(asking) else {
        return 0.0;
    };
    let name = answer.trim().trim_end_matches("()");
    let last = name.rsplit(['.', ':']).next().unwrap_or(name);
    let fits = if c.get(1).is_some() {
        name.starts_with('-')
    } else if c.get(2).is_some() {
        name.chars().any(|ch| ch.is_ascii_uppercase())
            && name
                .chars()
                .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_')
    } else if c.get(3).is_some() {
        last.starts_with(|ch: char| ch.is_ascii_uppercase()) && last.chars().any(|ch| ch.is_ascii_lowercase())
    } else {
        !name.is_empty() && !name.contains(' ') && name.chars().all(|ch| !ch.is_ascii_uppercase())
    };
    if fits { 1.0 } else { -1.0 }
}

/// Whether a definition `sentence` falls under in `passage` ([`governing`])
/// is one of `named`, the asking sentence's entities: 1 one is, -1 only
/// others' are (the default of a neighbouring setting), 0 no definition
/// line precedes it or the question names nothing.
pub(super) fn subject(named: &[String], passage: &Passage, sentence: &str) -> f64 {
    if named.is_empty() {
        return 0.0;
    }
    let terms = governing(passage, sentence);
    if terms.iter().any(|t| named.contains(&t.to_lowercase())) {
        1.0
    } else if terms.is_empty() {
        0.0
    } else {
        -1.0
    }
}

/// Whether a name question's `answer` is the term whose definition its
/// `sentence` falls under in `passage`: 1 it is (the manual defines it
/// there), -1 only others' (the answer is mentioned in a neighbour's
/// description), 0 no definition line precedes it.
pub(super) fn governs(passage: &Passage, sentence: &str, answer: &str) -> f64 {
    let answer = answer.trim().trim_end_matches("()");
    let terms = governing(passage, sentence);
    if terms.iter().any(|t| t.eq_ignore_ascii_case(answer)) {
        1.0
    } else if terms.is_empty() {
        0.0
    } else {
        -1.0
    }
}

/// Whether `ev`'s sentence presents `answer` as what a question of type
/// `t` asks for.
pub(super) fn presented(query: &str, t: QuestionType, answer: &str, ev: &Evidence<'_>) -> bool {
    match t {
        QuestionType::Default => states_default(&ev.passage.text, answer),
        QuestionType::Program => presents_program(ev.passage, answer),
        // Read with the term it describes (`compose`), the sentence names it.
        QuestionType::Free if asks_how(query) => offers_a_means(query, ev),
        _ => true,
    }
}

/// Words naming the kind of answer asked for (`which error`, `what
/// function`): they say what kind, not which.
const KIND_NOUNS: &[&str] = &[
    "error",
    "exception",
    "function",
    "option",
    "setting",
    "parameter",
    "variable",
    "module",
    "class",
    "method",
    "command",
    "flag",
];

/// The words of `query` a name's parts are matched against
/// ([`name_parts`]): its content words, less the kind noun each
/// `which`/`what` asks for (the first of the three words after it that is
/// one: "which server variable"), once each, so "which error is raised on
/// a timeout?" does not hold `Error` of `TimeoutError`, while "which
/// variable stops at the first error?" still holds `ON_ERROR_STOP`'s.
pub(super) fn name_words(query: &str) -> Vec<String> {
    static ASKED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b(?:which|what)\b((?:\W+\w+){1,3})").expect("valid regex")
    });
    let is_kind = |w: &str| {
        KIND_NOUNS
            .iter()
            .any(|k| w == *k || w.strip_suffix('s') == Some(k) || w.strip_suffix("es") == Some(k))
    };
    let mut words = content_words(query);
    for c in ASKED.captures_iter(query) {
        let kind = c[1]
            .split(|ch: char| !ch.is_alphanumeric())
            .map(str::to_lowercase)
            .find(|w| is_kind(w));
        if let Some(stemmed) = kind.and_then(|w| content_words(&w).pop())
            && let Some(at) = words.iter().position(|w| *w == stemmed)
        {
            words.remove(at);
        }
    }
    words
}

/// Whether `ev`'s sentence answers a "how" question with a means the
/// question does not name: it names one ([`names_a_means`]), or, read with
/// the term it describes ([`described_term`], as `compose` answers it), is
/// about one. The one rule of the span check and of `presented`.
pub(crate) fn offers_a_means(query: &str, ev: &Evidence<'_>) -> bool {
    names_a_means(&ev.sentence, query)
        || described_term(ev.passage, &ev.sentence).is_some_and(|t| !query.to_lowercase().contains(&t.to_lowercase()))
}

/// How much of a name's own words `asked` ([`name_words`]) holds: the
/// share of `answer`'s parts, split at `_`, `.`, `-`, `:`, `/` and where a
/// lower-case letter meets a capital (`TimeoutError`: `timeout`, `error`),
/// that a question word is, is part of (`octet`, `octets`) or is in
/// (`walfile` holds `file`); a word of three letters only as itself (`set`
/// is not in `offset`). The share is taken over one more than the parts,
/// so a longer name whose every part is asked for (`db_walfile_name_offset`,
/// `db` being too short to count) outweighs its shorter prefix
/// (`db_walfile_name`). 0 for a name with no part of three letters.
pub(super) fn name_parts(asked: &[String], answer: &str) -> f64 {
    static CASE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"([a-z0-9])([A-Z])").expect("valid regex"));
    let name = answer.trim().trim_end_matches("()");
    let spaced = CASE.replace_all(name, "$1 $2").replace(['_', '.', '-', ':', '/'], " ");
    let mut parts = content_words(&spaced);
    parts.dedup();
    if parts.is_empty() {
        return 0.0;
    }
    let holds = |p: &String| {
        asked
            .iter()
            .any(|w| w == p || (w.len() >= 4 && p.contains(w.as_str())) || (p.len() >= 4 && w.contains(p.as_str())))
    };
    parts.iter().filter(|p| holds(p)).count() as f64 / (parts.len() + 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::rag::text::entities;

    #[test]
    fn proximity_and_shape_tell_apart_the_candidates_of_one_sentence() {
        let asked = content_words("which option sorts the keys?");
        let s = "Use --indent to pretty-print and --sort-keys to sort the output by key.";
        assert!(proximity(&asked, s, "--sort-keys") > proximity(&asked, s, "--indent"));
        assert_eq!(proximity(&asked, "nothing here", "here"), 0.0);
        assert_eq!(shape_fit("Which option sorts the keys?", "--sort-keys"), 1.0);
        assert_eq!(shape_fit("Which option sorts the keys?", "json.dumps"), -1.0);
        assert_eq!(
            shape_fit("which environment variable sets the path?", "PYTHONPATH"),
            1.0
        );
        assert_eq!(shape_fit("which exception is raised?", "ValueError"), 1.0);
        assert_eq!(shape_fit("which exception is raised?", "os.error"), -1.0);
        assert_eq!(shape_fit("which setting controls it?", "wal_level"), 0.0);
        // The kind is the one asked for, a whole word.
        assert_eq!(
            shape_fit("When an error occurs, which setting logs it?", "log_min_messages"),
            0.0
        );
        assert_eq!(shape_fit("which optional argument sorts?", "--sort"), 1.0);
        assert_eq!(shape_fit("how do I classify it?", "classify"), 0.0);
        // A whole word: the `on` of `option` is not `on`.
        assert_eq!(
            proximity(&content_words("the option"), "Turn the option on.", "on"),
            1.0
        );
        assert_eq!(
            proximity(&content_words("sort keys"), "The optional sort is on.", "on"),
            0.5
        );
    }

    #[test]
    fn an_answer_is_weighed_by_the_definition_its_sentence_falls_under() {
        let passage = Passage {
            passage_id: "config.html#7".into(),
            document_id: "config.html".into(),
            title: "Settings".into(),
            score: 0.5,
            text: "`cache_size` (`integer`)\nThe size of the cache. The default value is 8.\n`cache_age` (`integer`)\nHow long an entry is kept. The default value is 60.".into(),
            lexical: None,
            similarity: None,
            defines: None,
        };
        let named = entities("What is the default value of cache_age?");
        assert_eq!(subject(&named, &passage, "The default value is 60."), 1.0);
        assert_eq!(
            subject(&named, &passage, "The default value is 8."),
            -1.0,
            "the default of the setting defined before it"
        );
        assert_eq!(subject(&[], &passage, "The default value is 8."), 0.0);
        // A heading is not a definition; a sentence that stands under two
        // definitions is about either.
        let mut two = passage.clone();
        two.text = "Notes\nThe default is `off`.\n`cache_sync` (`boolean`)\nSyncs. The default is `off`.".into();
        assert_eq!(subject(&named, &two, "Syncs."), -1.0);
        assert_eq!(
            subject(&entities("the default of cache_sync?"), &two, "The default is `off`."),
            1.0
        );
        two.text = "Notes\nThe default is `off`.".into();
        assert_eq!(
            subject(&named, &two, "The default is `off`."),
            0.0,
            "under a heading only"
        );
        // A name question: the answer is the term its sentence defines, or a
        // word in another's description; a definition line joined with the
        // sentence after it (as `locate` gives it) is found too.
        let joined = "`cache_age` (`integer`) How long an entry is kept.";
        assert_eq!(governs(&passage, joined, "cache_age"), 1.0);
        assert_eq!(governs(&passage, "The size of the cache.", "cache_age"), -1.0);
        assert_eq!(governs(&passage, "not in the passage", "cache_age"), 0.0);
    }

    #[test]
    fn a_name_is_weighed_by_how_much_of_it_the_question_asks_for() {
        let asked = content_words("I need the WAL file name and the byte offset for a location");
        let long = name_parts(&asked, "log_walfile_name_offset()");
        let short = name_parts(&asked, "log_walfile_name");
        assert!(long > short, "{long} vs {short}");
        // A prefix too short to count does not tie the pair.
        let long = name_parts(&asked, "db_walfile_name_offset()");
        let short = name_parts(&asked, "db_walfile_name");
        assert!(long > short, "{long} vs {short}");
        let asked = name_words("which exception is raised when the call times out?");
        assert_eq!(
            name_parts(&asked, "TimeoutError"),
            1.0 / 3.0,
            "`timeout` holds `time`; `error` is not asked"
        );
        let asked = name_words("which error is raised on a timeout?");
        assert_eq!(
            name_parts(&asked, "TimeoutError"),
            1.0 / 3.0,
            "`error` names the kind asked for, not which"
        );
        let asked = name_words("Which psql variable stops a script at the first error?");
        assert_eq!(
            name_parts(&asked, "ON_ERROR_STOP"),
            2.0 / 3.0,
            "here `error` is what is asked about"
        );
        assert!(!name_words("Which classes are there?").contains(&"class".to_string()));
        let asked = name_words("It stops there. Which Python error is raised on a timeout?");
        assert_eq!(name_parts(&asked, "TimeoutError"), 1.0 / 3.0, "a modifier between");
        assert_eq!(name_parts(&asked, "--jobs"), 0.0);
        assert_eq!(name_parts(&asked, "-j"), 0.0, "no part of three letters");
        assert_eq!(
            name_parts(&content_words("count the octets"), "octet_length"),
            1.0 / 3.0
        );
    }
}
