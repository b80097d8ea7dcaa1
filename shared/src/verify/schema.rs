//! JSON-schema validity of extraction outputs. A fenced code block
//! (```json … ```) around the JSON is tolerated, as models often add one.

use super::Finding;
use crate::reasons::ReasonCode;

pub(super) fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

pub(super) fn strip_fence(output: &str) -> &str {
    let t = output.trim();
    let Some(rest) = t.strip_prefix("```") else { return t };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

pub(super) fn check(output: &str, schema: Option<&serde_json::Value>) -> Vec<Finding> {
    let value: serde_json::Value = match serde_json::from_str(strip_fence(output)) {
        Ok(v) => v,
        Err(e) => return vec![Finding::new(ReasonCode::SchemaInvalid, format!("not JSON: {e}"))],
    };
    let Some(schema) = schema else { return Vec::new() };
    let validator = match compile(schema) {
        Ok(v) => v,
        Err(e) => {
            return vec![Finding::new(
                ReasonCode::SchemaInvalid,
                format!("schema does not compile: {e}"),
            )];
        }
    };
    validator
        .iter_errors(&value)
        .take(5)
        .map(|e| Finding::new(ReasonCode::SchemaInvalid, format!("{}: {e}", e.instance_path())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_against_the_schema() {
        let s = json!({"type":"object","required":["date"],"properties":{"date":{"type":"string"}}});
        assert!(check(r#"{"date":"2024-01-02"}"#, Some(&s)).is_empty());
        assert!(check("```json\n{\"date\":\"x\"}\n```", Some(&s)).is_empty());
        assert_eq!(check(r#"{"day":3}"#, Some(&s)).len(), 1);
        assert!(check("not json", None)[0].detail.starts_with("not JSON"));
    }
}
