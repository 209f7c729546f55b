-- Durable, shared execution: a run is executed by whichever worker holds its lease, any
-- worker can take over a run whose lease expired, and runs are found and woken up by
-- PostgreSQL itself (SKIP LOCKED claims, LISTEN/NOTIFY).

ALTER TABLE runs
    -- A caller's key for `submit`: the same key gives the same run, never a second one.
    ADD COLUMN idempotency_key TEXT,
    -- Who executes the run, under which lease, and until when the lease holds.
    ADD COLUMN owner TEXT,
    ADD COLUMN lease_token UUID,
    ADD COLUMN heartbeat_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN lease_expires_at TIMESTAMP WITH TIME ZONE,
    -- How many times another worker took the run over after its lease expired.
    ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0,
    ADD CONSTRAINT runs_idempotency_key_key UNIQUE (idempotency_key),
    ADD CONSTRAINT runs_recoveries_check CHECK (recoveries >= 0);

-- Claiming: the oldest pending runs first.
CREATE INDEX idx_runs_pending ON runs (created_at) WHERE status = 'pending';
-- Recovery: running runs whose lease expired.
CREATE INDEX idx_runs_lease ON runs (lease_expires_at) WHERE status = 'running';
-- Retention: finished runs by age.
CREATE INDEX idx_runs_finished ON runs (completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');

-- Wake-ups, sent when the change commits: a run became pending (payload empty, so that many
-- in one transaction make one notification), or a run was cancelled (payload: its id).
CREATE FUNCTION workflows_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' AND (TG_OP = 'INSERT' OR OLD.status <> 'pending') THEN
        PERFORM pg_notify('workflows_pending', '');
    ELSIF TG_OP = 'UPDATE' AND NEW.status = 'cancelled' AND OLD.status <> 'cancelled' THEN
        PERFORM pg_notify('workflows_cancelled', NEW.id::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER runs_notify
    AFTER INSERT OR UPDATE OF status ON runs
    FOR EACH ROW EXECUTE FUNCTION workflows_notify();
