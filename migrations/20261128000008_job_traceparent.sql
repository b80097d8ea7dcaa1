-- The W3C traceparent of the request that created the job: every attempt of
-- the job is published in this trace, so one job is one trace.
ALTER TABLE jobs ADD COLUMN traceparent text;
