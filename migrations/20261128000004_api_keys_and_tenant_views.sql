-- API keys issued by `upshift keys create`: only the SHA-256 of a key is
-- stored; the key itself is shown once, when it is created.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant      text NOT NULL,
    key_sha256  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);

-- The audit views carry the tenant, so every audit query can be scoped to one.
DROP VIEW job_routes;
CREATE VIEW job_routes AS
SELECT j.tenant, e.job_id, e.id AS seq, e.at, s.name AS step, s.task_type, s.task_class, e.attempt_id, e.event,
       e.from_tier, e.to_tier, e.reasons, a.model, a.cost_usd, a.latency_ms, a.confidence,
       e.policy_version
FROM route_events e
JOIN jobs j ON j.id = e.job_id
LEFT JOIN steps s ON s.id = e.step_id
LEFT JOIN attempts a ON a.id = e.attempt_id;

DROP VIEW escalations_by_reason;
CREATE VIEW escalations_by_reason AS
SELECT j.tenant, reason, s.task_type, s.task_class, e.from_tier, count(*) AS escalations
FROM route_events e
JOIN jobs j ON j.id = e.job_id
JOIN steps s ON s.id = e.step_id
CROSS JOIN LATERAL unnest(e.reasons) AS reason
WHERE e.event = 'escalate'
GROUP BY j.tenant, reason, s.task_type, s.task_class, e.from_tier;
