//! The documented ambiguity estimate used when a request gives none.
//!
//! `0.1` base, plus up to `0.3` for length (linear up to 150 words: long inputs
//! hide more assumptions), plus `0.1` per question beyond the first (up to
//! `0.2`), plus `0.05` per hedge word such as "maybe", "roughly", "either",
//! "unclear" (up to `0.2`), clamped to `[0, 1]`. It is deliberately simple and
//! monotone, so a caller can predict it; callers with a better signal pass
//! `ambiguity` explicitly and that value wins.

const HEDGES: &[&str] = &[
    "maybe",
    "perhaps",
    "roughly",
    "approximately",
    "about",
    "either",
    "unclear",
    "possibly",
    "might",
    "somewhat",
    "ambiguous",
    "depends",
];

/// Ambiguity in `[0, 1]` estimated from the step's input text.
pub fn estimate_ambiguity(input: &str) -> f64 {
    let words: Vec<String> = input
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .collect();
    let length = 0.3 * (words.len() as f64 / 150.0).min(1.0);
    let questions = input.matches('?').count().saturating_sub(1) as f64;
    let hedges = words.iter().filter(|w| HEDGES.contains(&w.as_str())).count() as f64;
    (0.1 + length + (0.1 * questions).min(0.2) + (0.05 * hedges).min(0.2)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_plain_input_is_unambiguous_and_hedges_raise_it() {
        let plain = estimate_ambiguity("What is 2 + 2?");
        assert!((plain - 0.11).abs() < 1e-9, "{plain}");
        let hedged = estimate_ambiguity("Maybe roughly what is it? Or is it unclear? Perhaps?");
        assert!(hedged > plain + 0.3, "{hedged}");
        let long = estimate_ambiguity(&"word ".repeat(400));
        assert!((long - 0.4).abs() < 1e-9);
    }
}
