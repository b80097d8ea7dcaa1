//! Documents to ingest: parsing a body (JSON or JSON Lines), validating
//! every document before anything is written, and collection names.

use super::has_nul;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Largest document text, in bytes.
pub const MAX_DOC_BYTES: usize = 512 * 1024;
/// Most documents in one request.
pub const MAX_DOCS: usize = 2000;

/// One document to ingest.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    /// Stable id within the collection; ingesting the same id again replaces it.
    #[schema(min_length = 1, max_length = 300)]
    pub id: String,
    /// Title (weighted above the body in search); the id when absent.
    #[serde(default)]
    pub title: Option<String>,
    /// Plain text (the CLI strips HTML and Markdown markup before sending).
    #[schema(min_length = 1, max_length = 524288)]
    pub text: String,
    /// Free-form caller data.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// A JSON ingest body: `{"documents": [...]}` (or a bare array).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// The documents.
    pub documents: Vec<DocumentIn>,
}

/// Checks a collection name: 1–64 of `a-z 0-9 _ -`.
pub fn valid_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("collection", "use 1 to 64 of a-z, 0-9, '_' and '-'"))
    }
}

/// Parses a body as JSON (`{"documents": […]}` or `[…]`) or, when `jsonl`,
/// as one document per line. Errors name the field, or the line.
pub fn parse_documents(body: &[u8], jsonl: bool) -> Result<Vec<DocumentIn>> {
    if jsonl {
        let text = std::str::from_utf8(body).map_err(|_| Error::invalid("body", "not UTF-8"))?;
        let mut docs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let doc: DocumentIn =
                serde_json::from_str(line).map_err(|e| Error::invalid(format!("line {}", i + 1), e.to_string()))?;
            docs.push(doc);
        }
        return Ok(docs);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Error::invalid("body", format!("not JSON: {e}")))?;
    let docs = if value.is_array() {
        serde_json::from_value::<Vec<DocumentIn>>(value)
    } else {
        serde_json::from_value::<IngestRequest>(value).map(|r| r.documents)
    };
    docs.map_err(|e| Error::invalid("documents", e.to_string()))
}

/// Validates documents; `at(i)` names document `i` in errors (`documents[i]`
/// or `line n`).
pub fn validate_documents(docs: &[DocumentIn], at: impl Fn(usize) -> String) -> Result<()> {
    if docs.is_empty() {
        return Err(Error::invalid("documents", "give at least one document"));
    }
    if docs.len() > MAX_DOCS {
        return Err(Error::invalid("documents", format!("at most {MAX_DOCS} per request")));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, d) in docs.iter().enumerate() {
        let field = |f: &str| format!("{}.{f}", at(i));
        let id = d.id.trim();
        if id.is_empty() || id.len() > 300 || id.contains('\0') {
            return Err(Error::invalid(field("id"), "must be 1 to 300 characters, without NUL"));
        }
        if !seen.insert(id) {
            return Err(Error::invalid(field("id"), format!("duplicate document id `{id}`")));
        }
        if d.text.trim().is_empty() {
            return Err(Error::invalid(field("text"), "must not be empty"));
        }
        if d.text.len() > MAX_DOC_BYTES {
            return Err(Error::invalid(
                field("text"),
                format!("larger than {MAX_DOC_BYTES} bytes"),
            ));
        }
        if d.text.contains('\0') || d.title.as_deref().is_some_and(|t| t.contains('\0') || t.len() > 500) {
            return Err(Error::invalid(
                field("text"),
                "title (≤ 500 bytes) and text must not contain NUL",
            ));
        }
        if d.metadata.as_ref().is_some_and(|m| !m.is_object()) {
            return Err(Error::invalid(field("metadata"), "must be an object"));
        }
        // Postgres jsonb cannot hold NUL characters, in keys or values.
        if d.metadata.as_ref().is_some_and(has_nul) {
            return Err(Error::invalid(field("metadata"), "must not contain NUL characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_and_errors_name_the_line_or_field() {
        let docs = parse_documents(br#"{"documents":[{"id":"a","text":"x"}]}"#, false).unwrap();
        assert_eq!(docs[0].id, "a");
        assert_eq!(parse_documents(br#"[{"id":"a","text":"x"}]"#, false).unwrap().len(), 1);
        let jl = b"{\"id\":\"a\",\"text\":\"x\"}\n\n{\"id\":\"b\",\"text\":\"y\"}\n{\"id\":3}\n";
        let e = parse_documents(jl, true).unwrap_err();
        assert!(matches!(&e, Error::Invalid { field, .. } if field == "line 4"), "{e}");
        let docs = parse_documents(br#"[{"id":"a","text":"x"},{"id":"a","text":"y"}]"#, false).unwrap();
        let e = validate_documents(&docs, |i| format!("documents[{i}]")).unwrap_err();
        assert!(
            matches!(&e, Error::Invalid { field, .. } if field == "documents[1].id"),
            "{e}"
        );
        let big = vec![DocumentIn {
            id: "b".into(),
            title: None,
            text: "x".repeat(MAX_DOC_BYTES + 1),
            metadata: None,
        }];
        assert!(validate_documents(&big, |i| format!("documents[{i}]")).is_err());
        assert!(valid_name("pg-docs_15").is_ok() && valid_name("Bad Name").is_err());
        let nul = parse_documents(br#"[{"id":"a","text":"x","metadata":{"k\u0000":1}}]"#, false).unwrap();
        let e = validate_documents(&nul, |i| format!("documents[{i}]")).unwrap_err();
        assert!(
            matches!(&e, Error::Invalid { field, .. } if field == "documents[0].metadata"),
            "{e}"
        );
    }
}
