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
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*(?:(?:\.|::)[A-Za-z_][A-Za-z0-9_]*)*$").expect("valid regex"));
/// A command-line option, alone or with its one argument (`-X importtime`,
/// `--jobs=njobs`, `-k graceful`).
static OPTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^--?[A-Za-z0-9][A-Za-z0-9_-]*(?:[= ][A-Za-z0-9_<>.:/\-]+)?$").expect("valid regex"));
/// Options in running text.
static OPTION_IN_TEXT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[\s(])(--?[A-Za-z][A-Za-z0-9_-]*)").expect("valid regex"));
/// A format code (`%j`, `%-d`, `%H`).
static FORMAT_CODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^%[-#0-9.]*[A-Za-z%]$").expect("valid regex"));
static SNAKE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b").expect("valid regex"));
static COMMAND: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Z][A-Z_]+(?: [A-Z][A-Z_]+){0,3}$").expect("valid regex"));
/// Capitalised SQL keywords in running text, one to four words.
static CAPS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[A-Z]{3,}(?: [A-Z]{2,}){0,3}\b").expect("valid regex"));
/// A file name: any stem (dotted too: `db.auto.conf`), then an
/// extension files have in any manual.
static FILE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\b[A-Za-z0-9_\-/.]*[A-Za-z0-9_]\.",
        r"(?:conf|sql|txt|json|log|html|csv|h|c|so|pid|signal|opts|key|crt|pem|cfg|ini|py|toml|ya?ml|xml|gz|tar|zip|lock|sh)\b"
    ))
        .expect("valid regex")
});
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:^|[^\w.])(-?\d[\d,]*(?:\.\d+)?(?:\s?(?:kB|MB|GB|TB|bytes?|ms|min|h|d|s|%|(?:milli)?seconds?|minutes?|hours?|days?|(?:kilo|mega|giga|tera)bytes?|thousand|million|billion))?)(?:[^\w]|$)",
    )
    .expect("valid regex")
});
static WORD_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|sixteen|twenty|thirty|fifty|sixty|hundred)(?:\s(?:(?:milli)?seconds?|minutes?|hours?|days?|(?:kilo|mega|giga)bytes?))?\b",
    )
    .expect("valid regex")
});
static QUOTED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"[“"]([^”"\n]{2,40})[”"]"#).expect("valid regex"));

/// A question asking for an amount of memory or storage.
static SIZE_ASKED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bhow\s+much\s+(?:memory|disk|space|storage|ram)\b|\bhow\s+(?:large|big)\b|\bwhat\s+size\b")
        .expect("valid regex")
});
/// A question asking for a length of time.
static TIME_ASKED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bhow\s+long\b|\bhow\s+much\s+time\b").expect("valid regex"));
static SIZE_UNIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:\d\s?(?:kB|MB|GB|TB)|\bbytes?|(?:kilo|mega|giga|tera)bytes?)\b").expect("valid regex")
});
static TIME_UNIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:\d\s?(?:ms|min|h|d|s)|\b(?:milli)?seconds?|\bminutes?|\bhours?|\bdays?)\b")
        .expect("valid regex")
});

/// For a number question that asks for an amount of memory or a length of
/// time, whether `span` carries such a unit (`64MB`, `one minute`); `None`
/// when the question asks for neither (a count, a port).
pub fn has_asked_unit(question: &str, span: &str) -> Option<bool> {
    if SIZE_ASKED.is_match(question) {
        Some(SIZE_UNIT.is_match(span))
    } else if TIME_ASKED.is_match(question) {
        Some(TIME_UNIT.is_match(span))
    } else {
        None
    }
}

/// Whether `span` is a number in words alone (`one`, `three`): the word
/// "one" is as often a pronoun as a number.
pub fn bare_word_number(span: &str) -> bool {
    WORD_NUMBER
        .find(span)
        .is_some_and(|m| m.as_str().len() == span.trim().len())
        && !span.contains(' ')
}

/// SQL words that are too generic to be an answer on their own.
const GENERIC: &[&str] = &[
    "SQL", "NULL", "TRUE", "FALSE", "AND", "NOT", "FOR", "THE", "ALL", "ANY", "ONLY", "WITH", "FROM", "TABLE", "INTO",
    "SET", "TO", "DEFAULT", "ON", "OFF", "OR", "IS", "AS", "BY",
];

/// Whether `s` is a plausible identifier: a setting, function, program or type name.
fn identifier(s: &str) -> bool {
    IDENT.is_match(s) && s.len() >= 2 && !s.chars().all(|c| c.is_ascii_digit())
}

/// Whether `s` reads as SQL in capitals (up to four words), not a word too
/// generic to answer anything.
fn keyword(s: &str) -> bool {
    COMMAND.is_match(s) && !GENERIC.contains(&s)
}

/// Whether `s` reads as a command in any manual: a keyword phrase in
/// capitals (`VACUUM`, `ALTER SYSTEM`; a single word of three letters or
/// fewer is an acronym: `WAL`, `TCP`), or a command line of a program
/// (`apachectl graceful`, `git stash`: a lower-case name without `_`,
/// which names settings and functions far more often than programs, and
/// at most three words after it).
fn command(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    let capitals = keyword(s) && (words.len() > 1 || s.len() >= 4);
    let line = (1..=4).contains(&words.len())
        && words[0].chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && identifier(words[0].trim_start_matches(['.', '/']))
        && !words[0].contains('_')
        && words[1..]
            .iter()
            .all(|w| name_shaped(w) || w.chars().all(|c| c.is_ascii_lowercase()));
    capitals || line
}

/// Whether `s` is shaped like a name of any manual: an identifier (dotted
/// or `::`-qualified), an option, a format code.
pub fn name_shaped(s: &str) -> bool {
    identifier(s) || OPTION.is_match(s) || FORMAT_CODE.is_match(s)
}

/// Whether `s` reads as a value: a number (with unit), or a short literal.
fn value(s: &str) -> bool {
    NUMBER.is_match(s) || WORD_NUMBER.is_match(s) || (s.len() <= 40 && !s.contains('\n'))
}

/// Whether `s` is a file name as a whole (`ssl.key.password` is a
/// setting, not the file `ssl.key`).
fn whole_file(s: &str) -> bool {
    FILE.find(s).is_some_and(|m| m.start() == 0 && m.end() == s.len())
}

/// Whether `span` fits question type `t` by its shape.
pub fn fits(span: &str, t: QuestionType) -> bool {
    let s = span.trim().trim_matches('`').trim_end_matches("()").trim();
    if s.is_empty() {
        return false;
    }
    match t {
        QuestionType::Setting | QuestionType::Program | QuestionType::DataType => {
            identifier(s) && !keyword(s) && !whole_file(s)
        }
        QuestionType::Function => identifier(s) && !keyword(s),
        QuestionType::Name => name_shaped(s),
        QuestionType::Command => command(s),
        QuestionType::Clause => keyword(s),
        QuestionType::File => FILE.is_match(s),
        QuestionType::Number => NUMBER.is_match(s) || WORD_NUMBER.is_match(s),
        QuestionType::Default | QuestionType::Value => value(s),
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
        QuestionType::Name => {
            for c in CODE.captures_iter(sentence) {
                push(c[1].trim_end_matches("()"));
            }
            let plain = CODE.replace_all(sentence, " ");
            for c in OPTION_IN_TEXT.captures_iter(&plain) {
                push(&c[1]);
            }
            for m in SNAKE.find_iter(&plain) {
                push(m.as_str());
            }
        }
        QuestionType::Command | QuestionType::Clause => {
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
        QuestionType::Number | QuestionType::Default | QuestionType::Value => {
            if t != QuestionType::Number {
                for c in CODE.captures_iter(sentence) {
                    push(&c[1]);
                }
                for c in QUOTED.captures_iter(sentence) {
                    push(&c[1]);
                }
            }
            // A value question has its code spans whole above; a number
            // question reads the numbers in them too (`MAXYEAR` is `9999`):
            // any manual writes a limit or a default as code.
            let plain = if t == QuestionType::Number {
                sentence.replace('`', " ").into()
            } else {
                CODE.replace_all(sentence, " ")
            };
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
        // A value is a code span, a quoted value or a number outside code.
        assert_eq!(
            spans("Set it to `lz4` or \"pglz\", at most 2 of them.", QuestionType::Value),
            vec!["lz4", "pglz", "2"]
        );
        // A number written as code is a number.
        assert_eq!(
            spans("`MINYEAR` is `1` and `MAXYEAR` is `9999`.", QuestionType::Number),
            vec!["1", "9999"]
        );
        assert_eq!(
            spans(
                "`cancel_backend` ( `pid` `integer` ) → `boolean`",
                QuestionType::Function
            ),
            vec!["cancel_backend", "pid", "integer", "boolean"]
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
                "Client authentication is controlled by `client_auth.conf` in the data directory.",
                QuestionType::File
            ),
            vec!["client_auth.conf"]
        );
        // A dotted stem is one file; a key file is a file.
        assert_eq!(
            spans(
                "Settings in `db.auto.conf` override those; the key is `$DATA/server.key`.",
                QuestionType::File
            ),
            vec!["db.auto.conf", "DATA/server.key"]
        );
        assert!(fits("wal_level", QuestionType::Setting) && !fits("VACUUM", QuestionType::Setting));
        assert!(fits("ssl.key.password", QuestionType::Setting) && !fits("db.conf", QuestionType::Setting));
        assert!(fits("VACUUM", QuestionType::Command) && !fits("vacuum_cost", QuestionType::Command));
        // An acronym or a keyword in capitals is not a command; it can be a clause.
        assert!(!fits("WAL", QuestionType::Command) && !fits("NULL", QuestionType::Command));
        // Without one language's list of verbs a keyword in capitals is a
        // command by its shape too; the evidence tells them apart.
        assert!(fits("CONCURRENTLY", QuestionType::Clause) && fits("CONCURRENTLY", QuestionType::Command));
        assert!(!fits("1020202020 and more text", QuestionType::Setting));
        // A command of any manual: a program's command line too.
        assert!(fits("apachectl graceful", QuestionType::Command) && fits("git stash pop", QuestionType::Command));
        assert!(!fits("The server restarts", QuestionType::Command));
        let memory = "How much memory may maintenance operations use by default?";
        assert_eq!(has_asked_unit(memory, "64MB"), Some(true));
        assert_eq!(has_asked_unit(memory, "64 megabytes"), Some(true));
        assert_eq!(has_asked_unit(memory, "one"), Some(false));
        assert_eq!(
            has_asked_unit("How long may a statement run?", "one minute"),
            Some(true)
        );
        assert_eq!(has_asked_unit("How many workers may run?", "three"), None);
        assert!(bare_word_number("one") && !bare_word_number("one minute") && !bare_word_number("64"));
        // Names of any manual: dotted, options, format codes; never prose.
        let s = "Use `-X importtime` or `os.path.join`; `%j` is the day, see --sort-keys and `a sentence here`.";
        assert_eq!(
            spans(s, QuestionType::Name),
            vec!["-X importtime", "os.path.join", "%j", "--sort-keys"]
        );
        assert!(fits("PYTHONDONTWRITEBYTECODE", QuestionType::Name) && !fits("two words", QuestionType::Name));
    }
}
