-- Every query on stages selects one run's stages (`run_id = $1`, sometimes with node_name and
-- iteration as well), and the unique index on (run_id, node_name, iteration) serves all of
-- them, and the cascade from runs, by its leading column. The seed's single-column indexes
-- only cost writes: two more index entries for every stage a run records. bench/PLANS.md
-- shows get_stages on the unique index at a million runs.
DROP INDEX idx_stages_run_id;
DROP INDEX idx_stages_node_name;
