DROP TRIGGER runs_notify ON runs;
CREATE OR REPLACE FUNCTION workflows_notify() RETURNS trigger
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

DROP TABLE interrupts;

-- A run waiting for an answer has no due time, which the older constraint requires: it
-- fails, and can be resumed after its checkpoint.
UPDATE runs
SET status = 'failed',
    error_message = 'it was waiting for an answer when the interrupts migration was reverted; resume it',
    completed_at = clock_timestamp()
WHERE status = 'waiting' AND wake_at IS NULL;

ALTER TABLE runs
    DROP CONSTRAINT runs_wake_at_check,
    ADD CONSTRAINT runs_wake_at_check CHECK ((status = 'waiting') = (wake_at IS NOT NULL));
