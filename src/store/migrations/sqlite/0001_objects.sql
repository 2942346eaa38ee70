CREATE TABLE objects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    category    TEXT,
    addin       TEXT,
    body        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    managed     INTEGER NOT NULL DEFAULT 0,
    protected   INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL,
    updated_by  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    UNIQUE (kind, name)
);
CREATE INDEX objects_by_category ON objects (kind, category);
CREATE INDEX objects_by_addin ON objects (kind, addin);

CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY,
    user_uri    TEXT NOT NULL,
    role        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE locks (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
