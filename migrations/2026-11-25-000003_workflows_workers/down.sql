DROP TRIGGER runs_notify ON runs;
DROP FUNCTION workflows_notify();

DROP INDEX idx_runs_finished;
DROP INDEX idx_runs_lease;
DROP INDEX idx_runs_pending;

ALTER TABLE runs
    DROP CONSTRAINT runs_recoveries_check,
    DROP CONSTRAINT runs_idempotency_key_key,
    DROP COLUMN recoveries,
    DROP COLUMN lease_expires_at,
    DROP COLUMN heartbeat_at,
    DROP COLUMN lease_token,
    DROP COLUMN owner,
    DROP COLUMN idempotency_key;
