-- Who submitted each run. While teams migrate, the Go service and this library may share one
-- database: workers claim, take over and wake only the runs this library submitted, and the
-- Go service's inserts (which never set this column) are never executed a second time here.
-- The runs already here are this library's, unless it adopted the tables from the Go service:
-- then they are the Go service's (the library cannot have written to adopted tables before this
-- migration applied). Given as the column's default, so that no row is rewritten (and no
-- updated_at touched).
DO $$
DECLARE
    adopted BOOLEAN := false;
BEGIN
    IF to_regclass(quote_ident(current_schema()) || '.workflows_adoptions') IS NOT NULL THEN
        -- Only read once the table is known to exist.
        adopted := EXISTS (SELECT FROM workflows_adoptions WHERE version = '20261125000001');
    END IF;
    IF adopted THEN
        ALTER TABLE runs ADD COLUMN submitted_by_library BOOLEAN NOT NULL DEFAULT false;
    ELSE
        ALTER TABLE runs ADD COLUMN submitted_by_library BOOLEAN NOT NULL DEFAULT true;
    END IF;
END;
$$;
-- Rows inserted by anyone else from now on are not this library's.
ALTER TABLE runs ALTER COLUMN submitted_by_library SET DEFAULT false;

DROP INDEX idx_runs_pending;
CREATE INDEX idx_runs_pending ON runs (created_at) WHERE status = 'pending' AND submitted_by_library;

-- Only runs this library submitted wake its workers.
CREATE OR REPLACE FUNCTION workflows_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' AND NEW.submitted_by_library
        AND (TG_OP = 'INSERT' OR OLD.status <> 'pending') THEN
        PERFORM pg_notify('workflows_pending', '');
    ELSIF TG_OP = 'UPDATE' AND NEW.status = 'cancelled' AND OLD.status <> 'cancelled' THEN
        PERFORM pg_notify('workflows_cancelled', NEW.id::text);
    ELSIF TG_OP = 'UPDATE' AND NEW.status = 'waiting' AND NEW.wake_at IS NOT NULL
        AND NEW.wake_at IS DISTINCT FROM OLD.wake_at AND NEW.wake_at <= clock_timestamp() THEN
        PERFORM pg_notify('workflows_pending', '');
    END IF;
    RETURN NULL;
END;
$$;
