//! Definitions worth fetching. A name question's retrieved passages often
//! mention the right name without defining it (`log_duration` named in
//! `log_min_duration_statement`'s description), while a rival's
//! definition was retrieved, so the rival's evidence is its definition and
//! the right name's a passing mention. Retrieval then fetches the passage
//! that defines each of the first few candidates that are only mentioned
//! ([`undefined_candidates`]), and scores the sentences of that definition
//! ([`definition_block`]), so every candidate is weighed by what the manual
//! says it is. Pure: the orchestrator runs the search.

use super::{candidates, defined_terms, definition_end, definition_term};
use crate::verify::rag::Retrieval;
use crate::verify::rag::question::classify;
use crate::verify::rag::text::sentences;

/// Most candidates whose definition one retrieval looks up.
pub const MAX_LOOKUPS: usize = 4;
/// Most definition passages added to one retrieval.
pub const MAX_DEFINITIONS: usize = 3;
/// Most sentences of a fetched definition scored against the question.
pub const BLOCK_SENTENCES: usize = 4;

/// The candidates of a name question over `r` that `r` does not define,
/// in the candidates' order, at most [`MAX_LOOKUPS`]: names a definition
/// line or a reference page's title could introduce (one to three words,
/// a call's `()` dropped: `log_duration`, `CREATE INDEX`, not a
/// sentence); empty for other questions.
pub fn undefined_candidates(query: &str, r: &Retrieval) -> Vec<String> {
    if !classify(query).wants_name() {
        return Vec::new();
    }
    let terms = defined_terms(r);
    let mut out: Vec<String> = Vec::new();
    for c in candidates(query, r) {
        let name = c.trim().trim_end_matches("()");
        let words = name.split_whitespace().count();
        let word = name.len() <= 64 && (words == 1 || (words <= 3 && !name.contains(['.', ',', ';', ':'])));
        let defined = terms.iter().any(|t| t.eq_ignore_ascii_case(name));
        if word && !defined && name != super::NO_ANSWER && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
        if out.len() == MAX_LOOKUPS {
            break;
        }
    }
    out
}

/// The sentences of the definition of `name` in a passage (`text`, under
/// `title`): from the definition line that introduces it to the next
/// definition line, or a reference page's opening when the page is the
/// name's (`title` is the name and the passage `opens` its page); at most
/// [`BLOCK_SENTENCES`]. `None`: the passage only mentions it.
pub fn definition_block(title: &str, text: &str, opens: bool, name: &str) -> Option<Vec<String>> {
    let all = sentences(text);
    let is_name = |t: &str| t.trim_end_matches("()").eq_ignore_ascii_case(name);
    let start = match all.iter().position(|s| definition_term(s).is_some_and(|t| is_name(&t))) {
        Some(at) => at,
        None if opens && is_name(title.trim()) && !all.is_empty() => 0,
        None => return None,
    };
    let end = definition_end(&all, start);
    Some(all[start..end].iter().take(BLOCK_SENTENCES).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::rag::{Passage, Sentence};

    fn retrieval(text: &str, best: &str) -> Retrieval {
        Retrieval {
            terms: String::new(),
            mode: "hybrid".into(),
            passages: vec![Passage {
                passage_id: "logging.html#3".into(),
                document_id: "logging.html".into(),
                title: "What to Log".into(),
                score: 1.0,
                text: text.into(),
                lexical: None,
                similarity: None,
                defines: None,
            }],
            sentences: vec![Sentence {
                passage_id: "logging.html#3".into(),
                text: best.into(),
                similarity: 0.8,
            }],
        }
    }

    #[test]
    fn a_name_question_looks_up_the_candidates_only_mentioned() {
        let text = "`log_min_duration_statement` (`integer`)\nLogs the duration of each statement that ran for at least this long. Unlike `log_duration`, it logs the statement's text.";
        let best = "Unlike `log_duration`, it logs the statement's text.";
        let r = retrieval(text, best);
        let q = "Which setting causes the duration of every completed statement to be logged?";
        assert_eq!(undefined_candidates(q, &r), ["log_duration"]);
        assert!(
            undefined_candidates("What is the default of log_min_duration_statement?", &r).is_empty(),
            "a value question weighs values, not names"
        );
    }

    #[test]
    fn a_definition_block_runs_to_the_next_definition() {
        let text = "Notes on logging.\n`log_duration` (`boolean`)\nCauses the duration of every completed statement to be logged. The default is `off`.\n`log_error_verbosity` (`enum`)\nControls the amount of detail.";
        let block = definition_block("What to Log", text, false, "log_duration").expect("defined");
        assert_eq!(block.len(), 3, "{block:?}");
        assert!(block[1].starts_with("Causes the duration"));
        assert!(definition_block("What to Log", text, false, "log_statement").is_none());
        assert!(
            definition_block(
                "Index",
                "`log_duration` configuration parameter, What to Log",
                true,
                "log_duration"
            )
            .is_none(),
            "an index entry mentions, it does not define"
        );
        let page = definition_block("COPY", "COPY — copy data between a file and a table", true, "COPY");
        assert_eq!(
            page.map(|b| b.len()),
            Some(1),
            "a reference page is its name's definition"
        );
        assert!(
            definition_block("COPY", "File Formats", false, "COPY").is_none(),
            "only where it opens its page"
        );
        assert!(definition_block("COPY", "", true, "COPY").is_none());
    }
}
