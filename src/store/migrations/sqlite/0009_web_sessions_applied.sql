-- Browser sessions: a signed-in token becomes a session cookie; only the cookie's SHA-256 is
-- kept. A session ends when it expires, when it is signed out, or when its token goes.
CREATE TABLE web_sessions (
    hash TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX web_sessions_by_token ON web_sessions (token_hash);

-- The manifests of the last `perch apply`, as applied: the Git view compares the server with
-- them. One row; each apply replaces it. `stopped` says where an apply that failed stopped.
CREATE TABLE applied_manifests (
    id INTEGER PRIMARY KEY,
    applied_by TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    revision TEXT,
    stopped TEXT,
    files TEXT NOT NULL
);
