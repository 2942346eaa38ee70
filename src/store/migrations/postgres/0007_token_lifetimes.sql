-- A token may expire; its last use is kept (to the minute) so that unused ones can be found.
ALTER TABLE tokens ADD COLUMN expires_at TEXT;
ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
