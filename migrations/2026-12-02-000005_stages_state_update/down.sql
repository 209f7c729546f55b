ALTER TABLE stages DROP COLUMN state_update;
