ALTER TABLE interrupts DROP COLUMN answer_schema;
