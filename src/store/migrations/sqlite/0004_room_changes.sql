-- Changes of rooms, in order, for live event streams.
CREATE TABLE room_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id     INTEGER NOT NULL,
    room_name   TEXT    NOT NULL,
    change      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    changed_at  TEXT    NOT NULL
);
