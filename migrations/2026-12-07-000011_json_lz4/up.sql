-- Every JSON column is compressed with lz4 where the server offers it (PostgreSQL 14 or later,
-- built with lz4); elsewhere nothing changes. A value over about 2 KB (a large state, a
-- snapshot, a model's answer) is compressed before it is stored out of line. Inserting a
-- megabyte of text that does not compress (model output mostly does not) took 18 ms with
-- PostgreSQL's default, pglz, which tries hard before storing it as it is, and 5 ms with lz4;
-- text that does compress is written faster by lz4 too, if less tightly (see the README).
-- Only values written from now on are affected: nothing is rewritten, and the columns' types
-- are unchanged.
-- The statements are executed from text so that PostgreSQL 13, which lacks the syntax, never
-- parses them.
DO $$
DECLARE
    json_column RECORD;
BEGIN
    IF EXISTS (SELECT FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        FOR json_column IN
            SELECT * FROM (VALUES
                ('runs', 'params'), ('runs', 'result'),
                ('stages', 'input_snapshot'), ('stages', 'output_snapshot'),
                ('stages', 'state_update'),
                ('checkpoints', 'state_data'),
                ('interrupts', 'payload'), ('interrupts', 'answer'),
                ('interrupts', 'answer_schema'),
                ('messages', 'payload')
            ) AS c (table_name, column_name)
        LOOP
            EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET COMPRESSION lz4',
                           json_column.table_name, json_column.column_name);
        END LOOP;
    END IF;
END;
$$;
