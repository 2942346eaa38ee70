-- The objects whose name key is still to be computed (restored from an older backup; see
-- 0008), found without reading the whole table: every store that opens asks for them, and a
-- server of 100,000 rooms read them all (some 180 MB) to find none.
CREATE INDEX objects_without_name_key ON objects (id) WHERE name_key IS NULL;
