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
