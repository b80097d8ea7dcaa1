-- Task classes: the unit a policy is calibrated for (e.g. an MMLU domain, or
-- "gsm8k"). Defaults to the task type's name.
ALTER TABLE steps ADD COLUMN task_class text;
UPDATE steps SET task_class = task_type WHERE task_class IS NULL;
ALTER TABLE steps ALTER COLUMN task_class SET NOT NULL;
CREATE INDEX steps_task_class ON steps (task_class);
