//! Reading what a schema holds from PostgreSQL's catalogs, to compare schemas.

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// One line per column, index, constraint and trigger of the current schema's tables, sorted;
/// the schema's own name is replaced by `S` so two schemas can be compared.
pub(crate) async fn describe(conn: &mut AsyncPgConnection) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        line: String,
    }
    let lines: Vec<Line> = diesel::sql_query(
        "SELECT format('column %s.%s %s null=%s default=%s', table_name, column_name, data_type, is_nullable, coalesce(column_default, '-')) AS line
           FROM information_schema.columns WHERE table_schema = current_schema()
         UNION ALL
         SELECT format('index %s %s', indexname, replace(indexdef, current_schema() || '.', 'S.'))
           FROM pg_indexes WHERE schemaname = current_schema()
         UNION ALL
         SELECT format('constraint %s %s %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid))
           FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
          WHERE n.nspname = current_schema()
         UNION ALL
         SELECT format('trigger %s %s', t.tgrelid::regclass, t.tgname)
           FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
          WHERE n.nspname = current_schema() AND NOT t.tgisinternal
         UNION ALL
         SELECT format('function %s', p.proname)
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = current_schema()
         ORDER BY 1",
    )
    .load(conn)
    .await
    .unwrap();
    lines
        .into_iter()
        .map(|l| l.line)
        .filter(|l| !l.contains("__diesel_schema_migrations"))
        .collect()
}

/// Whether a table of this name exists in the current schema.
pub(crate) async fn table_exists(conn: &mut AsyncPgConnection, table: &str) -> bool {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bool)]
        found: bool,
    }
    diesel::sql_query(
        "SELECT to_regclass(quote_ident(current_schema()) || '.' || $1) IS NOT NULL AS found",
    )
    .bind::<Text, _>(table)
    .get_result::<Found>(conn)
    .await
    .unwrap()
    .found
}
