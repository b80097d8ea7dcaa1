//! Collections over HTTP: bulk ingest (JSON or JSONL) and ranked search.

use super::views::{CollectionView, IngestView, SearchHit};
use super::{ApiError, AppState, ErrorBody, Tenant};
use crate::collections;
use crate::error::Error;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

/// Ingest documents into a collection (created on first use). A JSON body is
/// `{"documents": [{id, title?, text, metadata?}]}` (or a bare array); with
/// `Content-Type: application/x-ndjson` (or `application/jsonl`) it is one
/// document per line, and errors name the line. Documents with ids already in
/// the collection are replaced. All or nothing.
#[utoipa::path(post, path = "/v1/collections/{name}/documents", tag = "collections",
    params(("name" = String, Path, description = "collection name: 1–64 of a-z, 0-9, '_', '-'")),
    request_body = crate::request::IngestRequest,
    responses(
        (status = 200, description = "written", body = IngestView),
        (status = 400, description = "malformed path or body", body = ErrorBody),
        (status = 415, description = "neither JSON nor JSON Lines", body = ErrorBody),
        (status = 413, description = "body over api.max_body_bytes", body = ErrorBody),
        (status = 422, description = "a document or line is invalid; nothing was written", body = ErrorBody),
    ))]
pub async fn ingest(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(name) = name?;
    let body = body?;
    crate::request::valid_name(&name)?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let jsonl = ["application/x-ndjson", "application/jsonl", "application/json-lines"]
        .iter()
        .any(|t| ctype.starts_with(t));
    if !jsonl && !ctype.starts_with("application/json") {
        return Err(ApiError::unsupported_media());
    }
    let docs = crate::request::parse_documents(&body, jsonl)?;
    if jsonl {
        // Name documents by their line (blank lines are skipped by the parser).
        let lines: Vec<usize> = std::str::from_utf8(&body)
            .unwrap_or("")
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, _)| i + 1)
            .collect();
        crate::request::validate_documents(&docs, |i| format!("line {}", lines.get(i).copied().unwrap_or(0)))?;
    } else {
        crate::request::validate_documents(&docs, |i| format!("documents[{i}]"))?;
    }
    let out = collections::ingest(&st.store, &tenant, &name, docs, st.retriever.model()).await?;
    tracing::info!(%tenant, collection = %name, documents = out.documents, passages = out.passages, "documents ingested");
    Ok((StatusCode::OK, Json(IngestView::from(out))))
}

/// `GET /v1/collections/{name}/search` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Free text; any of its words may match.
    #[param(min_length = 1, max_length = 1000)]
    q: String,
    /// At most this many passages (1–50, default 10).
    #[param(minimum = 1, maximum = 50)]
    limit: Option<i64>,
}

/// Ranked search over a collection's passages: full-text and (once the
/// passages are embedded) dense search, fused by reciprocal rank.
#[utoipa::path(get, path = "/v1/collections/{name}/search", tag = "collections",
    params(("name" = String, Path, description = "collection name"), SearchQuery),
    responses(
        (status = 200, description = "best passages first", body = [SearchHit]),
        (status = 400, description = "a query parameter is missing or malformed", body = ErrorBody),
        (status = 404, description = "no such collection for this tenant", body = ErrorBody),
        (status = 422, description = "a parameter is invalid", body = ErrorBody),
    ))]
pub async fn search(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    name: Result<Path<String>, PathRejection>,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<Vec<SearchHit>>, ApiError> {
    let Path(name) = name?;
    let Query(q) = q?;
    crate::request::valid_name(&name)?;
    if q.q.trim().is_empty() || q.q.len() > 1000 || q.q.contains('\0') {
        return Err(Error::invalid("q", "must be 1 to 1000 characters").into());
    }
    let limit = q.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(Error::invalid("limit", "must be 1 to 50").into());
    }
    let mut conn = st.store.acquire().await?;
    let hits = st
        .retriever
        .search(&mut conn, &tenant, &name, &q.q, limit as usize)
        .await?;
    Ok(Json(hits.into_iter().map(SearchHit::from).collect()))
}

/// A collection's size, and how many of its passages are embedded (dense
/// search covers those; embedding runs in the background after ingest).
#[utoipa::path(get, path = "/v1/collections/{name}", tag = "collections",
    params(("name" = String, Path, description = "collection name")),
    responses(
        (status = 200, description = "the collection", body = CollectionView),
        (status = 400, description = "malformed name", body = ErrorBody),
        (status = 404, description = "no such collection for this tenant", body = ErrorBody),
        (status = 422, description = "invalid name", body = ErrorBody),
    ))]
pub async fn status(
    State(st): State<AppState>,
    Tenant(tenant): Tenant,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<CollectionView>, ApiError> {
    let Path(name) = name?;
    crate::request::valid_name(&name)?;
    let status = st.store.collection_status(&tenant, &name, st.retriever.model()).await?;
    Ok(Json(CollectionView::from(status)))
}
