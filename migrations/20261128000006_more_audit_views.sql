-- Tier success rates: per tenant, tier and task class, how many answers were
-- accepted there and how many escalated, and (where a labelled dataset is
-- replayed) how often the accepted answers were right.
CREATE VIEW tier_success_rates AS
SELECT j.tenant, a.tier, s.task_class,
       count(*) FILTER (WHERE a.outcome = 'accepted') AS accepted,
       count(*) FILTER (WHERE a.outcome = 'escalated') AS escalated,
       round(count(*) FILTER (WHERE a.outcome = 'accepted')::numeric / nullif(count(*) FILTER (WHERE a.outcome IS NOT NULL), 0), 3) AS acceptance_rate,
       round(count(*) FILTER (WHERE a.outcome = 'accepted' AND a.label_correct)::numeric
             / nullif(count(*) FILTER (WHERE a.outcome = 'accepted' AND a.label_correct IS NOT NULL), 0), 3) AS labelled_accuracy
FROM attempts a
JOIN steps s ON s.id = a.step_id
JOIN jobs j ON j.id = a.job_id
GROUP BY j.tenant, a.tier, s.task_class;

-- Needless escalations: the escalated answer was already right (known where
-- the attempt carries a correctness label, e.g. replayed recordings).
CREATE VIEW needless_escalations AS
SELECT j.tenant, e.job_id, s.name AS step, s.task_class, e.from_tier, e.to_tier, e.reasons, e.at
FROM route_events e
JOIN attempts a ON a.id = e.attempt_id
JOIN steps s ON s.id = e.step_id
JOIN jobs j ON j.id = e.job_id
WHERE e.event = 'escalate' AND a.label_correct;
