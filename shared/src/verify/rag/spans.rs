//! Spans of text that can answer a typed question: code spans (`` `…` ``,
//! which the ingest keeps from HTML `<code>` and Markdown), SQL commands
//! in capitals, file names, numbers with their units, and quoted phrases.
//!
//! [`spans`] finds the spans of one sentence that fit a question type;
//! [`fits`] tells whether a given span does. Both are shape rules: the
//! extractive step lets a model choose among the spans, and the answer-type
//! verifier checks that an answer names one.

use super::question::QuestionType;
use regex::Regex;
use std::sync::LazyLock;

static CODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"`([^`\n]{1,80})`").expect("valid regex"));
static IDENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?$").expect("valid regex"));
static SNAKE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b").expect("valid regex"));
static COMMAND: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Z][A-Z_]+(?: [A-Z][A-Z_]+){0,3}$").expect("valid regex"));
/// Capitalised SQL keywords in running text, one to four words.
static CAPS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[A-Z]{3,}(?: [A-Z]{2,}){0,3}\b").expect("valid regex"));
static FILE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[A-Za-z0-9_\-/]*[A-Za-z0-9_]\.(?:conf|sql|txt|json|log|html|csv|h|c|so|pid|signal)\b")
        .expect("valid regex")
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:^|[^\w.])(-?\d[\d,]*(?:\.\d+)?(?:\s?(?:kB|MB|GB|TB|bytes?|ms|min|h|d|s|%|(?:milli)?seconds?|minutes?|hours?|days?|(?:kilo|mega|giga|tera)bytes?))?)(?:[^\w]|$)",
    )
    .expect("valid regex")
});
static WORD_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:one|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty|thirty|sixty|hundred)(?:\s(?:(?:milli)?seconds?|minutes?|hours?|days?|(?:kilo|mega|giga)bytes?))?\b",
    )
    .expect("valid regex")
});
static QUOTED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"[“"]([^”"\n]{2,40})[”"]"#).expect("valid regex"));

/// SQL words that are too generic to be an answer on their own.
const GENERIC: &[&str] = &[
    "SQL", "NULL", "TRUE", "FALSE", "AND", "NOT", "FOR", "THE", "ALL", "ANY", "ONLY", "WITH", "FROM", "TABLE", "INTO",
    "SET", "TO", "DEFAULT", "ON", "OFF", "OR", "IS", "AS", "BY",
];

/// Whether `s` is a plausible identifier: a setting, function, program or type name.
fn identifier(s: &str) -> bool {
    IDENT.is_match(s) && s.len() >= 2 && !s.chars().all(|c| c.is_ascii_digit())
}

/// Whether `s` reads as an SQL command (capitals, up to four words).
fn command(s: &str) -> bool {
    COMMAND.is_match(s) && !GENERIC.contains(&s)
}

/// Whether `s` reads as a value: a number (with unit), or a short literal.
fn value(s: &str) -> bool {
    NUMBER.is_match(s) || WORD_NUMBER.is_match(s) || (s.len() <= 40 && !s.contains('\n'))
}

/// Whether `span` fits question type `t` by its shape.
pub fn fits(span: &str, t: QuestionType) -> bool {
    let s = span.trim().trim_matches('`').trim_end_matches("()").trim();
    if s.is_empty() {
        return false;
    }
    match t {
        QuestionType::Setting | QuestionType::Program | QuestionType::DataType => {
            identifier(s) && !command(s) && !FILE.is_match(s)
        }
        QuestionType::Function => identifier(s) && !command(s),
        QuestionType::Command => command(s),
        QuestionType::File => FILE.is_match(s),
        QuestionType::Number => NUMBER.is_match(s) || WORD_NUMBER.is_match(s),
        QuestionType::Default => value(s),
        QuestionType::Free => true,
    }
}

/// The spans of `sentence` that fit question type `t`, in order of
/// appearance, without repeats (code spans without their backticks).
pub fn spans(sentence: &str, t: QuestionType) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        let s = s.trim().trim_end_matches(['.', ',', ';', ':']).trim();
        if !s.is_empty() && fits(s, t) && !out.iter().any(|o| o.eq_ignore_ascii_case(s)) {
            out.push(s.to_string());
        }
    };
    match t {
        QuestionType::Free => push(sentence),
        QuestionType::Setting | QuestionType::Program | QuestionType::DataType | QuestionType::Function => {
            for c in CODE.captures_iter(sentence) {
                push(c[1].trim_end_matches("()"));
            }
            if t != QuestionType::DataType {
                for m in SNAKE.find_iter(&CODE.replace_all(sentence, " ")) {
                    push(m.as_str());
                }
            }
        }
        QuestionType::Command => {
            for c in CODE.captures_iter(sentence) {
                push(&c[1]);
            }
            for m in CAPS.find_iter(&CODE.replace_all(sentence, " ")) {
                push(m.as_str());
            }
        }
        QuestionType::File => {
            for m in FILE.find_iter(sentence) {
                push(m.as_str());
            }
        }
        QuestionType::Number | QuestionType::Default => {
            if t == QuestionType::Default {
                for c in CODE.captures_iter(sentence) {
                    push(&c[1]);
                }
                for c in QUOTED.captures_iter(sentence) {
                    push(&c[1]);
                }
            }
            let plain = CODE.replace_all(sentence, " ");
            for c in NUMBER.captures_iter(&plain) {
                push(&c[1]);
            }
            for m in WORD_NUMBER.find_iter(&plain) {
                push(m.as_str());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_fit_the_question_type() {
        let s = "`wal_level` determines how much information is written to the WAL. The default value is `replica`.";
        assert_eq!(spans(s, QuestionType::Setting), vec!["wal_level", "replica"]);
        assert_eq!(
            spans(
                "The default is typically 128 megabytes (`128MB`), but might be less.",
                QuestionType::Default
            ),
            vec!["128MB", "128 megabytes"]
        );
        assert_eq!(
            spans(
                "The TCP port the server listens on; 5432 by default.",
                QuestionType::Number
            ),
            vec!["5432"]
        );
        assert_eq!(spans("The default is three.", QuestionType::Number), vec!["three"]);
        assert_eq!(
            spans(
                "`pg_cancel_backend` ( `pid` `integer` ) → `boolean`",
                QuestionType::Function
            ),
            vec!["pg_cancel_backend", "pid", "integer", "boolean"]
        );
        assert_eq!(
            spans(
                "REFRESH MATERIALIZED VIEW — replace the contents of a materialized view",
                QuestionType::Command
            ),
            vec!["REFRESH MATERIALIZED VIEW"]
        );
        assert_eq!(
            spans(
                "Client authentication is controlled by `pg_hba.conf` in the data directory.",
                QuestionType::File
            ),
            vec!["pg_hba.conf"]
        );
        assert!(fits("wal_level", QuestionType::Setting) && !fits("VACUUM", QuestionType::Setting));
        assert!(fits("VACUUM", QuestionType::Command) && !fits("vacuum_cost", QuestionType::Command));
        assert!(!fits("1020202020 and more text", QuestionType::Setting));
    }
}
