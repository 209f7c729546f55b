-- Durable waits for people and timers: a node asks a question (an interrupt) or sleeps, and
-- the run waits holding no lease and no worker until it is answered or due.

-- A run waiting for an answer has no due time until it is answered (or its question times
-- out); one waiting for a timer or a retry has one.
ALTER TABLE runs
    DROP CONSTRAINT runs_wake_at_check,
    ADD CONSTRAINT runs_wake_at_check CHECK (wake_at IS NULL OR status = 'waiting');

-- The questions nodes asked, and their answers. The node that asked completed in the same
-- statement that recorded its question; the node after it reads the answer.
CREATE TABLE interrupts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id UUID NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    -- What the answer is for, as the node named it.
    key TEXT NOT NULL,
    -- The node that asked, and its step.
    node_name TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    -- The question: what a person needs to answer it (a draft to approve, say).
    payload JSONB NOT NULL,
    answer JSONB,
    asked_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    answered_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT interrupts_answered_check CHECK ((answer IS NULL) = (answered_at IS NULL)),
    CONSTRAINT interrupts_run_id_iteration_key_key UNIQUE (run_id, iteration, key)
);

-- Wake-ups: also when a waiting run becomes due now (answered), so that an idle worker
-- continues it at once instead of at its next poll.
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

DROP TRIGGER runs_notify ON runs;
CREATE TRIGGER runs_notify
    AFTER INSERT OR UPDATE OF status, wake_at ON runs
    FOR EACH ROW EXECUTE FUNCTION workflows_notify();
