-- 0001: the agent loop's own state: tasks, conversations, trajectories, working memory,
-- observability events and engine settings.

CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
    message TEXT NOT NULL,
    answer TEXT,
    error TEXT,
    latency_ms INTEGER,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_hit_tokens INTEGER,
    created_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE INDEX idx_tasks_conversation ON tasks (conversation_id);
CREATE INDEX idx_tasks_status ON tasks (status);

CREATE TABLE conversations (
    message_id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    task_id TEXT,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_conversations_conversation ON conversations (conversation_id, created_at);

CREATE TABLE trajectories (
    step_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    step_index INTEGER NOT NULL,
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_trajectories_task ON trajectories (task_id, step_index);

CREATE TABLE working_memory_log (
    entry_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    slot TEXT NOT NULL,
    value TEXT NOT NULL,
    raw_payload TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_working_memory_log_task ON working_memory_log (task_id);

CREATE TABLE observability_events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    task_id TEXT,
    latency_ms INTEGER,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_hit_tokens INTEGER,
    error_code TEXT,
    payload TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE INDEX idx_observability_events_type ON observability_events (event_type, created_at);

CREATE TABLE engine_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO engine_settings (key, value, updated_at)
VALUES ('persona', 'september', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
