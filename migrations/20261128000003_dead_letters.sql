-- Messages set aside instead of processed: task messages that exhausted their
-- deliveries (the attempt is then decided as `dead_lettered`) and messages no
-- reader could understand. Kept for audit; never read by the router.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    source      text NOT NULL,
    subject     text NOT NULL,
    reason      text NOT NULL,
    attempt_id  uuid,
    payload     text NOT NULL
);
CREATE INDEX dead_letters_at ON dead_letters (at);
