-- A stage stores what its node changed in the run's state (a StateUpdate: set, append,
-- merge, remove), instead of the whole state before and after it. Stages written before
-- (and by the Go service) keep their whole snapshots and have no update: a reader tells a
-- snapshot from an update by the column it is in.
ALTER TABLE stages ADD COLUMN state_update JSONB;
