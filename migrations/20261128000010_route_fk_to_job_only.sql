-- Route events and attempts reference their job, not each other.
--
-- The router writes a job's route events in the same transaction as the
-- steps and attempts they name (see orchestrator/src/router/unit.rs), and
-- deleting a job still removes all of it: route_events by their job_id,
-- attempts through their step. Each foreign key check is a query run through
-- SPI that takes a KEY SHARE lock on the referenced row for every inserted
-- row; for route events (three keys, about six rows a step) those checks
-- were a quarter of Postgres's CPU time in `upshift bench engine`.
ALTER TABLE route_events
    DROP CONSTRAINT route_events_step_id_fkey,
    DROP CONSTRAINT route_events_attempt_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_job_id_fkey;
