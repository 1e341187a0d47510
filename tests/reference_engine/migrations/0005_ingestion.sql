-- 0005: document ingestion (sources, chunks, chunk embeddings), assets and scheduled jobs.

CREATE TABLE ingestion_sources (
    source_id TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE ingestion_chunks (
    chunk_id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_ingestion_chunks_source ON ingestion_chunks (source_id, chunk_index);

CREATE TABLE ingestion_chunks_vec (
    chunk_id TEXT PRIMARY KEY,
    dim INTEGER NOT NULL,
    embedding BLOB NOT NULL
);

CREATE TABLE assets (
    asset_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE scheduled_jobs (
    job_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    schedule TEXT NOT NULL,
    last_run_at TEXT,
    next_run_at TEXT,
    enabled INTEGER NOT NULL DEFAULT 1
);
INSERT INTO scheduled_jobs (job_id, name, schedule, enabled)
VALUES ('memory-consolidation', 'memory consolidation', '0 3 * * *', 1);
