-- One counter that every transaction changing configuration objects or tokens bumps at commit,
-- so that live streams on every node can tell cheaply whether access may have changed.
CREATE TABLE generation (
    id     INTEGER PRIMARY KEY,
    value  BIGINT NOT NULL
);
INSERT INTO generation (id, value) VALUES (1, 0);
