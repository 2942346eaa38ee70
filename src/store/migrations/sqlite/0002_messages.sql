CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id         INTEGER NOT NULL,
    author          TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    posted_at       TEXT    NOT NULL,
    -- 0 when the room's category keeps no chat history: kept for compliance only.
    in_history      INTEGER NOT NULL DEFAULT 1,
    -- 1 when an administrator replaced the text (Remove-CsPersistentChatMessage -ReplaceMessage).
    replaced        INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT
);
CREATE INDEX messages_by_room ON messages (room_id, id);
CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (author, idempotency_key);
