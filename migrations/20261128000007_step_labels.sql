-- The closed label set of a classification step; empty for other steps.
ALTER TABLE steps ADD COLUMN labels text[] NOT NULL DEFAULT '{}';
