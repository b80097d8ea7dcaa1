//! Collections in Postgres: replace-on-ingest in one transaction, and ranked
//! full-text search over passages.

use super::{DocumentIn, chunk};
use crate::error::{Error, Result};
use crate::store::PgStore;
use serde::Serialize;

/// What an ingest wrote.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ingested {
    /// The collection.
    pub collection: String,
    /// Documents written (new or replaced).
    pub documents: usize,
    /// Passages written.
    pub passages: usize,
}

/// One search result.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Hit {
    /// Passage id, `<document id>#<n>`.
    pub passage_id: String,
    /// The document it belongs to.
    pub document_id: String,
    /// The document's title.
    pub title: String,
    /// Full-text rank (higher is better).
    pub score: f32,
    /// The passage text.
    pub text: String,
}

impl PgStore {
    /// Writes `docs` into `collection` (created when missing), replacing
    /// documents with the same ids and their passages. All or nothing.
    pub async fn ingest(&self, tenant: &str, collection: &str, docs: &[DocumentIn]) -> Result<Ingested> {
        let (mut ids, mut titles, mut metas, mut sizes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut p_ids, mut p_docs, mut p_idx, mut p_titles, mut p_texts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for d in docs {
            let id = d.id.trim().to_string();
            let title = d
                .title
                .clone()
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| id.clone());
            for (n, text) in chunk(&d.text).into_iter().enumerate() {
                p_ids.push(format!("{id}#{n}"));
                p_docs.push(id.clone());
                p_idx.push(n as i32);
                p_titles.push(title.clone());
                p_texts.push(text);
            }
            metas.push(d.metadata.clone().unwrap_or_else(|| serde_json::json!({})));
            sizes.push(d.text.len() as i32);
            titles.push(title);
            ids.push(id);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO collections (tenant, name) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(tenant)
            .bind(collection)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM documents WHERE tenant = $1 AND collection = $2 AND id = ANY($3)")
            .bind(tenant)
            .bind(collection)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO documents (tenant, collection, id, title, metadata, bytes)
             SELECT $1, $2, * FROM UNNEST($3::text[], $4::text[], $5::jsonb[], $6::int[])",
        )
        .bind(tenant)
        .bind(collection)
        .bind(&ids)
        .bind(&titles)
        .bind(&metas)
        .bind(&sizes)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO passages (tenant, collection, id, doc_id, idx, title, text)
             SELECT $1, $2, * FROM UNNEST($3::text[], $4::text[], $5::int[], $6::text[], $7::text[])",
        )
        .bind(tenant)
        .bind(collection)
        .bind(&p_ids)
        .bind(&p_docs)
        .bind(&p_idx)
        .bind(&p_titles)
        .bind(&p_texts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ingested {
            collection: collection.to_string(),
            documents: ids.len(),
            passages: p_ids.len(),
        })
    }

    /// Whether `tenant` has a collection named `collection`.
    pub async fn collection_exists(&self, tenant: &str, collection: &str) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM collections WHERE tenant = $1 AND name = $2)")
                .bind(tenant)
                .bind(collection)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The best `limit` passages for `query`: any of its words may match
    /// (OR), ranked by `ts_rank` normalised by log length (title matches
    /// weighted up); on the PostgreSQL docs this beat cover density, which
    /// favoured index and table-of-contents passages. 404 when
    /// the tenant has no such collection.
    pub async fn search(&self, tenant: &str, collection: &str, query: &str, limit: i64) -> Result<Vec<Hit>> {
        let mut conn = self.pool.acquire().await?;
        search_in(&mut conn, tenant, collection, query, limit).await
    }
}

/// [`PgStore::search`] on `conn` (the router searches inside its decision
/// transaction, on the connection it already holds).
pub(crate) async fn search_in(
    conn: &mut sqlx::PgConnection,
    tenant: &str,
    collection: &str,
    query: &str,
    limit: i64,
) -> Result<Vec<Hit>> {
    // The OR of the query's lexemes, computed first so the search below sees
    // a constant tsquery and can use the GIN index; NULL without a collection.
    let terms: Option<Option<String>> = sqlx::query_scalar(
        "SELECT (SELECT string_agg(quote_literal(lexeme), ' | ') FROM unnest(to_tsvector('english', $3)))
         FROM collections WHERE tenant = $1 AND name = $2",
    )
    .bind(tenant)
    .bind(collection)
    .bind(query)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(terms) = terms else {
        return Err(Error::NotFound(format!("collection `{collection}`")));
    };
    let Some(terms) = terms else { return Ok(Vec::new()) }; // only stop words
    Ok(sqlx::query_as(
        "SELECT p.id AS passage_id, p.doc_id AS document_id, p.title,
                ts_rank(p.tsv, to_tsquery('english', $3), 1)::real AS score, p.text
         FROM passages p
         WHERE p.tenant = $1 AND p.collection = $2 AND p.tsv @@ to_tsquery('english', $3)
         ORDER BY score DESC, p.id
         LIMIT $4",
    )
    .bind(tenant)
    .bind(collection)
    .bind(terms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}
