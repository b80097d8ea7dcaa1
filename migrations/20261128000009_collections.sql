-- Document collections for RAG jobs: documents are chunked into passages
-- with stable ids (`<document id>#<n>`), searched with Postgres full-text
-- search (title weighted above body). Everything is scoped by tenant.
CREATE TABLE collections (
    tenant      text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);

CREATE TABLE documents (
    tenant      text NOT NULL,
    collection  text NOT NULL,
    id          text NOT NULL,
    title       text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}',
    bytes       integer NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, collection, id),
    FOREIGN KEY (tenant, collection) REFERENCES collections (tenant, name) ON DELETE CASCADE
);

CREATE TABLE passages (
    tenant      text NOT NULL,
    collection  text NOT NULL,
    id          text NOT NULL,
    doc_id      text NOT NULL,
    idx         integer NOT NULL,
    title       text NOT NULL,
    text        text NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (
                    setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', text), 'B')
                ) STORED,
    PRIMARY KEY (tenant, collection, id),
    FOREIGN KEY (tenant, collection, doc_id) REFERENCES documents (tenant, collection, id) ON DELETE CASCADE
);
CREATE INDEX passages_tsv ON passages USING GIN (tsv);
CREATE INDEX passages_doc ON passages (tenant, collection, doc_id);
