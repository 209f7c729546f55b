//! The embedded migrations: up, down, redo, status, idempotence, concurrency, and leaving
//! other tables alone.

use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use workflows::db::{MIGRATIONS, Migrator};
use workflows::schema::runs;
use workflows::testing::IsolatedSchema;

use crate::catalog::{describe, table_exists};

const TABLES: [&str; 4] = ["runs", "stages", "decisions", "checkpoints"];
const FIRST: &str = "20261125000001";
const SECOND: &str = "20261125000002";
const THIRD: &str = "20261125000003";
const FOURTH: &str = "20261125000004";
const FIFTH: &str = "20261202000005";
const SIXTH: &str = "20261202000006";
const SEVENTH: &str = "20261202000007";
const EIGHTH: &str = "20261202000008";
const NINTH: &str = "20261202000009";
const TENTH: &str = "20261202000010";
const ELEVENTH: &str = "20261207000011";
const ALL: [&str; 11] = [
    FIRST, SECOND, THIRD, FOURTH, FIFTH, SIXTH, SEVENTH, EIGHTH, NINTH, TENTH, ELEVENTH,
];
const LAST: &str = ALL[ALL.len() - 1];

/// The migrations after the seed's, newest first: what reverting to the seed schema undoes.
fn after_the_seed() -> Vec<&'static str> {
    ALL[1..].iter().rev().copied().collect()
}

#[tokio::test]
async fn migrations_run_twice_do_nothing_the_second_time() {
    let schema = IsolatedSchema::create_unmigrated().await.unwrap();
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    assert_eq!(migrator.run_pending().await.unwrap(), ALL);
    assert_eq!(migrator.run_pending().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn status_lists_each_migration_and_whether_it_is_applied() {
    let schema = IsolatedSchema::create_unmigrated().await.unwrap();
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    let status = migrator.status().await.unwrap();
    assert_eq!(status.len(), ALL.len());
    assert!(status.iter().all(|m| !m.applied));
    assert_eq!(status[0].name, "2026-11-25-000001_create_workflows");
    migrator.run_pending().await.unwrap();
    assert!(migrator.status().await.unwrap().iter().all(|m| m.applied));
    migrator.revert_last().await.unwrap();
    let applied: Vec<_> = migrator
        .status()
        .await
        .unwrap()
        .iter()
        .map(|m| m.applied)
        .collect();
    let mut expected = [true; ALL.len()];
    expected[ALL.len() - 1] = false;
    assert_eq!(applied, expected);
}

#[tokio::test]
async fn down_to_zero_then_up_round_trips_and_leaves_other_tables_alone() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(
        "CREATE TABLE app_notes (id serial PRIMARY KEY, body text NOT NULL);
         INSERT INTO app_notes (body) VALUES ('keep me'), ('me too');",
    )
    .await
    .unwrap();
    let before = describe(&mut conn).await;

    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    assert_eq!(
        migrator.revert_all().await.unwrap(),
        ALL.iter().rev().copied().collect::<Vec<_>>()
    );
    for table in TABLES {
        assert!(
            !table_exists(&mut conn, table).await,
            "{table} is still there"
        );
    }
    assert!(
        migrator.revert_last().await.unwrap().is_none(),
        "nothing left to revert"
    );

    assert_eq!(migrator.run_pending().await.unwrap(), ALL);
    assert_eq!(describe(&mut conn).await, before, "the same schema again");
    let notes: Vec<String> = diesel::sql_query("SELECT body FROM app_notes ORDER BY id")
        .load::<Note>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.body)
        .collect();
    assert_eq!(notes, ["keep me", "me too"]);
}

#[derive(diesel::QueryableByName)]
struct Note {
    #[diesel(sql_type = diesel::sql_types::Text)]
    body: String,
}

#[tokio::test]
async fn reverting_the_integrity_migration_restores_the_seed_schema_exactly() {
    // The seed's SQL, run by hand in one schema ...
    let seed = IsolatedSchema::create_unmigrated().await.unwrap();
    let mut seed_conn = seed.pool().get().await.unwrap();
    seed_conn
        .batch_execute(include_str!(
            "../../migrations/2026-11-25-000001_create_workflows/up.sql"
        ))
        .await
        .unwrap();
    // ... and the library's migrations up, then all but the first down, in another.
    let ours = IsolatedSchema::create().await.unwrap();
    let mut migrator = Migrator::new(ours.pool().get().await.unwrap());
    for later in after_the_seed() {
        assert_eq!(
            migrator.revert_last().await.unwrap().as_deref(),
            Some(later)
        );
    }
    let mut our_conn = ours.pool().get().await.unwrap();

    let seed_shape = describe(&mut seed_conn).await;
    assert!(
        seed_shape
            .iter()
            .any(|l| l.starts_with("index idx_runs_created_at")),
        "{seed_shape:#?}"
    );
    assert_eq!(describe(&mut our_conn).await, seed_shape);
}

#[tokio::test]
async fn redo_reapplies_the_last_migration() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    let before = describe(&mut conn).await;
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    assert_eq!(migrator.redo().await.unwrap().as_deref(), Some(LAST));
    assert_eq!(describe(&mut conn).await, before);
}

#[tokio::test]
async fn the_integrity_migration_is_refused_while_rows_break_it_and_nothing_changes() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    for _ in after_the_seed() {
        migrator.revert_last().await.unwrap();
    }
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute("INSERT INTO runs (workflow_name, status) VALUES ('legacy', 'weird')")
        .await
        .unwrap();

    let err = migrator.run_pending().await.unwrap_err();
    assert!(
        matches!(&err, workflows::Error::NeedsRepair { .. })
            && err.to_string().contains("('weird')"),
        "{err}"
    );
    let status: String = runs::table
        .select(runs::status)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "weird", "the row is untouched");
    let applied: Vec<_> = migrator
        .status()
        .await
        .unwrap()
        .iter()
        .map(|m| m.applied)
        .collect();
    let mut expected = [false; ALL.len()];
    expected[0] = true;
    assert_eq!(applied, expected, "the failed migration is not recorded");
}

#[tokio::test]
async fn concurrent_migrators_take_turns() {
    let schema = IsolatedSchema::create_unmigrated().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let conn = schema.pool().get().await.unwrap();
        tasks.push(tokio::spawn(async move {
            Migrator::new(conn).run_pending().await
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        applied.extend(task.await.unwrap().expect("every migrator succeeds"));
    }
    applied.sort();
    assert_eq!(applied, ALL, "each migration applied exactly once");
}

#[test]
fn the_embedded_migrations_are_the_files_in_migrations() {
    use diesel::migration::MigrationSource;
    let names: Vec<String> = MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .unwrap()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    let mut dirs: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    dirs.sort();
    assert_eq!(names, dirs);
}

#[tokio::test]
async fn stages_are_indexed_by_id_and_by_their_unique_key_only() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    let indexes: Vec<String> = describe(&mut conn)
        .await
        .into_iter()
        .filter(|l| l.starts_with("index ") && l.contains(" ON S.stages "))
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned())
        .collect();
    // (run_id, node_name, iteration, attempt) serves every lookup of a run's stages.
    assert_eq!(
        indexes,
        [
            "stages_pkey",
            "stages_run_id_node_name_iteration_attempt_key"
        ]
    );
}

#[tokio::test]
async fn a_database_not_migrated_says_to_run_migrate_up() {
    let schema = IsolatedSchema::create_unmigrated().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    let id = workflows::RunId::from_uuid(uuid::Uuid::new_v4());
    let err = workflows::repository::find_run(&mut conn, id)
        .await
        .unwrap_err();
    assert!(
        matches!(err, workflows::Error::NotMigrated { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(r#"relation "runs" does not exist"#)
            && message.contains("workflows migrate up"),
        "{message}"
    );
}

#[tokio::test]
async fn a_database_migrated_by_an_older_version_says_to_run_migrate_up() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    // Back to the second migration: the third added idempotency keys.
    for _ in &ALL[2..] {
        migrator.revert_last().await.unwrap();
    }
    drop(migrator);
    let mut registry = workflows::Registry::new();
    registry
        .register(workflows::WorkflowDef::new("w", "w", |g, r, p| {
            Box::pin(crate::fixtures::linear(g, r, p))
        }))
        .unwrap();
    let executor = workflows::Executor::builder(schema.pool().clone(), registry)
        .build()
        .unwrap();
    let err = executor
        .submit("w", serde_json::json!({}), Some("key"))
        .await
        .unwrap_err();
    let message = err.to_string();
    // Names a column a later migration adds (which one depends on the statement).
    assert!(
        message.contains("does not exist") && message.contains("workflows migrate up"),
        "{message}"
    );
}

/// The compression of each JSON column of the current schema's tables (`table.column`,
/// `pg_attribute.attcompression`: `l` for lz4, `default` for the server's default), sorted; and
/// whether the server offers lz4.
async fn json_compression(conn: &mut diesel_async::AsyncPgConnection) -> (Vec<String>, bool) {
    #[derive(QueryableByName)]
    struct Offers {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        lz4: bool,
    }
    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = diesel::sql_types::Text)]
        line: String,
    }
    let offers: Offers = diesel::sql_query(
        "SELECT EXISTS (SELECT FROM pg_settings
                        WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) AS lz4",
    )
    .get_result(conn)
    .await
    .unwrap();
    if !offers.lz4 {
        // PostgreSQL 13 has no attcompression; a server without lz4 keeps every default.
        return (Vec::new(), false);
    }
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT format('%s.%s %s', c.relname, a.attname,
                       coalesce(nullif(a.attcompression::text, ''), 'default')) AS line
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
            AND a.atttypid = 'jsonb'::regtype AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY 1",
    )
    .load(conn)
    .await
    .unwrap();
    (columns.into_iter().map(|c| c.line).collect(), true)
}

#[tokio::test]
async fn every_json_column_is_compressed_with_lz4_where_the_server_offers_it_until_reverted() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    let (migrated, offers_lz4) = json_compression(&mut conn).await;
    if !offers_lz4 {
        // Nothing to see on such a server: the migration changes nothing there.
        return;
    }
    let columns = [
        "checkpoints.state_data",
        "interrupts.answer",
        "interrupts.answer_schema",
        "interrupts.payload",
        "messages.payload",
        "runs.params",
        "runs.result",
        "stages.input_snapshot",
        "stages.output_snapshot",
        "stages.state_update",
    ];
    let with = |compression: &str| -> Vec<String> {
        columns
            .iter()
            .map(|c| format!("{c} {compression}"))
            .collect()
    };
    assert_eq!(migrated, with("l"));

    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    assert_eq!(
        migrator.revert_last().await.unwrap().as_deref(),
        Some(ELEVENTH)
    );
    assert_eq!(json_compression(&mut conn).await.0, with("default"));
}
