-- 0004: learning: feedback signals, reflections and the skill library.

CREATE TABLE learning_signals (
    signal_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    rating INTEGER NOT NULL,
    comment TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_learning_signals_task ON learning_signals (task_id);

CREATE TABLE reflections (
    reflection_id TEXT PRIMARY KEY,
    task_id TEXT,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE skill_library (
    skill_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    success_count INTEGER NOT NULL DEFAULT 0,
    failure_count INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);
