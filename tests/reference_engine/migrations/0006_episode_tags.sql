-- 0006 (2.4.0, additive, forward-only): episodes get tags. Older code keeps working on the data,
-- but 2.3.x refuses a brain that holds this migration (MIGRATION_REQUIRED).

ALTER TABLE episodes ADD COLUMN tag_count INTEGER NOT NULL DEFAULT 0;

CREATE TABLE memory_tags (
    episode_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (episode_id, tag)
);
CREATE INDEX idx_memory_tags_tag ON memory_tags (tag);
