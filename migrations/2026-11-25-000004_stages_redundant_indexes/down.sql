CREATE INDEX idx_stages_run_id ON stages(run_id);
CREATE INDEX idx_stages_node_name ON stages(node_name);
