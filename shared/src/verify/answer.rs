//! Answer format: the output states a final answer that parses as a number,
//! and is not cut off mid-way.
//!
//! The final answer is the number after `####` (GSM8K's convention) when
//! present, otherwise the last number on the last non-empty line.

use super::Finding;
use crate::reasons::ReasonCode;
use regex::Regex;
use std::sync::LazyLock;

/// A number as written in answers: `$1,234.5`, `-3`, `40%`.
pub(crate) const NUM: &str = r"\$?-?\d[\d,]*(?:\.\d+)?%?";

/// The marked final answer, `#### 42`.
pub(crate) static MARKED: LazyLock<Regex> = LazyLock::new(|| Regex::new(&format!(r"####\s*({NUM})")).unwrap());
static ANY_NUM: LazyLock<Regex> = LazyLock::new(|| Regex::new(NUM).unwrap());

/// Parses a number as written (`$1,234.50`, `12%` → 12).
pub(crate) fn parse_num(s: &str) -> Option<f64> {
    s.trim()
        .trim_start_matches('$')
        .trim_end_matches('%')
        .replace(',', "")
        .parse()
        .ok()
}

/// The final numeric answer of `output`, if one can be found.
pub fn final_answer(output: &str) -> Option<f64> {
    if let Some(c) = MARKED.captures_iter(output).last() {
        return parse_num(&c[1]);
    }
    let last_line = output.lines().rev().find(|l| !l.trim().is_empty())?;
    ANY_NUM.find_iter(last_line).last().and_then(|m| parse_num(m.as_str()))
}

pub(super) fn check(output: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    if final_answer(output).is_none() {
        out.push(Finding::new(ReasonCode::AnswerFormat, "no final numeric answer found"));
    }
    let trimmed = output.trim_end();
    if output.matches("<<").count() != output.matches(">>").count() {
        out.push(Finding::new(
            ReasonCode::AnswerFormat,
            "output ends inside a <<calculation>>: truncated",
        ));
    } else if !output.contains("####") && !trimmed.ends_with(|c: char| c.is_ascii_digit() || ".!)*%".contains(c)) {
        out.push(Finding::new(
            ReasonCode::AnswerFormat,
            "output ends mid-sentence: truncated",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_marked_or_trailing_answers() {
        assert_eq!(final_answer("so 9.\n#### 1,018"), Some(1018.0));
        assert_eq!(final_answer("She makes 9 * $2 = $18 every day."), Some(18.0));
        assert_eq!(final_answer("I do not know."), None);
        assert!(check("x = 4.\n#### 4").is_empty());
        assert!(check("no idea").iter().any(|f| f.detail.contains("no final")));
        let cut = check("total is 80 + 50 = $<<80+50=130>>130,00");
        assert!(cut.is_empty(), "balanced and ends in a digit: {cut:?}");
        let cut = check("total is $<<80+50=13");
        assert!(cut.iter().any(|f| f.detail.contains("truncated")));
        let cut = check("The total value of the house is");
        assert!(cut.iter().any(|f| f.detail.contains("mid-sentence")));
    }
}
