-- Dense retrieval: every passage is embedded once (all-MiniLM-L6-v2 by
-- default) after ingest. Vectors are keyed by the SHA-256 of the embedded
-- text (title, newline, text), per tenant and model, so re-ingesting an
-- unchanged document embeds nothing again. New texts wait in
-- `embedding_queue`; orchestrator replicas take batches with SKIP LOCKED.
ALTER TABLE passages ADD COLUMN text_sha256 bytea;
UPDATE passages SET text_sha256 = sha256(convert_to(title || E'\n' || text, 'UTF8'));
ALTER TABLE passages ALTER COLUMN text_sha256 SET NOT NULL;
CREATE INDEX passages_text_sha256 ON passages (tenant, text_sha256);

CREATE TABLE embeddings (
    tenant       text NOT NULL,
    model        text NOT NULL,
    text_sha256  bytea NOT NULL,
    -- 384 little-endian float32s, L2-normalised.
    vector       bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, model, text_sha256)
);

CREATE TABLE embedding_queue (
    tenant       text NOT NULL,
    model        text NOT NULL,
    text_sha256  bytea NOT NULL,
    text         text NOT NULL,
    queued_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, model, text_sha256)
);
CREATE INDEX embedding_queue_order ON embedding_queue (model, queued_at);

-- Bumped when a collection's passages or their vectors change, so an
-- in-memory dense index knows to reload.
ALTER TABLE collections ADD COLUMN version bigint NOT NULL DEFAULT 0;
