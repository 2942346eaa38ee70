-- Only posts that carry an Idempotency-Key need the index that finds them by it. Every post
-- wrote an entry before (one keyed by its author, so a group of posts by many authors
-- touched a page each); NULL keys were never unique anyway, so what is refused is unchanged.
DROP INDEX messages_by_idempotency_key;
CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (author, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
