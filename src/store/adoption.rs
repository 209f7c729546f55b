//! Adoption: taking over the tables the Go service made instead of creating them.
//!
//! A database the Go service has been writing holds the seed's four tables (its
//! `000006_workflows` migration), which the library's first migration would create. When
//! they are there and exactly the seed's shape (every column with its type, nullability and
//! default, every index and constraint, no trigger), the first migration is recorded as
//! applied and the adoption is recorded beside it, in `workflows_adoptions`: `migrate status`
//! says "adopted", reverting the first migration releases the tables instead of dropping
//! them (they hold the Go service's data), and the migration that marks who submitted each
//! run knows that the rows already there are the Go service's. Tables of any other shape
//! are refused, naming each difference, and nothing is recorded.
//!
//! Runs on the migrator's synchronous connection, inside its lock; the catalog is read with
//! SQL of its own (the tables as the Go service made them are not the schema of
//! [`schema`](crate::schema)).

use std::collections::BTreeMap;

use diesel::connection::LoadConnection;
use diesel::pg::Pg;
use diesel::sql_types::{Array, Bool, Text};
use diesel::{QueryableByName, RunQueryDsl, sql_query};

use crate::error::Result;

/// The seed's tables, in the order they are created.
pub(crate) const SEED_TABLES: [&str; 4] = ["runs", "stages", "decisions", "checkpoints"];

/// The version of the first migration: the seed's tables.
pub(crate) const FIRST_MIGRATION: &str = "20261125000001";

/// Every column, constraint and index of the seed's tables as PostgreSQL describes them
/// (the catalog query below, on tables made by the seed's SQL): `(kind, table, name,
/// definition)`. `tests/it/adoption.rs` checks it against tables made from the seed's SQL.
const SEED_SHAPE: [(&str, &str, &str, &str); 49] = [
    ("column", "checkpoints", "checkpoint_node", "text NOT NULL"),
    (
        "column",
        "checkpoints",
        "created_at",
        "timestamp with time zone DEFAULT now()",
    ),
    ("column", "checkpoints", "run_id", "text NOT NULL"),
    ("column", "checkpoints", "state_data", "jsonb NOT NULL"),
    (
        "column",
        "checkpoints",
        "updated_at",
        "timestamp with time zone DEFAULT now()",
    ),
    (
        "column",
        "decisions",
        "created_at",
        "timestamp with time zone DEFAULT now()",
    ),
    ("column", "decisions", "from_node", "text NOT NULL"),
    (
        "column",
        "decisions",
        "id",
        "uuid NOT NULL DEFAULT gen_random_uuid()",
    ),
    ("column", "decisions", "predicate_name", "text"),
    ("column", "decisions", "predicate_result", "boolean"),
    ("column", "decisions", "reason", "text"),
    ("column", "decisions", "run_id", "uuid NOT NULL"),
    ("column", "decisions", "to_node", "text"),
    ("column", "runs", "completed_at", "timestamp with time zone"),
    (
        "column",
        "runs",
        "created_at",
        "timestamp with time zone DEFAULT now()",
    ),
    ("column", "runs", "error_message", "text"),
    (
        "column",
        "runs",
        "id",
        "uuid NOT NULL DEFAULT gen_random_uuid()",
    ),
    ("column", "runs", "params", "jsonb"),
    ("column", "runs", "result", "jsonb"),
    ("column", "runs", "started_at", "timestamp with time zone"),
    (
        "column",
        "runs",
        "status",
        "text NOT NULL DEFAULT 'pending'::text",
    ),
    (
        "column",
        "runs",
        "updated_at",
        "timestamp with time zone DEFAULT now()",
    ),
    ("column", "runs", "workflow_name", "text NOT NULL"),
    (
        "column",
        "stages",
        "created_at",
        "timestamp with time zone DEFAULT now()",
    ),
    ("column", "stages", "duration_ms", "integer"),
    ("column", "stages", "error_message", "text"),
    (
        "column",
        "stages",
        "id",
        "uuid NOT NULL DEFAULT gen_random_uuid()",
    ),
    ("column", "stages", "input_snapshot", "jsonb"),
    ("column", "stages", "iteration", "integer NOT NULL"),
    ("column", "stages", "node_name", "text NOT NULL"),
    ("column", "stages", "output_snapshot", "jsonb"),
    ("column", "stages", "run_id", "uuid NOT NULL"),
    ("column", "stages", "status", "text NOT NULL"),
    (
        "constraint",
        "checkpoints",
        "checkpoints_pkey",
        "PRIMARY KEY (run_id)",
    ),
    (
        "constraint",
        "decisions",
        "decisions_pkey",
        "PRIMARY KEY (id)",
    ),
    (
        "constraint",
        "decisions",
        "decisions_run_id_fkey",
        "FOREIGN KEY (run_id) REFERENCES runs(id) ON DELETE CASCADE",
    ),
    ("constraint", "runs", "runs_pkey", "PRIMARY KEY (id)"),
    ("constraint", "stages", "stages_pkey", "PRIMARY KEY (id)"),
    (
        "constraint",
        "stages",
        "stages_run_id_fkey",
        "FOREIGN KEY (run_id) REFERENCES runs(id) ON DELETE CASCADE",
    ),
    (
        "index",
        "checkpoints",
        "checkpoints_pkey",
        "UNIQUE USING btree (run_id)",
    ),
    (
        "index",
        "decisions",
        "decisions_pkey",
        "UNIQUE USING btree (id)",
    ),
    (
        "index",
        "decisions",
        "idx_decisions_run_id",
        "USING btree (run_id)",
    ),
    (
        "index",
        "runs",
        "idx_runs_created_at",
        "USING btree (created_at DESC)",
    ),
    ("index", "runs", "idx_runs_status", "USING btree (status)"),
    (
        "index",
        "runs",
        "idx_runs_workflow_name",
        "USING btree (workflow_name)",
    ),
    ("index", "runs", "runs_pkey", "UNIQUE USING btree (id)"),
    (
        "index",
        "stages",
        "idx_stages_node_name",
        "USING btree (node_name)",
    ),
    (
        "index",
        "stages",
        "idx_stages_run_id",
        "USING btree (run_id)",
    ),
    ("index", "stages", "stages_pkey", "UNIQUE USING btree (id)"),
];

/// One column, constraint, index or trigger of a table, as the catalog describes it.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
struct CatalogLine {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    definition: String,
}

/// The shape of the named tables of the current schema.
const DESCRIBE_TABLES: &str = "
SELECT 'column' AS kind, c.relname::text AS table_name, a.attname::text AS name,
       format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') AS definition
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = current_schema() AND c.relname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'index', t.relname::text, i.relname::text,
       CASE WHEN x.indisunique THEN 'UNIQUE ' ELSE '' END
       || substring(pg_get_indexdef(i.oid) from 'USING .*$')
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = current_schema() AND t.relname = ANY($1)
UNION ALL
SELECT 'constraint', t.relname::text, c.conname::text, pg_get_constraintdef(c.oid)
  FROM pg_constraint c
  JOIN pg_class t ON t.oid = c.conrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = current_schema() AND t.relname = ANY($1)
UNION ALL
SELECT 'trigger', t.relname::text, g.tgname::text, pg_get_triggerdef(g.oid)
  FROM pg_trigger g
  JOIN pg_class t ON t.oid = g.tgrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = current_schema() AND t.relname = ANY($1) AND NOT g.tgisinternal";

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = Bool)]
    found: bool,
}

/// Which of the seed's tables exist in the current schema (as tables or anything else).
pub(crate) fn existing_seed_tables<C: LoadConnection<Backend = Pg>>(
    conn: &mut C,
) -> Result<Vec<String>> {
    let names: Vec<Name> = sql_query(
        "SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = current_schema() AND c.relname = ANY($1) ORDER BY 1",
    )
    .bind::<Array<Text>, _>(&SEED_TABLES[..])
    .load(conn)?;
    Ok(names.into_iter().map(|n| n.name).collect())
}

/// How the seed's tables in the current schema differ from the seed's shape: one sentence
/// per difference, none if they are exactly the seed's.
pub(crate) fn differences_from_seed<C: LoadConnection<Backend = Pg>>(
    conn: &mut C,
) -> Result<Vec<String>> {
    let existing = existing_seed_tables(conn)?;
    let mut differences: Vec<String> = SEED_TABLES
        .iter()
        .filter(|t| !existing.iter().any(|e| e == *t))
        .map(|t| format!("table {t} is missing"))
        .collect();
    let found: Vec<CatalogLine> = sql_query(DESCRIBE_TABLES)
        .bind::<Array<Text>, _>(&SEED_TABLES[..])
        .load(conn)?;
    let key =
        |kind: &str, table: &str, name: &str| (kind.to_owned(), table.to_owned(), name.to_owned());
    let found: BTreeMap<_, _> = found
        .into_iter()
        .map(|l| (key(&l.kind, &l.table_name, &l.name), l.definition))
        .collect();
    let expected: BTreeMap<_, _> = SEED_SHAPE
        .iter()
        .filter(|(_, table, ..)| existing.iter().any(|e| e == table))
        .map(|(kind, table, name, definition)| (key(kind, table, name), (*definition).to_owned()))
        .collect();
    for ((kind, table, name), want) in &expected {
        match found.get(&(kind.clone(), table.clone(), name.clone())) {
            None => differences.push(format!("{kind} {table}.{name} ({want}) is missing")),
            Some(have) if have != want => differences.push(format!(
                "{kind} {table}.{name} is `{have}`, the seed's is `{want}`"
            )),
            Some(_) => {}
        }
    }
    for ((kind, table, name), have) in &found {
        if !expected.contains_key(&(kind.clone(), table.clone(), name.clone())) {
            differences.push(format!(
                "{kind} {table}.{name} (`{have}`) is not in the seed"
            ));
        }
    }
    Ok(differences)
}

/// Records that the first migration's tables were adopted rather than created (in the
/// caller's transaction).
pub(crate) fn record_adoption<C: LoadConnection<Backend = Pg>>(conn: &mut C) -> Result<()> {
    sql_query(
        "CREATE TABLE IF NOT EXISTS workflows_adoptions (
             version VARCHAR(50) PRIMARY KEY,
             adopted_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp()
         )",
    )
    .execute(conn)?;
    sql_query("COMMENT ON TABLE workflows_adoptions IS 'Migrations of workflows whose tables were adopted (made by the Go service), not created: reverting them keeps the tables.'")
        .execute(conn)?;
    sql_query("INSERT INTO workflows_adoptions (version) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind::<Text, _>(FIRST_MIGRATION)
        .execute(conn)?;
    Ok(())
}

/// Whether `version` was adopted.
pub(crate) fn is_adopted<C: LoadConnection<Backend = Pg>>(
    conn: &mut C,
    version: &str,
) -> Result<bool> {
    let found: Found =
        sql_query(
            "SELECT to_regclass(quote_ident(current_schema()) || '.workflows_adoptions') IS NOT NULL AS found",
        )
            .get_result(conn)?;
    if !found.found {
        return Ok(false);
    }
    let found: Found =
        sql_query("SELECT EXISTS (SELECT FROM workflows_adoptions WHERE version = $1) AS found")
            .bind::<Text, _>(version)
            .get_result(conn)?;
    Ok(found.found)
}

/// Forgets that `version` was adopted (its tables are being released or dropped).
pub(crate) fn forget_adoption<C: LoadConnection<Backend = Pg>>(
    conn: &mut C,
    version: &str,
) -> Result<()> {
    if is_adopted(conn, version)? {
        sql_query("DELETE FROM workflows_adoptions WHERE version = $1")
            .bind::<Text, _>(version)
            .execute(conn)?;
    }
    Ok(())
}
