CREATE OR REPLACE FUNCTION workflows_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' AND (TG_OP = 'INSERT' OR OLD.status <> 'pending') THEN
        PERFORM pg_notify('workflows_pending', '');
    ELSIF TG_OP = 'UPDATE' AND NEW.status = 'cancelled' AND OLD.status <> 'cancelled' THEN
        PERFORM pg_notify('workflows_cancelled', NEW.id::text);
    ELSIF TG_OP = 'UPDATE' AND NEW.status = 'waiting' AND NEW.wake_at IS NOT NULL
        AND NEW.wake_at IS DISTINCT FROM OLD.wake_at AND NEW.wake_at <= clock_timestamp() THEN
        PERFORM pg_notify('workflows_pending', '');
    END IF;
    RETURN NULL;
END;
$$;

DROP INDEX idx_runs_pending;
CREATE INDEX idx_runs_pending ON runs (created_at) WHERE status = 'pending';

ALTER TABLE runs DROP COLUMN submitted_by_library;
