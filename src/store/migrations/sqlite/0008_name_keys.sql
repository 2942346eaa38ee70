-- Names are unique per kind case-insensitively (after NFC), as the original's were; the key is
-- computed by Perch (SQL's lower() knows ASCII only) and backfilled when the store opens.
ALTER TABLE objects ADD COLUMN name_key TEXT;
CREATE INDEX objects_by_name_key ON objects (kind, name_key);
