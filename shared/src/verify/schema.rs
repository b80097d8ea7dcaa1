//! JSON-schema validity of extraction outputs. A fenced code block
//! (```json … ```) around the JSON is tolerated, as models often add one.

use super::Finding;
use crate::reasons::ReasonCode;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

/// Compiled schemas kept, and the largest schema text kept among them: a
/// step's schema is compiled once per process, not once per attempt.
const CACHED: usize = 256;
const CACHED_BYTES: usize = 64 * 1024;

/// Compiled schemas by the hash of their text (the text is compared too).
type Cache = HashMap<u64, (String, Arc<jsonschema::Validator>)>;
static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Mutex::default);

/// Schemas compiled so far (what the cache saves is visible in tests).
#[cfg(test)]
static COMPILED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub(super) fn compile(schema: &serde_json::Value) -> Result<Arc<jsonschema::Validator>, String> {
    let text = schema.to_string();
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    let key = h.finish();
    if let Some((t, v)) = CACHE.lock().expect("schema cache").get(&key)
        && *t == text
    {
        return Ok(v.clone());
    }
    #[cfg(test)]
    COMPILED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let v = Arc::new(jsonschema::validator_for(schema).map_err(|e| e.to_string())?);
    if text.len() <= CACHED_BYTES {
        let mut cache = CACHE.lock().expect("schema cache");
        if cache.len() >= CACHED {
            cache.clear();
        }
        cache.insert(key, (text, v.clone()));
    }
    Ok(v)
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

    #[test]
    fn a_schema_is_compiled_once_however_often_it_is_checked() {
        use std::sync::atomic::Ordering;
        let s = json!({"type":"object","required":["only_in_this_test"]});
        let before = COMPILED.load(Ordering::SeqCst);
        for _ in 0..50 {
            assert_eq!(check("{}", Some(&s)).len(), 1);
        }
        // Other tests compile other schemas meanwhile; this one added one.
        assert!(COMPILED.load(Ordering::SeqCst) - before < 50);
        assert!(
            CACHE
                .lock()
                .unwrap()
                .values()
                .any(|(t, _)| t.contains("only_in_this_test"))
        );
    }
}
