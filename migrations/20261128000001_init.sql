-- upshift schema: jobs, their steps, one row per model call, and the
-- append-only decision log. Text columns hold the closed enums of
-- upshift-shared (tier, task type, reason codes), so audits can GROUP BY them.

CREATE TABLE jobs (
    id                      uuid PRIMARY KEY,
    tenant                  text NOT NULL,
    kind                    text NOT NULL,
    input                   jsonb NOT NULL,
    blast_radius            text NOT NULL CHECK (blast_radius IN ('low', 'medium', 'high')),
    budget_usd              double precision CHECK (budget_usd IS NULL OR budget_usd >= 0),
    status                  text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    result                  jsonb,
    cost_usd                double precision NOT NULL DEFAULT 0,
    always_strong_cost_usd  double precision NOT NULL DEFAULT 0,
    created_at              timestamptz NOT NULL DEFAULT now(),
    finished_at             timestamptz
);
CREATE INDEX jobs_tenant_created ON jobs (tenant, created_at DESC);

CREATE TABLE steps (
    id              uuid PRIMARY KEY,
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx             integer NOT NULL,
    name            text NOT NULL,
    task_type       text NOT NULL,
    input           text NOT NULL,
    depends_on      integer[] NOT NULL DEFAULT '{}',
    verifiers       text[] NOT NULL,
    output_schema   jsonb,
    ambiguity       double precision NOT NULL,
    ambiguity_source text NOT NULL CHECK (ambiguity_source IN ('request', 'estimate')),
    state           text NOT NULL CHECK (state IN ('pending', 'running', 'accepted', 'failed', 'cancelled')),
    current_tier    text,
    output          text,
    open_findings   jsonb NOT NULL DEFAULT '[]',
    UNIQUE (job_id, idx)
);

CREATE TABLE attempts (
    id              uuid PRIMARY KEY,
    step_id         uuid NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    tier            text NOT NULL,
    model           text NOT NULL,
    -- dispatched → answered | failed | timed_out; decided once, under the step's row lock.
    status          text NOT NULL CHECK (status IN ('dispatched', 'answered', 'failed', 'timed_out')),
    outcome         text CHECK (outcome IN ('accepted', 'escalated', 'rejected')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    deadline        timestamptz NOT NULL,
    completed_at    timestamptz,
    worker_id       text,
    provider        text,
    output          text,
    error           text,
    tokens_in       integer,
    tokens_out      integer,
    cost_usd        double precision,
    latency_ms      bigint,
    confidence      double precision,
    findings        jsonb NOT NULL DEFAULT '[]',
    -- Recorded correctness from a labelled dataset, for scoring only.
    label_correct   boolean
);
CREATE INDEX attempts_step ON attempts (step_id);
CREATE INDEX attempts_unpublished ON attempts (created_at) WHERE status = 'dispatched' AND published_at IS NULL;
CREATE INDEX attempts_open_deadline ON attempts (deadline) WHERE status = 'dispatched';

CREATE TABLE route_events (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    job_id          uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step_id         uuid REFERENCES steps (id) ON DELETE CASCADE,
    attempt_id      uuid REFERENCES attempts (id) ON DELETE CASCADE,
    event           text NOT NULL CHECK (event IN ('start', 'dispatch', 'accept', 'escalate', 'fail', 'late_result', 'cancel')),
    from_tier       text,
    to_tier         text,
    reasons         text[] NOT NULL DEFAULT '{}',
    policy_version  text NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX route_events_job ON route_events (job_id, id);
-- One decision per attempt, enforced by the database as well as by the router.
CREATE UNIQUE INDEX route_events_one_decision
    ON route_events (attempt_id) WHERE event IN ('accept', 'escalate', 'fail');
CREATE UNIQUE INDEX route_events_one_dispatch
    ON route_events (attempt_id) WHERE event = 'dispatch';

-- Audit views -----------------------------------------------------------------

-- The route of every job: one row per event with the attempt's figures.
CREATE VIEW job_routes AS
SELECT e.job_id, e.id AS seq, e.at, s.name AS step, s.task_type, e.attempt_id, e.event,
       e.from_tier, e.to_tier, e.reasons, a.model, a.cost_usd, a.latency_ms, a.confidence,
       e.policy_version
FROM route_events e
LEFT JOIN steps s ON s.id = e.step_id
LEFT JOIN attempts a ON a.id = e.attempt_id;

-- Escalations by reason and task type.
CREATE VIEW escalations_by_reason AS
SELECT reason, s.task_type, e.from_tier, count(*) AS escalations
FROM route_events e
JOIN steps s ON s.id = e.step_id
CROSS JOIN LATERAL unnest(e.reasons) AS reason
WHERE e.event = 'escalate'
GROUP BY reason, s.task_type, e.from_tier;

-- Spend against what the same calls would have cost on the strong tier.
CREATE VIEW spend_vs_strong AS
SELECT tenant, date_trunc('day', created_at) AS day, count(*) AS jobs,
       sum(cost_usd) AS cost_usd, sum(always_strong_cost_usd) AS always_strong_cost_usd
FROM jobs
GROUP BY tenant, date_trunc('day', created_at);
