-- Back to the server's default compression (default_toast_compression) for values written from
-- now on; where the up migration changed nothing, neither does this.
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
            EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET COMPRESSION DEFAULT',
                           json_column.table_name, json_column.column_name);
        END LOOP;
    END IF;
END;
$$;
