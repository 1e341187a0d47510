-- 0002: long-term memory: episodes, the knowledge store, their embeddings, channel snapshots.

CREATE TABLE episodes (
    episode_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    importance REAL NOT NULL DEFAULT 0.5,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_episodes_conversation ON episodes (conversation_id, created_at);

-- Embeddings are little-endian float32 vectors stored as BLOBs.
CREATE TABLE episodes_vec (
    episode_id TEXT PRIMARY KEY,
    dim INTEGER NOT NULL,
    embedding BLOB NOT NULL
);

CREATE TABLE knowledge_store (
    fact_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    predicate TEXT NOT NULL,
    object TEXT NOT NULL,
    source_task_id TEXT,
    confidence REAL NOT NULL DEFAULT 1.0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_knowledge_store_subject ON knowledge_store (subject);

CREATE TABLE knowledge_store_vec (
    fact_id TEXT PRIMARY KEY,
    dim INTEGER NOT NULL,
    embedding BLOB NOT NULL
);

CREATE TABLE channel_state_snapshots (
    snapshot_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    turn_count INTEGER NOT NULL DEFAULT 0,
    last_task_id TEXT,
    state_json TEXT NOT NULL DEFAULT '{}',
    updated_at TEXT NOT NULL
);
