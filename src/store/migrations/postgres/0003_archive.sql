-- The compliance archiver's progress: every message up to last_message_id is archived; a
-- batch being written is recorded first, so that a crash rewrites exactly that batch.
CREATE TABLE archive_checkpoint (
    name            TEXT PRIMARY KEY,
    last_message_id BIGINT NOT NULL,
    pending_first   BIGINT,
    pending_last    BIGINT,
    last_run_at     TEXT
);
