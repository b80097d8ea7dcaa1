//! Extractions that stay with their input. An `extract` step copies facts
//! out of its input, so every string and number its JSON output holds must
//! occur in that input, and two fields of one object must not hold the same
//! value. Small models fail both ways while passing the schema: an invoice
//! number that is not in the text (`15321` for `INV-2041`), a name that is
//! the e-mail address, an item that is the quantity.
//!
//! Matching ignores case and runs of whitespace. Steps whose output is
//! meant to transform the input (a date reformatted, a total computed) name
//! their verifiers and leave this one out.

use super::{Finding, clip};
use crate::reasons::ReasonCode;
use serde_json::Value;

/// Findings for `output` (JSON) extracted from `input`; nothing when the
/// output is not JSON (the schema check reports that).
pub fn check(output: &str, input: &str) -> Vec<Finding> {
    let Ok(v) = serde_json::from_str::<Value>(output.trim()) else {
        return Vec::new();
    };
    let input = normalise(input);
    let mut out = Vec::new();
    walk(&v, "", &input, &mut out);
    out
}

/// Lower case, whitespace runs made one space, trimmed.
fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// A scalar's text for comparison, or `None` for what is not checked
/// (null, booleans, empty strings).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(normalise(s)),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether `number` occurs in `input` as a number of its own (`12` in
/// `12 chairs`, not in `2012`).
fn has_number(input: &str, number: &str) -> bool {
    input.match_indices(number).any(|(i, _)| {
        let digit_before = input[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_digit() || c == '.');
        let mut rest = input[i + number.len()..].chars();
        let digit_after = match rest.next() {
            Some(c) if c.is_ascii_digit() => true,
            // `12.5` goes on as a number; `12.` ends a sentence.
            Some('.') => rest.next().is_some_and(|c| c.is_ascii_digit()),
            _ => false,
        };
        !digit_before && !digit_after
    })
}

fn walk(v: &Value, path: &str, input: &str, out: &mut Vec<Finding>) {
    match v {
        Value::Object(map) => {
            let mut seen: Vec<(&str, String)> = Vec::new();
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if let Some(text) = scalar(child) {
                    if let Some((other, _)) = seen.iter().find(|(_, t)| *t == text) {
                        out.push(Finding::new(
                            ReasonCode::UngroundedValue,
                            format!("`{p}` repeats the value of `{other}` (`{}`)", clip(&text, 40)),
                        ));
                    }
                    seen.push((k, text));
                }
                walk(child, &p, input, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, &format!("{path}[{i}]"), input, out);
            }
        }
        Value::String(_) | Value::Number(_) => {
            let Some(text) = scalar(v) else { return };
            let found = if v.is_number() {
                has_number(input, &text)
            } else {
                input.contains(&text)
            };
            if !found {
                out.push(Finding::new(
                    ReasonCode::UngroundedValue,
                    format!("`{path}` = `{}` is not in the input", clip(&text, 40)),
                ));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(output: &str, input: &str) -> Vec<String> {
        check(output, input).into_iter().map(|f| f.detail).collect()
    }

    #[test]
    fn values_taken_from_the_input_pass() {
        let input = "Please contact Maria Lopez at maria.lopez@example.com about the delivery.";
        assert!(codes(r#"{"name": "Maria  lopez", "email": "maria.lopez@example.com"}"#, input).is_empty());
        assert!(codes(r#"{"item": "chairs", "quantity": 12}"#, "We ordered 12 chairs.").is_empty());
        assert!(codes(r#"{"tags": ["a", "a"], "note": null, "ok": true, "x": ""}"#, "a").is_empty());
        assert!(
            codes("not json", "anything").is_empty(),
            "the schema check reports that"
        );
    }

    #[test]
    fn what_small_models_made_up_or_copied_is_found() {
        // The demo's extractions as SmolLM2 answered them.
        let invoice = "Invoice INV-2041 from Acme Corp is due on 15 March 2025.";
        let found = codes(r#"{"company": "Acme Corp", "invoice_number": "15321"}"#, invoice);
        assert_eq!(found, ["`invoice_number` = `15321` is not in the input"]);
        let contact = "Please contact Maria Lopez at maria.lopez@example.com about the delivery.";
        let found = codes(
            r#"{"email": "Maria.Lopez@example.com", "name": "Maria.Lopez@example.com"}"#,
            contact,
        );
        assert_eq!(
            found,
            ["`name` repeats the value of `email` (`maria.lopez@example.com`)"]
        );
        let found = codes(
            r#"{"item": "12", "quantity": 12}"#,
            "We ordered 12 chairs for the new office.",
        );
        assert_eq!(found, ["`quantity` repeats the value of `item` (`12`)"]);
    }

    #[test]
    fn numbers_match_whole() {
        assert!(has_number("in 2012 we ordered 12", "12"));
        assert!(!has_number("in 2012", "12"));
        assert!(!has_number("pay 12.5 now", "12"));
        assert!(has_number("pay 12. Now", "12"));
        assert!(has_number("pay 12.5 now", "12.5"));
        assert!(!codes(r#"{"n": 7}"#, "seven").is_empty());
    }
}
