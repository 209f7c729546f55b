-- Node policies: a retried node records one stage row per attempt, and a run waiting out a
-- long backoff gives up its lease and worker and says when it is due.

-- Each attempt at a node is a row of its own: (run, node, iteration, attempt) is unique, and
-- a node's completion is the one row of its step with status 'completed'.
ALTER TABLE stages
    ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1,
    ADD CONSTRAINT stages_attempt_check CHECK (attempt >= 1),
    DROP CONSTRAINT stages_run_id_node_name_iteration_key,
    ADD CONSTRAINT stages_run_id_node_name_iteration_attempt_key
        UNIQUE (run_id, node_name, iteration, attempt);

-- 'waiting': the run holds no lease and no worker; any worker continues it once it is due.
ALTER TABLE runs
    DROP CONSTRAINT runs_status_check,
    ADD CONSTRAINT runs_status_check
        CHECK (status IN ('pending', 'running', 'waiting', 'completed', 'failed', 'cancelled')),
    ADD COLUMN wake_at TIMESTAMP WITH TIME ZONE,
    ADD CONSTRAINT runs_wake_at_check CHECK ((status = 'waiting') = (wake_at IS NOT NULL));

-- Claiming waiting runs when they are due.
CREATE INDEX idx_runs_waiting ON runs (wake_at) WHERE status = 'waiting';
