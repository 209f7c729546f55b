-- The JSON Schema an interrupt's answer must fit, when the node that asked gave one: an
-- answer that does not fit is refused before it is recorded.
ALTER TABLE interrupts ADD COLUMN answer_schema JSONB;
