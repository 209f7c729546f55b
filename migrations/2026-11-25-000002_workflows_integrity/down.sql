-- Back to the seed's schema exactly.

DROP TRIGGER checkpoints_touch_updated_at ON checkpoints;
DROP TRIGGER runs_touch_updated_at ON runs;
DROP FUNCTION workflows_touch_updated_at();

ALTER TABLE checkpoints
    DROP CONSTRAINT checkpoints_run_id_fkey,
    ALTER COLUMN run_id TYPE TEXT USING run_id::text;

ALTER TABLE checkpoints
    ALTER COLUMN created_at DROP NOT NULL,
    ALTER COLUMN created_at SET DEFAULT NOW(),
    ALTER COLUMN updated_at DROP NOT NULL,
    ALTER COLUMN updated_at SET DEFAULT NOW();

ALTER TABLE decisions
    ALTER COLUMN created_at DROP NOT NULL,
    ALTER COLUMN created_at SET DEFAULT NOW();

ALTER TABLE stages
    ALTER COLUMN created_at DROP NOT NULL,
    ALTER COLUMN created_at SET DEFAULT NOW();

ALTER TABLE runs
    ALTER COLUMN created_at DROP NOT NULL,
    ALTER COLUMN created_at SET DEFAULT NOW(),
    ALTER COLUMN updated_at DROP NOT NULL,
    ALTER COLUMN updated_at SET DEFAULT NOW();

ALTER TABLE stages
    DROP CONSTRAINT stages_run_id_node_name_iteration_key,
    DROP CONSTRAINT stages_duration_ms_check,
    DROP CONSTRAINT stages_iteration_check,
    DROP CONSTRAINT stages_status_check;

ALTER TABLE runs DROP CONSTRAINT runs_status_check;
