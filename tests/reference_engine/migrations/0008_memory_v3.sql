-- 0008 (3.0.0, DESTRUCTIVE): memory layout v3.
-- * channel state moves out of the brain: channel_state_snapshots is dropped with all its rows;
-- * working_memory_log loses raw_payload (the raw request bodies are gone for good);
-- * observability_events keeps only the terminal event of each turn: turn_started rows are deleted.
-- Snapshot the brain before upgrading; there is no way back without that snapshot.

DROP TABLE channel_state_snapshots;

ALTER TABLE working_memory_log DROP COLUMN raw_payload;

DELETE FROM observability_events WHERE event_type = 'turn_started';
