-- When the worker pulled the attempt and when it published the result, for
-- the per-hop orchestration overhead (`upshift bench engine`).
ALTER TABLE attempts ADD COLUMN received_at timestamptz;
ALTER TABLE attempts ADD COLUMN result_sent_at timestamptz;
