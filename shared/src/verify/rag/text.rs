//! Lexical tools of the RAG verifiers: content words with a crude stemmer,
//! sentence splitting that keeps `[passage_id]` citations with their
//! sentence, query entities, and `setting = value` statements for conflicts.
//!
//! They are deliberately lexical: cheap, deterministic and explainable in a
//! finding. A claim is "supported" when most of its content words occur in
//! the passages it cites.

use regex::Regex;
use std::collections::HashSet;
use std::sync::LazyLock;

const STOP: &[&str] = &[
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "has", "have", "had", "was", "were", "been",
    "this", "that", "these", "those", "with", "from", "into", "onto", "than", "then", "there", "their", "they", "them",
    "its", "it's", "which", "what", "when", "where", "who", "whom", "how", "why", "will", "would", "should", "could",
    "may", "might", "must", "does", "did", "doing", "also", "such", "only", "other", "some", "more", "most", "each",
    "about", "over", "under", "between", "via", "per", "use", "used", "using", "one", "our", "your", "his", "her",
    "she", "him", "out", "off", "yes", "very", "just", "like", "being", "because", "both", "either", "whether",
    "while", "passage", "passages", "answer", "question", "text", "evidence",
];

/// Lower-cased content words of `text`, stemmed: stop words and words under
/// three characters are dropped (numbers are kept).
pub fn content_words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| (w.len() >= 3 || w.chars().all(|c| c.is_ascii_digit())) && !STOP.contains(&w.as_str()))
        .map(|w| stem(&w))
        .collect()
}

/// The first `n` distinct keywords of `text` (lower-cased, stop words and
/// words under three characters dropped, unstemmed), joined by spaces: what
/// a search is run with when a model wrote sentences instead of keywords.
/// Full-text ranking divides an OR query's rank by its number of terms, so a
/// paragraph of terms would rank every passage near zero.
pub fn keywords(text: &str, n: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-')) {
        let w = w.trim_matches('-').to_lowercase();
        let keep = (w.len() >= 3 || w.chars().all(|c| c.is_ascii_digit())) && !w.is_empty();
        if keep && !STOP.contains(&w.as_str()) && !out.contains(&w) {
            out.push(w);
            if out.len() == n {
                break;
            }
        }
    }
    out.join(" ")
}

/// Strips common English suffixes so "written" ~ "writes" ~ "write" do not
/// have to match exactly (only what the lexical check needs).
fn stem(w: &str) -> String {
    for suffix in ["ations", "ation", "ings", "ing", "ies", "ied", "ed", "es", "en", "s"] {
        if let Some(root) = w.strip_suffix(suffix)
            && root.chars().count() >= 4
        {
            return root.to_string();
        }
    }
    w.to_string()
}

/// The share of `claim`'s content words found in `source`'s (1.0 when the
/// claim has none).
pub fn support(claim: &str, source: &HashSet<String>) -> f64 {
    let words = content_words(claim);
    if words.is_empty() {
        return 1.0;
    }
    words.iter().filter(|w| source.contains(*w)).count() as f64 / words.len() as f64
}

/// The set of content words of all `texts`.
pub fn word_set<'a>(texts: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
    texts.into_iter().flat_map(content_words).collect()
}

static CITATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[([^\[\]\s,;]{1,300}(?:\s*[,;]\s*[^\[\]\s,;]{1,300})*)\]").expect("valid regex"));

/// The passage ids cited as `[id]` in `text` (comma- or semicolon-separated
/// lists inside one bracket count too), in order, without repeats.
pub fn citations(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in CITATION.captures_iter(text) {
        for id in c[1].split([',', ';']).map(str::trim).filter(|s| !s.is_empty()) {
            if !out.iter().any(|o| o == id) {
                out.push(id.to_string());
            }
        }
    }
    out
}

/// `text` without its citations.
pub fn strip_citations(text: &str) -> String {
    CITATION.replace_all(text, "").into_owned()
}

/// Splits an answer into sentences. A sentence ends at `.`, `!` or `?`
/// followed by white space, or at a line break; a citation written after the
/// full stop (`… log. [wal#2]`) belongs to the sentence before it.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c == '\n' {
            push_sentence(&mut out, &mut cur);
            continue;
        }
        cur.push(c);
        let at_end = matches!(c, '.' | '!' | '?') && depth == 0;
        if at_end && chars.peek().is_none_or(|n| n.is_whitespace()) {
            push_sentence(&mut out, &mut cur);
        }
    }
    push_sentence(&mut out, &mut cur);
    out
}

fn push_sentence(out: &mut Vec<String>, cur: &mut String) {
    let s = std::mem::take(cur);
    let s = s.trim();
    if s.is_empty() {
        return;
    }
    // Only citations (and punctuation): they belong to the previous sentence.
    let rest = strip_citations(s);
    if rest
        .trim_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
        .is_empty()
        && let Some(prev) = out.last_mut()
    {
        prev.push(' ');
        prev.push_str(s);
        return;
    }
    out.push(s.to_string());
}

static ENTITY: LazyLock<Regex> = LazyLock::new(|| {
    // snake_case names, ALL-CAPS words, quoted terms, and CamelCase/Capitalised
    // words (the first word of the question is skipped by the caller).
    Regex::new(r#"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+|\b[A-Z]{2,}[A-Z0-9]*\b|"[^"]{2,40}"|`[^`]{2,40}`|\b[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*\b"#)
        .expect("valid regex")
});

/// Words that are grammar wherever they stand, capitalised or not ("Which",
/// "How", "I", "Our"): never a name an answer must account for.
const GRAMMAR: &[&str] = &[
    "i", "i'm", "i've", "i'd", "we", "our", "my", "me", "us", "you", "your", "it", "its", "they", "their", "which",
    "what", "what's", "how", "where", "when", "who", "why", "is", "are", "was", "can", "could", "does", "do", "should",
    "would", "will", "the", "a", "an", "and", "or", "but", "if", "so", "then", "there", "this", "that", "these",
    "those", "in", "on", "at", "for", "to", "of", "with", "after", "before", "now", "also", "sql", "ok", "hi", "hello",
    "thanks", "please", "any", "some", "each", "every", "not", "no", "yes", "also", "just",
];

/// Named things in a query that an answer must account for: setting names
/// (`wal_level`), commands (`VACUUM`), quoted terms and proper names — of
/// the sentence that asks ([`super::question::asking_sentence`]); the
/// context before it is not the question. A capitalised word opening a
/// sentence, and grammar words in any case, are not names.
pub fn entities(query: &str) -> Vec<String> {
    let asking = super::question::asking_sentence(query);
    let mut out: Vec<String> = Vec::new();
    for sentence in sentences(&asking) {
        let first_word_end = sentence.find(char::is_whitespace).unwrap_or(sentence.len());
        for m in ENTITY.find_iter(&sentence) {
            let raw = m.as_str().trim_matches(|c| c == '"' || c == '`');
            // A capitalised first word is grammar, not a name.
            let capitalised =
                raw.chars().next().is_some_and(char::is_uppercase) && raw.chars().skip(1).all(|c| !c.is_uppercase());
            if m.start() <= first_word_end && capitalised && !raw.contains('_') {
                continue;
            }
            let e = raw.to_lowercase();
            if GRAMMAR.contains(&e.as_str()) {
                continue;
            }
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

/// The entities `query` names that `text` never mentions.
pub fn unmentioned(query: &str, text: &str) -> Vec<String> {
    entities(query).into_iter().filter(|e| !mentions(text, e)).collect()
}

/// Whether `entity` occurs in `text` (case-insensitive, on word boundaries
/// for single words).
pub fn mentions(text: &str, entity: &str) -> bool {
    let lower = text.to_lowercase();
    if entity.contains(' ') {
        return lower.contains(entity);
    }
    lower
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w == entity || stem(w) == stem(entity))
}

static FACT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"`[^`\n]{1,80}`|\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b|-?\d[\d,]*(?:\.\d+)?").expect("valid regex")
});

/// The checkable facts of `claim`: the numbers and the code names (code
/// spans, snake_case names) it states, normalised (no backticks, no
/// thousands separators, lower case).
pub fn facts(claim: &str) -> Vec<String> {
    FACT.find_iter(claim)
        .map(|m| m.as_str().trim_matches('`').replace(',', "").to_lowercase())
        .filter(|f| !f.is_empty())
        .collect()
}

/// Whether `claim` states any number or code name.
pub fn has_facts(claim: &str) -> bool {
    FACT.is_match(claim)
}

/// The facts of `claim` (see [`facts`]) that `source` does not contain.
pub fn facts_missing(claim: &str, source: &str) -> Vec<String> {
    facts(claim).into_iter().filter(|f| !contains_span(source, f)).collect()
}

/// Lower case, without backticks, thousands separators in numbers, or the
/// space between a number and its unit (`128 MB` is `128mb`).
fn normalise(text: &str) -> String {
    static THOUSANDS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d),(\d{3})").expect("valid regex"));
    static UNIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d) +([a-z%])").expect("valid regex"));
    let t = text.replace('`', "").to_lowercase();
    let t = THOUSANDS.replace_all(&t, "$1$2");
    UNIT.replace_all(&t, "$1$2").into_owned()
}

/// Whether `text` contains `span` as a whole (case-insensitive, on word
/// boundaries, ignoring backticks; `128 MB` and `128MB` are the same).
pub fn contains_span(text: &str, span: &str) -> bool {
    let (t, s) = (normalise(text), normalise(span.trim()));
    if s.is_empty() {
        return false;
    }
    // A number only needs to stand apart from other digits: `4` is in `4MB`.
    let numeric = s
        .trim_start_matches('-')
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.');
    let bounded = |hay: &str, needle: &str| {
        let word = |c: Option<char>| {
            c.is_some_and(|c| {
                if numeric {
                    c.is_ascii_digit()
                } else {
                    c.is_alphanumeric() || c == '_'
                }
            })
        };
        hay.match_indices(needle).any(|(i, _)| {
            let before = hay[..i].chars().next_back();
            let after = hay[i + needle.len()..].chars().next();
            // A trailing full stop ends a sentence; a dot inside a number does not.
            let decimal = after == Some('.') && hay[i + needle.len() + 1..].starts_with(|c: char| c.is_ascii_digit());
            let after_ok = !(word(after) || decimal);
            !word(before) && after_ok
        })
    };
    bounded(&t, &s)
}

/// Whether `span`, a qualified name (`subprocess.PIPE`, `queue::Queue`),
/// is one `text` already names in code by its last part: `PIPE` of
/// "stdout=PIPE", `PriorityQueue` — a word written as code (an `_`, a
/// capital after its first letter, `=` or `(` beside it, or a `.` that
/// joins it to another word), matched with its case, so neither "path
/// names" nor "split a path." names `os.path`.
pub fn names_qualified(text: &str, span: &str) -> bool {
    static WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[A-Za-z_][A-Za-z0-9_]*\b").expect("valid regex"));
    let span = span.trim().trim_end_matches("()");
    let Some((_, last)) = span.rsplit_once(['.', ':']) else {
        return false;
    };
    if last.len() < 2 {
        return false;
    }
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    WORD.find_iter(text).any(|m| {
        let word = m.as_str();
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        // A `.` is code only between two words (`os.path`), not a full stop.
        let joined_before = before == Some('.') && ident(text[..m.start() - 1].chars().next_back());
        let joined_after = after == Some('.') && ident(text[m.end() + 1..].chars().next());
        let code = word.contains('_')
            || word.chars().skip(1).any(|c| c.is_ascii_uppercase())
            || matches!(before, Some('=' | '('))
            || matches!(after, Some('=' | '('))
            || joined_before
            || joined_after;
        word == last && code
    })
}

static SETTING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b(?:\W+\w+){0,4}?\W+(?:is|=|to|of)\W+(-?\d+(?:\.\d+)?\s?(?:kb|mb|gb|tb|ms|s|min|h|%)?)\b")
        .expect("valid regex")
});

/// `(setting, value)` statements such as "`work_mem` defaults to 4MB" or
/// "max_connections = 100", lower-cased with spaces removed from values.
pub fn settings(text: &str) -> Vec<(String, String)> {
    SETTING
        .captures_iter(text)
        .map(|c| (c[1].to_lowercase(), c[2].to_lowercase().replace(' ', "")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qualified_name_the_question_writes_in_code_is_its_own() {
        let q = "I want both collected without setting stdout=PIPE myself. What argument do I pass?";
        assert!(names_qualified(q, "subprocess.PIPE"));
        assert!(!names_qualified(q, "subprocess.run"));
        assert!(names_qualified(
            "Which module has PriorityQueue?",
            "queue.PriorityQueue"
        ));
        assert!(
            !names_qualified("Which module handles path names?", "os.path"),
            "a word, not code"
        );
        assert!(
            !names_qualified("stdout=PIPE", "PIPE"),
            "not qualified: contains_span's case"
        );
    }

    #[test]
    fn words_stem_and_support_is_a_share() {
        assert_eq!(content_words("The WAL writes it"), vec!["wal", "writ"]);
        let src = word_set(["wal_level determines how much information is written to the WAL."]);
        assert!(support("wal_level determines the information written", &src) > 0.99);
        assert!(support("shared_buffers sets the memory for caching", &src) < 0.2);
    }

    #[test]
    fn keywords_are_distinct_content_words() {
        assert_eq!(
            keywords(
                "To build an index without locking out writes, build it CONCURRENTLY.",
                5
            ),
            "build index without locking writes"
        );
        assert_eq!(keywords("write-ahead log wal_level", 8), "write-ahead log wal_level");
    }

    #[test]
    fn sentences_keep_their_citations() {
        let s = sentences("It is set by wal_level [a.html#1]. The default is replica. [b.html#0]\nDone!");
        assert_eq!(
            s,
            vec![
                "It is set by wal_level [a.html#1].",
                "The default is replica. [b.html#0]",
                "Done!"
            ]
        );
        assert_eq!(citations("x [a#1, b#2] y [a#1]"), vec!["a#1", "b#2"]);
        assert_eq!(strip_citations("x [a#1]."), "x .");
    }

    #[test]
    fn spans_match_whole_words_and_facts_must_be_in_the_source() {
        assert!(contains_span("The default is `128MB`.", "128MB"));
        assert!(contains_span("typically 128 MB of memory", "128mb"));
        assert!(!contains_span("max_wal_size is 1GB", "wal_size"));
        assert!(!contains_span("version 4.05", "4.0"));
        assert!(contains_span("columns per table | 1,600", "1600"));
        assert_eq!(
            facts("The default of `work_mem` is 4MB, or 4,096 kB."),
            vec!["work_mem", "4", "4096"]
        );
        assert_eq!(
            facts_missing(
                "The default value of max_widgets is 25.",
                "The default value of max_widgets is 10."
            ),
            vec!["25"]
        );
    }

    #[test]
    fn entities_and_settings_are_found() {
        assert_eq!(
            entities("Which value of wal_level does VACUUM need on Linux?"),
            vec!["wal_level", "vacuum", "linux"]
        );
        assert!(entities("What is a tablespace?").is_empty());
        // Context first, then the question: only the asking sentence's names,
        // and never a question word standing mid-text.
        assert_eq!(
            entities("Our nightly Export job keeps timing out. Which setting caps statement time in Linux?"),
            vec!["linux"]
        );
        assert!(entities("It fails at night, so which option raises the limit?").is_empty());
        assert!(mentions("Set WAL_LEVEL to replica", "wal_level"));
        assert_eq!(
            settings("The default value of max_widgets is 10. work_mem = 4 MB"),
            vec![("max_widgets".into(), "10".into()), ("work_mem".into(), "4mb".into())]
        );
    }
}
