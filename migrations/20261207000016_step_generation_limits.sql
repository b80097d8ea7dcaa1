-- A step's generation limits, from the request (the OpenAI-compatible
-- door's `max_tokens` / `stop`, or a job step's): the most tokens its model
-- may write (each tier's own `max_tokens` stays the ceiling) and the
-- sequences at which its answer is cut. Sent with every task message.
ALTER TABLE steps
    ADD COLUMN max_tokens int CHECK (max_tokens > 0),
    ADD COLUMN stop text[] NOT NULL DEFAULT '{}';
