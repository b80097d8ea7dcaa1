-- "Succeeded" means "defended". An answer that no tier could defend (the
-- top tier still had findings, or the budget stopped the cascade) ends
-- `unresolved`: the step and its job keep the best answer, marked
-- undefended, with the findings. The decision that says so is the route
-- event `unresolved`, and the attempt's outcome is `unresolved`.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check,
    ADD CONSTRAINT jobs_status_check CHECK (status IN ('running', 'succeeded', 'unresolved', 'failed'));
ALTER TABLE steps DROP CONSTRAINT steps_state_check,
    ADD CONSTRAINT steps_state_check
        CHECK (state IN ('pending', 'running', 'accepted', 'unresolved', 'failed', 'cancelled'));
ALTER TABLE attempts DROP CONSTRAINT attempts_outcome_check,
    ADD CONSTRAINT attempts_outcome_check CHECK (outcome IN ('accepted', 'unresolved', 'escalated', 'rejected'));
ALTER TABLE route_events DROP CONSTRAINT route_events_event_check,
    ADD CONSTRAINT route_events_event_check CHECK (event IN
        ('start', 'dispatch', 'accept', 'unresolved', 'escalate', 'fail', 'late_result', 'cancel'));
DROP INDEX route_events_one_decision;
CREATE UNIQUE INDEX route_events_one_decision
    ON route_events (attempt_id) WHERE event IN ('accept', 'unresolved', 'escalate', 'fail');

-- Tier success rates now tell defended answers from unresolved ones.
DROP VIEW tier_success_rates;
CREATE VIEW tier_success_rates AS
SELECT j.tenant, a.tier, s.task_class,
       count(*) FILTER (WHERE a.outcome = 'accepted') AS accepted,
       count(*) FILTER (WHERE a.outcome = 'unresolved') AS unresolved,
       count(*) FILTER (WHERE a.outcome = 'escalated') AS escalated,
       round(count(*) FILTER (WHERE a.outcome = 'accepted')::numeric / nullif(count(*) FILTER (WHERE a.outcome IS NOT NULL), 0), 3) AS acceptance_rate,
       round(count(*) FILTER (WHERE a.outcome = 'accepted' AND a.label_correct)::numeric
             / nullif(count(*) FILTER (WHERE a.outcome = 'accepted' AND a.label_correct IS NOT NULL), 0), 3) AS labelled_accuracy
FROM attempts a
JOIN steps s ON s.id = a.step_id
JOIN jobs j ON j.id = a.job_id
GROUP BY j.tenant, a.tier, s.task_class;

-- How jobs ended, per tenant and day: defended (`succeeded`), unresolved, failed.
CREATE VIEW job_outcomes AS
SELECT tenant, kind, date_trunc('day', created_at) AS day,
       count(*) FILTER (WHERE status = 'succeeded') AS defended,
       count(*) FILTER (WHERE status = 'unresolved') AS unresolved,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'running') AS running
FROM jobs
GROUP BY tenant, kind, date_trunc('day', created_at);

-- Why answers could not be defended: the open findings of unresolved steps.
CREATE VIEW unresolved_findings AS
SELECT j.tenant, s.job_id, s.name AS step, s.task_class, s.current_tier AS tier,
       f->>'code' AS reason, f->>'detail' AS detail
FROM steps s
JOIN jobs j ON j.id = s.job_id
CROSS JOIN LATERAL jsonb_array_elements(s.open_findings) AS f
WHERE s.state = 'unresolved';
