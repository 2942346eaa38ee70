-- What compliance keeps: every event (a message posted, a room joined or left, history read)
-- captured in the transaction that caused it, never changed or deleted by users or
-- administrators. The archiver writes these, in id order, from its checkpoint on.
CREATE TABLE compliance_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type  TEXT    NOT NULL,
    room_id     INTEGER NOT NULL,
    -- The room's name when the event happened: the room may be renamed or removed later.
    room_name   TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    content     TEXT    NOT NULL,
    -- The chat message this event posted, if any.
    message_id  INTEGER,
    at          TEXT    NOT NULL
);
CREATE INDEX compliance_events_by_message ON compliance_events (message_id);
-- The numeric ids the archive format gives senders, stable across batches.
CREATE TABLE compliance_users (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    uri  TEXT NOT NULL UNIQUE
);
-- Every change to configuration, tokens, locks and content, recorded with the change.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_by_object ON audit (kind, name, id);
CREATE INDEX audit_by_actor ON audit (actor, id);
-- Legal holds on a room or a category: retention and clearing are suspended while one stands.
CREATE TABLE holds (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    placed_by  TEXT NOT NULL,
    placed_at  TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
-- Messages not yet archived move into the compliance log under their own ids, so that the
-- archiver's checkpoint (an id) keeps its meaning.
INSERT INTO compliance_events (id, event_type, room_id, room_name, sender, content, message_id, at)
SELECT m.id, 'CHAT', m.room_id, COALESCE(o.name, ''), m.author, m.body, m.id, m.posted_at
FROM messages m LEFT JOIN objects o ON o.id = m.room_id AND o.kind = 'Room'
WHERE m.id > COALESCE((SELECT last_message_id FROM archive_checkpoint WHERE name = 'archiver'), 0)
ORDER BY m.id;
-- New events take ids past everything the checkpoint may already count as archived (a batch
-- pending included), whether or not anything was carried over.
DELETE FROM sqlite_sequence WHERE name = 'compliance_events';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'compliance_events', MAX(id) FROM (
    SELECT COALESCE(MAX(id), 0) AS id FROM compliance_events
    UNION ALL SELECT COALESCE(MAX(last_message_id), 0) FROM archive_checkpoint
    UNION ALL SELECT COALESCE(MAX(pending_last), 0) FROM archive_checkpoint
) AS bounds;
