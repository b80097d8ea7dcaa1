-- A random token issued with each attempt's task message, which its result
-- must carry back (NATS is a trust boundary: the ids are visible to
-- tenants, the token only to readers of that tier's task subject). Attempts
-- from before this migration have none; their results are set aside.
ALTER TABLE attempts ADD COLUMN token uuid;
