//! Collections in Postgres: replace-on-ingest in one transaction (queueing
//! new texts for embedding), ranked full-text search over passages, the
//! embedding queue and stored vectors, and a collection's state. Cutting
//! documents into passages and ranking are `collections`' work.

use super::PgStore;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};

/// What an ingest wrote.
#[derive(Debug)]
pub struct Ingested {
    /// The collection.
    pub collection: String,
    /// Documents written (new or replaced).
    pub documents: usize,
    /// Passages written.
    pub passages: usize,
}

/// One search result.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Hit {
    /// Passage id, `<document id>#<n>`.
    pub passage_id: String,
    /// The document it belongs to.
    pub document_id: String,
    /// The document's title.
    pub title: String,
    /// Rank score (higher is better): the fused score of a hybrid search,
    /// the full-text rank of a lexical one.
    pub score: f32,
    /// The passage text.
    pub text: String,
    /// Full-text rank, when full-text search found the passage.
    #[sqlx(skip)]
    pub lexical: Option<f32>,
    /// Similarity of the passage to the query, when dense search ran.
    #[sqlx(skip)]
    pub similarity: Option<f32>,
}

/// A collection's size and how far its embeddings are.
#[derive(Debug)]
pub struct CollectionStatus {
    /// The collection.
    pub collection: String,
    /// Documents.
    pub documents: i64,
    /// Passages.
    pub passages: i64,
    /// Passages whose embedding exists (dense search covers these).
    pub embedded: i64,
    /// The embedding model, when dense retrieval is on.
    pub embedding_model: Option<String>,
}

/// What a passage's embedding is computed from: its title and its text.
pub fn embed_input(title: &str, text: &str) -> String {
    format!("{title}\n{text}")
}

/// The key of a text's embedding: the SHA-256 of the text.
pub fn text_key(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// A document ready to be written, its text already cut into passages.
pub struct NewDocument {
    /// Its id in the collection.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Free-form caller data.
    pub metadata: serde_json::Value,
    /// The size of its text in bytes.
    pub bytes: i32,
    /// Its passages, in order.
    pub passages: Vec<String>,
}

impl PgStore {
    /// Writes `docs` into `collection` (created when missing), replacing
    /// documents with the same ids and their passages, and queues the texts
    /// `model` has not embedded yet (none without a model). All or nothing.
    pub async fn ingest(
        &self,
        tenant: &str,
        collection: &str,
        docs: Vec<NewDocument>,
        model: Option<&str>,
    ) -> Result<Ingested> {
        let (mut ids, mut titles, mut metas, mut sizes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut p_ids, mut p_docs, mut p_idx, mut p_titles, mut p_texts, mut p_keys) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for d in docs {
            for (n, text) in d.passages.into_iter().enumerate() {
                p_keys.push(text_key(&embed_input(&d.title, &text)));
                p_ids.push(format!("{}#{n}", d.id));
                p_docs.push(d.id.clone());
                p_idx.push(n as i32);
                p_titles.push(d.title.clone());
                p_texts.push(text);
            }
            metas.push(d.metadata);
            sizes.push(d.bytes);
            titles.push(d.title);
            ids.push(d.id);
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
            "INSERT INTO passages (tenant, collection, id, doc_id, idx, title, text, text_sha256)
             SELECT $1, $2, * FROM UNNEST($3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::bytea[])",
        )
        .bind(tenant)
        .bind(collection)
        .bind(&p_ids)
        .bind(&p_docs)
        .bind(&p_idx)
        .bind(&p_titles)
        .bind(&p_texts)
        .bind(&p_keys)
        .execute(&mut *tx)
        .await?;
        if let Some(model) = model {
            let inputs: Vec<String> = p_titles.iter().zip(&p_texts).map(|(t, x)| embed_input(t, x)).collect();
            sqlx::query(
                "INSERT INTO embedding_queue (tenant, model, text_sha256, text)
                 SELECT DISTINCT ON (q.key) $1, $2, q.key, q.text FROM UNNEST($3::bytea[], $4::text[]) AS q(key, text)
                 WHERE NOT EXISTS (SELECT 1 FROM embeddings e
                                   WHERE e.tenant = $1 AND e.model = $2 AND e.text_sha256 = q.key)
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(model)
            .bind(&p_keys)
            .bind(&inputs)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE collections SET version = version + 1 WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(collection)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ingested {
            collection: collection.to_string(),
            documents: ids.len(),
            passages: p_ids.len(),
        })
    }

    /// The size of `collection` and how many of its passages `model` has
    /// embedded; 404 when the tenant has no such collection.
    pub async fn collection_status(
        &self,
        tenant: &str,
        collection: &str,
        model: Option<&str>,
    ) -> Result<CollectionStatus> {
        if !self.collection_exists(tenant, collection).await? {
            return Err(Error::NotFound(format!("collection `{collection}`")));
        }
        let (documents, passages, embedded): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM documents WHERE tenant = $1 AND collection = $2),
                    count(*),
                    count(*) FILTER (WHERE EXISTS (SELECT 1 FROM embeddings e
                        WHERE e.tenant = p.tenant AND e.model = $3 AND e.text_sha256 = p.text_sha256))
             FROM passages p
             WHERE p.tenant = $1 AND p.collection = $2",
        )
        .bind(tenant)
        .bind(collection)
        .bind(model.unwrap_or(""))
        .fetch_one(&self.pool)
        .await?;
        Ok(CollectionStatus {
            collection: collection.to_string(),
            documents,
            passages,
            embedded,
            embedding_model: model.map(str::to_string),
        })
    }

    /// The names of `tenant`'s collections, sorted.
    pub async fn collection_names(&self, tenant: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM collections WHERE tenant = $1 ORDER BY name")
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?,
        )
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
}

/// The best `limit` passages for `query` by full-text search: any of its
/// words may match (OR), ranked by `ts_rank` normalised by log length (title
/// matches weighted up); on the PostgreSQL docs this beat cover density,
/// which favoured index and table-of-contents passages. 404 when the tenant
/// has no such collection. Runs on `conn` (the router searches inside its
/// decision transaction, on the connection it already holds).
pub(crate) async fn search_in(
    conn: &mut super::Conn,
    tenant: &str,
    collection: &str,
    query: &str,
    limit: i64,
) -> Result<Vec<Hit>> {
    let conn = conn.pg();
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
    let mut hits: Vec<Hit> = sqlx::query_as(
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
    .await?;
    for h in &mut hits {
        h.lexical = Some(h.score);
    }
    Ok(hits)
}

/// The passages of a collection that contain `name` verbatim (case-
/// insensitive), those naming it earliest first: a passage that defines a
/// setting starts with it. Full-text search splits `work_mem` into `work`
/// and `mem`, which half the manual contains.
pub(crate) async fn naming(
    conn: &mut super::Conn,
    tenant: &str,
    collection: &str,
    name: &str,
    limit: i64,
) -> Result<Vec<String>> {
    let conn = conn.pg();
    Ok(sqlx::query_scalar(
        "SELECT id FROM passages
         WHERE tenant = $1 AND collection = $2 AND strpos(lower(text), lower($3)) > 0
         ORDER BY strpos(lower(text), lower($3)), id LIMIT $4",
    )
    .bind(tenant)
    .bind(collection)
    .bind(name)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// Passages of a collection that may define one of `names`: a line of
/// theirs opens with the name in code (`` `log_duration` (`boolean`) ``, as
/// ingest writes a definition list's term or a table's first cell), or
/// they open a page titled with the name; at most `per_name` for each,
/// those whose line has a definition's shape first (the name alone, or
/// followed by ` (`: an index entry or a sentence that opens with the name
/// comes after), then in document order. The caller reads which ones
/// define it (`extractive::lookup`).
pub(crate) async fn defining(
    conn: &mut super::Conn,
    tenant: &str,
    collection: &str,
    names: &[String],
    per_name: i64,
) -> Result<Vec<Hit>> {
    let conn = conn.pg();
    Ok(sqlx::query_as(
        "SELECT p.id AS passage_id, p.doc_id AS document_id, p.title, 0::real AS score, p.text
         FROM unnest($3::text[]) AS n(name)
         CROSS JOIN LATERAL (
             SELECT id, doc_id, title, text FROM passages
             WHERE tenant = $1 AND collection = $2
               AND (starts_with(text, '`' || n.name || '`')
                    OR strpos(text, E'\\n`' || n.name || '`') > 0
                    OR (title = n.name AND idx = 0))
             ORDER BY (starts_with(text, '`' || n.name || '` (')
                       OR starts_with(text, '`' || n.name || E'`\\n')
                       OR strpos(text, E'\\n`' || n.name || '` (') > 0
                       OR strpos(text, E'\\n`' || n.name || E'`\\n') > 0) DESC,
                      doc_id, idx
             LIMIT $4) AS p",
    )
    .bind(tenant)
    .bind(collection)
    .bind(names)
    .bind(per_name)
    .fetch_all(&mut *conn)
    .await?)
}

/// The passages `ids` of a collection (in no particular order).
pub(crate) async fn passages_by_id(
    conn: &mut super::Conn,
    tenant: &str,
    collection: &str,
    ids: &[String],
) -> Result<Vec<Hit>> {
    let conn = conn.pg();
    Ok(sqlx::query_as(
        "SELECT id AS passage_id, doc_id AS document_id, title, 0::real AS score, text
         FROM passages WHERE tenant = $1 AND collection = $2 AND id = ANY($3)",
    )
    .bind(tenant)
    .bind(collection)
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?)
}

/// The version of a collection (bumped by every ingest and every batch of
/// new embeddings), `None` when the tenant has no such collection.
pub(crate) async fn collection_version(conn: &mut super::Conn, tenant: &str, collection: &str) -> Result<Option<i64>> {
    let conn = conn.pg();
    Ok(
        sqlx::query_scalar("SELECT version FROM collections WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(collection)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Every passage id of a collection with its `model` vector's bytes, when
/// it has one, in id order.
pub(crate) async fn dense_vectors(
    conn: &mut super::Conn,
    tenant: &str,
    collection: &str,
    model: &str,
) -> Result<Vec<(String, Option<Vec<u8>>)>> {
    let conn = conn.pg();
    // One primary-key probe per passage (a correlated subquery, which
    // the planner does not flatten): as a join, with statistics that
    // still described the tables before a large ingest, it chose a
    // nested loop over a scan and took 40 s instead of 60 ms.
    Ok(sqlx::query_as(
        "SELECT p.id, (SELECT e.vector FROM embeddings e
                       WHERE e.tenant = p.tenant AND e.model = $3 AND e.text_sha256 = p.text_sha256)
         FROM passages p WHERE p.tenant = $1 AND p.collection = $2 ORDER BY p.id",
    )
    .bind(tenant)
    .bind(collection)
    .bind(model)
    .fetch_all(&mut *conn)
    .await?)
}

/// A text waiting in the embedding queue: its tenant, key and text.
pub type QueuedText = (String, Vec<u8>, String);

/// Takes up to `limit` texts waiting for `model`, oldest first, locked in
/// `tx` (other replicas skip them) until [`save_embeddings`] commits.
pub async fn queued_texts(tx: &mut super::Conn, model: &str, limit: i64) -> Result<Vec<QueuedText>> {
    let tx = tx.pg();
    Ok(sqlx::query_as(
        "SELECT tenant, text_sha256, text FROM embedding_queue WHERE model = $1
         ORDER BY queued_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(model)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?)
}

/// Stores `model`'s vectors (bytes) of the texts `keys` of `tenants`,
/// removes them from the queue and bumps the version of every collection
/// holding one, so replicas reload their dense indexes.
pub async fn save_embeddings(
    tx: &mut super::Conn,
    model: &str,
    tenants: &[String],
    keys: &[Vec<u8>],
    vectors: &[Vec<u8>],
) -> Result<()> {
    let tx = tx.pg();
    sqlx::query(
        "INSERT INTO embeddings (tenant, model, text_sha256, vector)
         SELECT t, $1, k, v FROM UNNEST($2::text[], $3::bytea[], $4::bytea[]) AS x(t, k, v)
         ON CONFLICT DO NOTHING",
    )
    .bind(model)
    .bind(tenants)
    .bind(keys)
    .bind(vectors)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM embedding_queue q USING UNNEST($2::text[], $3::bytea[]) AS x(t, k)
         WHERE q.model = $1 AND q.tenant = x.t AND q.text_sha256 = x.k",
    )
    .bind(model)
    .bind(tenants)
    .bind(keys)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE collections c SET version = c.version + 1
         WHERE EXISTS (SELECT 1 FROM passages p JOIN UNNEST($1::text[], $2::bytea[]) AS x(t, k)
                       ON p.tenant = x.t AND p.text_sha256 = x.k
                       WHERE p.tenant = c.tenant AND p.collection = c.name)",
    )
    .bind(tenants)
    .bind(keys)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
