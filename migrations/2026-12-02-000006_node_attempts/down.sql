DROP INDEX idx_runs_waiting;

-- A waiting run cannot wait without the column that says until when: it fails, and can be
-- resumed after its checkpoint.
UPDATE runs
SET status = 'failed',
    error_message = 'it was waiting to try a node again when the node_attempts migration was reverted; resume it',
    completed_at = clock_timestamp(),
    wake_at = NULL
WHERE status = 'waiting';

ALTER TABLE runs
    DROP CONSTRAINT runs_wake_at_check,
    DROP COLUMN wake_at,
    DROP CONSTRAINT runs_status_check,
    ADD CONSTRAINT runs_status_check
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled'));

-- Without attempts, one row per step: the last attempt of each stays.
DELETE FROM stages s
USING stages later
WHERE later.run_id = s.run_id
  AND later.node_name = s.node_name
  AND later.iteration = s.iteration
  AND later.attempt > s.attempt;

ALTER TABLE stages
    DROP CONSTRAINT stages_run_id_node_name_iteration_attempt_key,
    ADD CONSTRAINT stages_run_id_node_name_iteration_key UNIQUE (run_id, node_name, iteration),
    DROP CONSTRAINT stages_attempt_check,
    DROP COLUMN attempt;
