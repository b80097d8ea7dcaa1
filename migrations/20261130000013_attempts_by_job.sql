-- The job list (/ui), a job's route and its attempts all look attempts up
-- by job; without this index each listed job scanned the whole table.
CREATE INDEX attempts_job ON attempts (job_id);
