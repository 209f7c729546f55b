-- A run waiting for a message cannot wait without the columns that say for which: it
-- fails, and can be resumed after its checkpoint.
UPDATE runs
SET status = 'failed',
    error_message = 'it was waiting for a message when the messages migration was reverted; resume it',
    completed_at = clock_timestamp(),
    wake_at = NULL
WHERE status = 'waiting' AND wait_topic IS NOT NULL;

DROP INDEX idx_runs_waiting_for_messages;
ALTER TABLE runs
    DROP CONSTRAINT runs_wait_topic_check,
    DROP COLUMN wait_step,
    DROP COLUMN wait_topic;
DROP TABLE messages;
