-- Integrity the seed's schema lacks. Each statement fails on rows that break its rule instead
-- of changing them: on a database that holds such rows, this migration stops with an error
-- naming the constraint, and nothing is rewritten behind the operator's back.

-- Only the statuses the library knows can be stored.
ALTER TABLE runs
    ADD CONSTRAINT runs_status_check
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled'));

ALTER TABLE stages
    ADD CONSTRAINT stages_status_check CHECK (status IN ('started', 'completed', 'failed')),
    ADD CONSTRAINT stages_iteration_check CHECK (iteration >= 1),
    ADD CONSTRAINT stages_duration_ms_check CHECK (duration_ms >= 0),
    -- One stage row per node execution: a resumed run continues its iteration numbers.
    ADD CONSTRAINT stages_run_id_node_name_iteration_key UNIQUE (run_id, node_name, iteration);

-- Timestamps are never null, and clock_timestamp() (not now(), the transaction's start) keeps
-- rows written in one transaction in the order they were written.
ALTER TABLE runs
    ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT clock_timestamp(),
    ALTER COLUMN updated_at SET NOT NULL,
    ALTER COLUMN updated_at SET DEFAULT clock_timestamp();

ALTER TABLE stages
    ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT clock_timestamp();

ALTER TABLE decisions
    ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT clock_timestamp();

ALTER TABLE checkpoints
    ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT clock_timestamp(),
    ALTER COLUMN updated_at SET NOT NULL,
    ALTER COLUMN updated_at SET DEFAULT clock_timestamp();

-- The seed keys checkpoints by TEXT with no link to its run. A checkpoint is the state of one
-- run: key it by the run's UUID and remove it with its run.
ALTER TABLE checkpoints
    ALTER COLUMN run_id TYPE UUID USING run_id::uuid,
    ADD CONSTRAINT checkpoints_run_id_fkey
        FOREIGN KEY (run_id) REFERENCES runs (id) ON DELETE CASCADE;

-- updated_at is kept current by the database, whoever writes the row.
CREATE FUNCTION workflows_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$;

CREATE TRIGGER runs_touch_updated_at
    BEFORE UPDATE ON runs
    FOR EACH ROW EXECUTE FUNCTION workflows_touch_updated_at();

CREATE TRIGGER checkpoints_touch_updated_at
    BEFORE UPDATE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION workflows_touch_updated_at();
