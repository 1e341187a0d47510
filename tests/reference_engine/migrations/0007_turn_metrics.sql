-- 0007 (2.5.0, additive): one metrics row per turn.

CREATE TABLE turn_metrics (
    task_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    latency_ms INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_hit_tokens INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_turn_metrics_created ON turn_metrics (created_at);
