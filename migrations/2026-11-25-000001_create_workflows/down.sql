-- The seed's 000006_workflows.down.sql, unchanged.
DROP INDEX IF EXISTS idx_decisions_run_id;
DROP TABLE IF EXISTS decisions;

DROP INDEX IF EXISTS idx_stages_run_id;
DROP INDEX IF EXISTS idx_stages_node_name;
DROP TABLE IF EXISTS stages;

DROP INDEX IF EXISTS idx_runs_workflow_name;
DROP INDEX IF EXISTS idx_runs_status;
DROP INDEX IF EXISTS idx_runs_created_at;
DROP TABLE IF EXISTS runs;

DROP TABLE IF EXISTS checkpoints;
