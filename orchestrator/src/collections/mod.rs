//! Document collections: chunking documents into passages for the store
//! (which writes an ingest in one transaction), embeddings (a queue drained
//! by [`embedding::run`]) and hybrid retrieval ([`Retriever`]). Requests are
//! parsed and validated completely in [`crate::request`] before anything is
//! written.

mod chunk;
pub mod dense;
pub mod embedding;
mod retrieve;

pub use crate::store::{CollectionStatus, Hit, Ingested, embed_input, text_key};
pub use chunk::chunk;
pub use retrieve::{MAX_TERMS, Retriever};

use crate::error::Result;
use crate::request::DocumentIn;
use crate::store::{NewDocument, PgStore};

/// Writes validated `docs` into `collection`: each cut into passages
/// ([`chunk`]), titled by its id when it has no title, replacing documents
/// with the same ids; the texts `model` has not embedded yet are queued.
pub async fn ingest(
    store: &PgStore,
    tenant: &str,
    collection: &str,
    docs: Vec<DocumentIn>,
    model: Option<&str>,
) -> Result<Ingested> {
    let docs = docs
        .into_iter()
        .map(|d| {
            let id = d.id.trim().to_string();
            let title = d.title.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| id.clone());
            NewDocument {
                bytes: d.text.len() as i32,
                passages: chunk(&d.text),
                metadata: d.metadata.unwrap_or_else(|| serde_json::json!({})),
                id,
                title,
            }
        })
        .collect();
    store.ingest(tenant, collection, docs, model).await
}
