-- Durable waits for people, timers and messages: a node asks a question (an interrupt),
-- sleeps, or waits for a message, and the run waits holding no lease and no worker until it
-- is answered, due, or sent what it waits for.

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

-- Messages sent to a run, by topic, in the order they were sent (`id`). A message is
-- received by the node a run continues at after waiting for its topic: that node's
-- completion records its step here, in the node's one statement, so it is received once.
CREATE TABLE messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id UUID NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    payload JSONB NOT NULL,
    sent_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    received_step INTEGER
);
CREATE INDEX idx_messages_unreceived ON messages (run_id, topic, id) WHERE received_step IS NULL;

-- What the run's last wait for a message was for: its topic, and the step of the node that
-- waited (the node after it receives). Kept after the run continues; a new wait replaces it.
ALTER TABLE runs
    ADD COLUMN wait_topic TEXT,
    ADD COLUMN wait_step INTEGER,
    ADD CONSTRAINT runs_wait_topic_check CHECK ((wait_topic IS NULL) = (wait_step IS NULL));
-- Claiming runs whose message has arrived.
CREATE INDEX idx_runs_waiting_for_messages ON runs (id)
    WHERE status = 'waiting' AND wait_topic IS NOT NULL;

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
