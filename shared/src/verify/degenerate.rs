//! Degenerate output: text that no reader could defend whatever it cites —
//! no content words at all, a sentence said again and again, a phrase
//! looping (`11) 11) 11) …`), a digit pattern repeating (`1020202020…`), or
//! a run of bare numbers (`10,9,8,7,6,5,4,3,2,1,0,0,0`). Small models fall
//! into these loops under greedy decoding; a grammar keeps the form but not
//! the sense, so the check looks at the text itself.

use super::rag::text::{content_words, sentences};
use super::{Finding, clip};
use crate::reasons::ReasonCode;
use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;

/// A sentence said this many times is a loop.
const MAX_REPEATS: usize = 2;
/// The most frequent 3-gram covering this share of the words is a loop.
const MAX_NGRAM_SHARE: f64 = 0.3;
/// A character pattern repeated back to back over this many characters.
const MAX_PERIODIC_RUN: usize = 10;
/// This many numbers in a row with nothing but separators between them.
static NUMBER_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:-?\d+(?:\.\d+)?(?:[\s,;:/()\-]{1,3}|$)){8,}").expect("valid regex"));

/// The first sign of degenerate output in `text`, if any.
pub fn check(text: &str) -> Option<Finding> {
    let f = |d: String| Some(Finding::new(ReasonCode::DegenerateOutput, d));
    let stripped = super::rag::text::strip_citations(text);
    if content_words(&stripped)
        .iter()
        .all(|w| w.chars().all(|c| c.is_ascii_digit()))
    {
        return f("no content words".into());
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for s in sentences(&stripped) {
        let key: String = content_words(&s).join(" ");
        if key.is_empty() {
            continue;
        }
        let n = seen.entry(key).or_default();
        *n += 1;
        if *n > MAX_REPEATS {
            return f(format!("the sentence `{}` is repeated {} times", clip(&s, 60), n));
        }
    }
    if let Some(m) = NUMBER_RUN.find(text) {
        return f(format!("a run of bare numbers: `{}`", clip(m.as_str(), 40)));
    }
    if let Some(run) = periodic_run(text) {
        return f(format!("a repeating pattern: `{}`", clip(run, 40)));
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() >= 9 {
        let mut grams: HashMap<&[&str], usize> = HashMap::new();
        for g in words.windows(3) {
            *grams.entry(g).or_default() += 1;
        }
        if let Some((g, n)) = grams.into_iter().max_by_key(|(_, n)| *n)
            && n >= 3
            && (n * 3) as f64 / words.len() as f64 > MAX_NGRAM_SHARE
        {
            return f(format!("the phrase `{}` loops {n} times", g.join(" ")));
        }
    }
    None
}

/// The first stretch of `text` where a pattern of 1–6 characters repeats
/// back to back over more than [`MAX_PERIODIC_RUN`] characters.
fn periodic_run(text: &str) -> Option<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for p in 1..=6 {
        let mut start = 0;
        for i in 0..chars.len().saturating_sub(p) {
            if chars[i].1 != chars[i + p].1 || chars[i].1.is_whitespace() {
                start = i + 1;
                continue;
            }
            // chars[start..=i + p] repeats with period p.
            if i + p + 1 - start > MAX_PERIODIC_RUN.max(3 * p) {
                let end = chars.get(i + p + 1).map_or(text.len(), |c| c.0);
                let run = &text[chars[start].0..end];
                // "----" or "....": rules and ellipses, not a loop of words.
                if run.chars().any(char::is_alphanumeric) {
                    return Some(run);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn degenerate(t: &str) -> bool {
        check(t).is_some()
    }

    #[test]
    fn loops_and_number_runs_are_degenerate() {
        assert!(degenerate("1020202020202020"));
        assert!(degenerate("11) 11) 11) 11) 11) 11)"));
        assert!(degenerate("10,9,8,7,6,5,4,3,2,1,0,0,0"));
        let wal = "WAL is a standard method for ensuring data integrity [wal.html#0]. ";
        assert!(degenerate(&wal.repeat(3)));
        assert!(degenerate("[a#1]. [b#2]."));
        assert!(degenerate("the the the the the the the the the the"));
    }

    #[test]
    fn ordinary_answers_are_not() {
        for t in [
            "wal_level determines how much information is written to the WAL [wal.html#1].",
            "The default is 128MB, but it might be less [a#1]. It must be at least 128kB [a#1].",
            "Use CREATE INDEX CONCURRENTLY to build the index without locking out writes.",
            "16 - 3 - 4 = 9 eggs are left; 9 * 2 = 18 dollars.\n#### 18",
            "Valid values are 2026-11-30 and 2026-12-01.",
            "positive",
        ] {
            assert!(check(t).is_none(), "{t}: {:?}", check(t));
        }
    }
}
