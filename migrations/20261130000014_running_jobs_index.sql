-- Admission counts each tenant's running jobs every second; the metrics
-- sampler counts all of them. Both read only this small partial index.
CREATE INDEX jobs_running_tenant ON jobs (tenant) WHERE status = 'running';
