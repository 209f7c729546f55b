//! Taking over a database the Go service made: adoption of its tables, the preflight that
//! refuses what its history left behind, the repair, its rows read back, a Go checkpoint
//! resumed, Go runs left to the Go service, and `down` keeping adopted tables. Every database
//! here is built from the seed's SQL alone (the first migration is that SQL, unchanged) and
//! rows written as the Go code writes them.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::{Value, json};
use workflows::db::{DefectKind, Migrator, Repaired};
use workflows::testing::IsolatedSchema;
use workflows::{
    BoxError, Error, Executor, GraphBuilder, Params, Registry, RunId, RunStatus, Runtime, State,
    Worker, WorkerConfig, WorkflowDef, lifecycle, repository,
};

use crate::catalog::table_exists;
use crate::fixtures::{HANG, mark, until_status};

const SEED_SQL: &str = include_str!("../../migrations/2026-11-25-000001_create_workflows/up.sql");
const FIRST: &str = "20261125000001";
/// The migration that records who submitted each run (`runs.submitted_by_library`).
const ORIGIN_MIGRATION: &str = "20261202000010";

/// A schema as the Go service leaves it: the seed's tables, and golang-migrate's own table
/// at version 6.
async fn go_database() -> IsolatedSchema {
    let schema = IsolatedSchema::create_unmigrated().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(SEED_SQL).await.unwrap();
    conn.batch_execute(
        "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
         INSERT INTO schema_migrations VALUES (6, false);",
    )
    .await
    .unwrap();
    schema
}

const GO_RUN: &str = "11111111-1111-4111-8111-111111111111";
const GO_FAILED: &str = "22222222-2222-4222-8222-222222222222";
const GO_PENDING: &str = "33333333-3333-4333-8333-333333333333";
const GO_RUNNING: &str = "44444444-4444-4444-8444-444444444444";

/// Rows as the Go service writes them: a completed run with its stages and decision, a run
/// that failed after its checkpoint, a pending run and a running one (no lease: the Go
/// service has none).
const GO_ROWS: &str = "
INSERT INTO runs (id, workflow_name, status, params, result, started_at, completed_at, created_at, updated_at) VALUES
  ('11111111-1111-4111-8111-111111111111', 'summarize', 'completed', '{\"topic\": \"rust\"}', '{\"summary\": \"fast\", \"score\": 0.5}',
   '2026-01-01T12:00:01Z', '2026-01-01T12:00:05Z', '2026-01-01T12:00:00Z', '2026-01-01T12:00:05Z');
INSERT INTO runs (id, workflow_name, status, params, error_message, started_at, completed_at, created_at, updated_at) VALUES
  ('22222222-2222-4222-8222-222222222222', 'go_chain', 'failed', '{}', 'node b: upstream timeout',
   '2026-01-02T12:00:01Z', '2026-01-02T12:00:09Z', '2026-01-02T12:00:00Z', '2026-01-02T12:00:09Z');
INSERT INTO runs (id, workflow_name, status, params, created_at, updated_at) VALUES
  ('33333333-3333-4333-8333-333333333333', 'go_chain', 'pending', '{}', '2026-01-03T12:00:00Z', '2026-01-03T12:00:00Z');
INSERT INTO runs (id, workflow_name, status, params, started_at, created_at, updated_at) VALUES
  ('44444444-4444-4444-8444-444444444444', 'go_chain', 'running', '{}', '2026-01-04T12:00:01Z', '2026-01-04T12:00:00Z', '2026-01-04T12:00:01Z');
INSERT INTO stages (run_id, node_name, iteration, status, input_snapshot, output_snapshot, duration_ms, created_at) VALUES
  ('11111111-1111-4111-8111-111111111111', 'plan', 1, 'completed', '{\"topic\": \"rust\"}', '{\"topic\": \"rust\", \"plan\": 1}', 12, '2026-01-01T12:00:02Z'),
  ('11111111-1111-4111-8111-111111111111', 'write', 2, 'completed', '{\"plan\": 1}', '{\"summary\": \"fast\"}', 30, '2026-01-01T12:00:03Z'),
  ('22222222-2222-4222-8222-222222222222', 'a', 1, 'completed', '{}', '{\"a\": 1}', 5, '2026-01-02T12:00:02Z');
INSERT INTO stages (run_id, node_name, iteration, status, input_snapshot, error_message, created_at) VALUES
  ('22222222-2222-4222-8222-222222222222', 'b', 2, 'failed', '{\"a\": 1}', 'upstream timeout', '2026-01-02T12:00:03Z');
INSERT INTO decisions (run_id, from_node, to_node, predicate_name, predicate_result, reason, created_at) VALUES
  ('11111111-1111-4111-8111-111111111111', 'plan', 'write', 'always', true, 'edge to write', '2026-01-01T12:00:02.5Z'),
  ('22222222-2222-4222-8222-222222222222', 'a', 'b', NULL, NULL, NULL, '2026-01-02T12:00:02.5Z');
INSERT INTO checkpoints (run_id, state_data, checkpoint_node, created_at, updated_at) VALUES
  ('22222222-2222-4222-8222-222222222222',
   '{\"data\": {\"a\": 1}, \"run_id\": \"22222222-2222-4222-8222-222222222222\", \"checkpoint_node\": \"a\", \"timestamp\": \"2026-01-02T12:00:02Z\", \"iteration\": 1}',
   'a', '2026-01-02T12:00:02Z', '2026-01-02T12:00:02Z');
";

/// Every defect the Go service's history leaves, once each (or as said).
const GO_DEFECTS: &str = "
-- A run resumed twice by the Go service: iteration numbers restarted at 1 each time.
INSERT INTO runs (id, workflow_name, status, created_at, updated_at) VALUES
  ('55555555-5555-4555-8555-555555555555', 'go_chain', 'completed', '2026-02-01T12:00:00Z', '2026-02-01T12:10:00Z');
INSERT INTO stages (run_id, node_name, iteration, status, created_at) VALUES
  ('55555555-5555-4555-8555-555555555555', 'a', 1, 'completed', '2026-02-01T12:00:01Z'),
  ('55555555-5555-4555-8555-555555555555', 'b', 2, 'failed',    '2026-02-01T12:00:02Z'),
  ('55555555-5555-4555-8555-555555555555', 'b', 1, 'failed',    '2026-02-01T12:05:00Z'),
  ('55555555-5555-4555-8555-555555555555', 'b', 1, 'completed', '2026-02-01T12:09:00Z'),
  ('55555555-5555-4555-8555-555555555555', 'c', 2, 'completed', '2026-02-01T12:09:30Z');
-- Checkpoints of runs long deleted, and one keyed by something that is not a UUID.
INSERT INTO checkpoints (run_id, state_data, checkpoint_node) VALUES
  ('66666666-6666-4666-8666-666666666666', '{}', 'a'),
  ('77777777-7777-4777-8777-777777777777', '{}', 'b'),
  ('run-42', '{}', 'a');
-- Statuses the library does not know: one only in case, one not at all.
INSERT INTO runs (id, workflow_name, status, created_at, updated_at) VALUES
  ('88888888-8888-4888-8888-888888888888', 'go_chain', 'Completed', '2026-02-02T12:00:00Z', '2026-02-02T12:00:00Z'),
  ('99999999-9999-4999-8999-999999999999', 'go_chain', 'paused', '2026-02-03T12:00:00Z', '2026-02-03T12:00:00Z');
INSERT INTO stages (run_id, node_name, iteration, status, created_at) VALUES
  ('99999999-9999-4999-8999-999999999999', 'a', 1, 'skipped', '2026-02-03T12:00:01Z');
-- A negative duration (a clock stepped back).
INSERT INTO stages (run_id, node_name, iteration, status, duration_ms, created_at) VALUES
  ('88888888-8888-4888-8888-888888888888', 'a', 1, 'completed', -3, '2026-02-02T12:00:01Z');
-- Timestamps written as NULL.
INSERT INTO runs (id, workflow_name, status, started_at, created_at, updated_at) VALUES
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'go_chain', 'failed', '2026-02-04T12:00:01Z', NULL, NULL);
INSERT INTO stages (run_id, node_name, iteration, status, created_at) VALUES
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a', 1, 'failed', NULL);
INSERT INTO decisions (run_id, from_node, to_node, created_at) VALUES
  ('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', 'a', 'b', NULL);
";

fn id(text: &str) -> RunId {
    text.parse().unwrap()
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .await
        .unwrap()
        .n
}

/// The run's stages as (node, iteration, status), in order.
async fn steps_of(conn: &mut AsyncPgConnection, run: RunId) -> Vec<(String, i32, String)> {
    repository::stages(conn, run)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.node_name, s.iteration, s.status.to_string()))
        .collect()
}

/// The migrations after the first, as `run_pending` reports them.
fn after_the_first() -> Vec<String> {
    use diesel::migration::MigrationSource;
    MigrationSource::<diesel::pg::Pg>::migrations(&workflows::db::MIGRATIONS)
        .unwrap()
        .iter()
        .skip(1)
        .map(|m| m.name().version().to_string())
        .collect()
}

#[tokio::test]
async fn the_go_service_s_tables_are_adopted_not_created_and_status_says_adopted() {
    let schema = go_database().await;
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    assert!(migrator.adopt().await.unwrap(), "adopted now");
    assert!(!migrator.adopt().await.unwrap(), "only once");
    assert_eq!(migrator.run_pending().await.unwrap(), after_the_first());
    let status = migrator.status().await.unwrap();
    assert_eq!(
        status
            .iter()
            .map(|m| (m.applied, m.adopted))
            .collect::<Vec<_>>()[..2],
        [(true, true), (true, false)]
    );
    assert!(status.iter().all(|m| m.applied));
    let mut conn = schema.pool().get().await.unwrap();
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM schema_migrations WHERE version = 6"
        )
        .await,
        1,
        "golang-migrate's table is left alone"
    );
}

#[tokio::test]
async fn run_pending_adopts_by_itself_for_library_users() {
    let schema = go_database().await;
    let applied = workflows::db::run_pending_migrations(schema.pool())
        .await
        .unwrap();
    assert_eq!(
        applied,
        after_the_first(),
        "the first is adopted, not applied"
    );
}

#[tokio::test]
async fn tables_of_another_shape_are_refused_naming_each_difference_and_nothing_is_recorded() {
    let schema = go_database().await;
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(
        "ALTER TABLE runs ADD COLUMN tenant text;
         DROP INDEX idx_runs_status;
         ALTER TABLE stages ALTER COLUMN duration_ms TYPE bigint;",
    )
    .await
    .unwrap();
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    let err = migrator.run_pending().await.unwrap_err();
    let Error::NotAdoptable { differences } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(
        differences,
        &[
            "column stages.duration_ms is `bigint`, the seed's is `integer`",
            "index runs.idx_runs_status (USING btree (status)) is missing",
            "column runs.tenant (`text`) is not in the seed",
        ]
    );
    let message = err.to_string();
    assert!(
        message.contains("did not adopt them and changed nothing")
            && message.contains("- index runs.idx_runs_status (USING btree (status)) is missing")
            && message.contains("workflows migrate up"),
        "{message}"
    );
    assert!(migrator.status().await.unwrap().iter().all(|m| !m.applied));
    assert!(!table_exists(&mut conn, "workflows_adoptions").await);
}

#[tokio::test]
async fn a_database_missing_one_of_the_seed_s_tables_is_refused_naming_it() {
    let schema = go_database().await;
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute("DROP TABLE decisions").await.unwrap();
    let err = Migrator::new(schema.pool().get().await.unwrap())
        .run_pending()
        .await
        .unwrap_err();
    let Error::NotAdoptable { differences } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(differences, &["table decisions is missing"]);
}

/// Rows as JSON, without the ids the database gave them.
fn without_ids<T: serde::Serialize>(rows: &[T]) -> Vec<Value> {
    rows.iter()
        .map(|row| {
            let mut row = serde_json::to_value(row).unwrap();
            row.as_object_mut().unwrap().remove("id");
            row
        })
        .collect()
}

#[tokio::test]
async fn every_go_row_reads_back_with_the_json_the_go_service_gives() {
    let schema = go_database().await;
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(GO_ROWS).await.unwrap();
    workflows::db::run_pending_migrations(schema.pool())
        .await
        .unwrap();

    let run = repository::find_run(&mut conn, id(GO_RUN)).await.unwrap();
    assert_eq!(
        serde_json::to_value(&run).unwrap(),
        json!({
            "id": GO_RUN,
            "workflow_name": "summarize",
            "status": "completed",
            "params": {"topic": "rust"},
            "result": {"summary": "fast", "score": 0.5},
            "started_at": "2026-01-01T12:00:01Z",
            "completed_at": "2026-01-01T12:00:05Z",
            "created_at": "2026-01-01T12:00:00Z",
            "updated_at": "2026-01-01T12:00:05Z",
        })
    );
    let stages = without_ids(&repository::stages(&mut conn, id(GO_RUN)).await.unwrap());
    assert_eq!(
        stages,
        [
            json!({
                "run_id": GO_RUN, "node_name": "plan", "iteration": 1, "status": "completed",
                "input_snapshot": {"topic": "rust"}, "output_snapshot": {"topic": "rust", "plan": 1},
                "duration_ms": 12, "created_at": "2026-01-01T12:00:02Z",
            }),
            json!({
                "run_id": GO_RUN, "node_name": "write", "iteration": 2, "status": "completed",
                "input_snapshot": {"plan": 1}, "output_snapshot": {"summary": "fast"},
                "duration_ms": 30, "created_at": "2026-01-01T12:00:03Z",
            }),
        ]
    );
    let decisions = without_ids(&repository::decisions(&mut conn, id(GO_RUN)).await.unwrap());
    assert_eq!(
        decisions,
        [json!({
            "run_id": GO_RUN, "from_node": "plan", "to_node": "write", "predicate_name": "always",
            "predicate_result": true, "reason": "edge to write", "created_at": "2026-01-01T12:00:02.500Z",
        })]
    );
    let failed = repository::find_run(&mut conn, id(GO_FAILED))
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("node b: upstream timeout")
    );
}

#[tokio::test]
async fn the_preflight_refuses_every_defect_with_a_report_and_changes_nothing() {
    let schema = go_database().await;
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(GO_ROWS).await.unwrap();
    conn.batch_execute(GO_DEFECTS).await.unwrap();
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());

    let err = migrator.run_pending().await.unwrap_err();
    let Error::NeedsRepair { plan } = &err else {
        panic!("{err:?}");
    };
    let found: Vec<(DefectKind, u64)> = plan.defects.iter().map(|d| (d.kind, d.rows)).collect();
    assert_eq!(
        found,
        [
            (DefectKind::NonUuidCheckpoints, 1),
            (DefectKind::OrphanCheckpoints, 2),
            (DefectKind::UnknownRunStatuses, 2),
            (DefectKind::UnknownStageStatuses, 1),
            (DefectKind::NegativeDurations, 1),
            (DefectKind::MissingTimestamps { table: "runs" }, 1),
            (DefectKind::MissingTimestamps { table: "stages" }, 1),
            (DefectKind::MissingTimestamps { table: "decisions" }, 1),
            (DefectKind::RepeatedIterations, 1),
        ]
    );
    let message = err.to_string();
    for expected in [
        "- 1 checkpoints have a run_id that is not a UUID",
        "e.g. checkpoint 'run-42' (node a)",
        "- 2 checkpoints belong to no run",
        "e.g. checkpoint '66666666-6666-4666-8666-666666666666' (node a); checkpoint '77777777-7777-4777-8777-777777777777' (node b)",
        "run 99999999-9999-4999-8999-999999999999 ('paused')",
        "run 55555555-5555-4555-8555-555555555555: b at iteration 1, 2 times",
        "workflows migrate repair --apply",
    ] {
        assert!(message.contains(expected), "{expected:?} in:\n{message}");
    }
    // Adopted, but the integrity migration is not applied and no row changed.
    let applied: Vec<bool> = migrator
        .status()
        .await
        .unwrap()
        .iter()
        .map(|m| m.applied)
        .collect();
    assert_eq!(&applied[..3], [true, false, false]);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM checkpoints").await,
        4
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM runs WHERE status = 'paused'"
        )
        .await,
        1
    );
    assert!(!table_exists(&mut conn, "workflows_repair_archive").await);
}

#[tokio::test]
async fn repair_shows_its_plan_then_repairs_each_defect_with_exact_counts_archiving_every_row() {
    let schema = go_database().await;
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(GO_ROWS).await.unwrap();
    conn.batch_execute(GO_DEFECTS).await.unwrap();
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    // Repair works on the Go service's tables before they are adopted too.
    let plan = migrator.repair_plan().await.unwrap();
    assert_eq!(plan.defects.len(), 9, "{plan}");

    let repaired = migrator.repair().await.unwrap();
    let repaired: Vec<(DefectKind, u64)> = repaired
        .into_iter()
        .map(|Repaired { kind, rows }| (kind, rows))
        .collect();
    assert_eq!(
        repaired,
        [
            (DefectKind::NonUuidCheckpoints, 1),
            (DefectKind::OrphanCheckpoints, 2),
            (DefectKind::UnknownRunStatuses, 2),
            (DefectKind::UnknownStageStatuses, 1),
            (DefectKind::NegativeDurations, 1),
            (DefectKind::MissingTimestamps { table: "runs" }, 1),
            (DefectKind::MissingTimestamps { table: "stages" }, 1),
            (DefectKind::MissingTimestamps { table: "decisions" }, 1),
            // b@1 (12:05) becomes 3, b@1 (12:09) 4, c@2 5; a@1 and b@2 keep theirs.
            (DefectKind::RepeatedIterations, 3),
        ]
    );
    assert!(migrator.repair_plan().await.unwrap().is_empty());
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM workflows_repair_archive"
        )
        .await,
        13,
        "every row changed or moved, archived once per repair"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM workflows_repair_archive WHERE table_name = 'checkpoints' AND row_data->>'run_id' = 'run-42'"
        )
        .await,
        1
    );

    assert_eq!(migrator.run_pending().await.unwrap(), after_the_first());
    let resumed_twice = steps_of(&mut conn, id("55555555-5555-4555-8555-555555555555")).await;
    assert_eq!(
        resumed_twice,
        [
            ("a".to_owned(), 1, "completed".to_owned()),
            ("b".to_owned(), 2, "failed".to_owned()),
            ("b".to_owned(), 3, "failed".to_owned()),
            ("b".to_owned(), 4, "completed".to_owned()),
            ("c".to_owned(), 5, "completed".to_owned()),
        ]
    );
    let paused = repository::find_run(&mut conn, id("99999999-9999-4999-8999-999999999999"))
        .await
        .unwrap();
    assert_eq!(paused.status, RunStatus::Failed);
    assert_eq!(
        paused.error_message.as_deref(),
        Some(
            "its status was 'paused', which workflows does not know (set to failed by workflows migrate repair)"
        )
    );
    let in_case = repository::find_run(&mut conn, id("88888888-8888-4888-8888-888888888888"))
        .await
        .unwrap();
    assert_eq!(
        (in_case.status, in_case.error_message),
        (RunStatus::Completed, None)
    );
    let untimed = repository::find_run(&mut conn, id("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"))
        .await
        .unwrap();
    assert_eq!(
        untimed.created_at.to_rfc3339(),
        "2026-02-04T12:00:01+00:00",
        "from started_at"
    );
}

#[tokio::test]
async fn a_repair_of_a_clean_database_does_nothing() {
    let schema = go_database().await;
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(GO_ROWS).await.unwrap();
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    assert!(migrator.repair_plan().await.unwrap().is_empty());
    assert!(migrator.repair().await.unwrap().is_empty());
    migrator.run_pending().await.unwrap();
    assert!(
        migrator.repair().await.unwrap().is_empty(),
        "nothing once migrated"
    );
}

async fn go_chain(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("a", mark)
        .add_node("b", mark)
        .add_node("c", mark)
        .add_edge("a", "b")
        .add_edge("b", "c")
        .set_entry_point("a")
        .add_exit_point("c");
    Ok(State::new())
}

fn executor(schema: &IsolatedSchema) -> Executor {
    let mut registry = Registry::new();
    registry
        .register(WorkflowDef::new("go_chain", "a, b, c", |g, r, p| {
            Box::pin(go_chain(g, r, p))
        }))
        .unwrap();
    Executor::builder(schema.pool().clone(), registry)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_run_the_go_service_failed_resumes_from_its_go_checkpoint() {
    let schema = go_database().await;
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(GO_ROWS).await.unwrap();
    workflows::db::run_pending_migrations(schema.pool())
        .await
        .unwrap();
    let executor = executor(&schema);

    let run = executor
        .resume(id(GO_FAILED))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(
        run.result.unwrap().to_value().unwrap(),
        json!({"a": 1, "b": 3, "c": 4}),
        "on from the Go checkpoint's state"
    );
    let steps = steps_of(&mut conn, id(GO_FAILED)).await;
    assert_eq!(
        steps,
        [
            ("a".to_owned(), 1, "completed".to_owned()),
            ("b".to_owned(), 2, "failed".to_owned()),
            ("b".to_owned(), 3, "completed".to_owned()),
            ("c".to_owned(), 4, "completed".to_owned()),
        ],
        "a is not run again; numbering continues after the Go service's"
    );
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Marked {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Bool)]
    submitted_by_library: bool,
}

async fn marks(conn: &mut AsyncPgConnection) -> Vec<Marked> {
    diesel::sql_query(
        "SELECT id::text AS id, status, submitted_by_library FROM runs ORDER BY created_at",
    )
    .load(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn workers_leave_the_go_service_s_runs_alone_which_can_still_be_listed_shown_and_cancelled() {
    let schema = go_database().await;
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(GO_ROWS).await.unwrap();
    workflows::db::run_pending_migrations(schema.pool())
        .await
        .unwrap();
    // The Go service, still running beside the library, inserts a run as it always has.
    conn.batch_execute(
        "INSERT INTO runs (id, workflow_name, status, params) VALUES ('bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb', 'go_chain', 'pending', '{}')",
    )
    .await
    .unwrap();
    let executor = executor(&schema);
    // Submitted after both Go pending runs: workers claim the oldest first, so they would
    // have taken a Go run before it if they could.
    let ours = executor.submit("go_chain", json!({}), None).await.unwrap();
    let pool = schema.pool().clone();
    let report = Worker::new(
        executor.clone(),
        WorkerConfig::default()
            .poll_interval(Duration::from_millis(20))
            .concurrency(1),
    )
    .run_until(async {
        until_status(&pool, ours.id, RunStatus::Completed).await;
    })
    .await;
    drop(report);

    let marked = marks(&mut conn).await;
    let status_of = |run: &str| {
        marked
            .iter()
            .find(|m| m.id == run)
            .map(|m| (m.status.as_str(), m.submitted_by_library))
            .unwrap()
    };
    assert_eq!(status_of(GO_PENDING), ("pending", false));
    assert_eq!(
        status_of("bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"),
        ("pending", false)
    );
    assert_eq!(
        status_of(GO_RUNNING),
        ("running", false),
        "never taken over"
    );
    assert_eq!(status_of(&ours.id.to_string()), ("completed", true));

    let listed = repository::list_runs(
        &mut conn,
        &workflows::PageConfig::default(),
        workflows::PageRequest::default(),
        &workflows::RunFilters::default(),
    )
    .await
    .unwrap();
    assert_eq!(listed.total, 6);
    let shown = repository::find_run(&mut conn, id(GO_RUNNING))
        .await
        .unwrap();
    assert_eq!(shown.status, RunStatus::Running);
    let cancelled = lifecycle::cancel_run(&mut conn, id(GO_RUNNING))
        .await
        .unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn runs_the_library_made_before_the_origin_migration_stay_its_own() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    // Back to before the origin migration, newest first.
    let mut reverted = Vec::new();
    while reverted.last().map(String::as_str) != Some(ORIGIN_MIGRATION) {
        reverted.push(migrator.revert_last().await.unwrap().unwrap());
    }
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute("INSERT INTO runs (workflow_name, status) VALUES ('quick', 'pending')")
        .await
        .unwrap();
    reverted.reverse();
    assert_eq!(migrator.run_pending().await.unwrap(), reverted);
    conn.batch_execute("INSERT INTO runs (workflow_name, status) VALUES ('quick', 'pending')")
        .await
        .unwrap();
    let marked: Vec<bool> = marks(&mut conn)
        .await
        .into_iter()
        .map(|m| m.submitted_by_library)
        .collect();
    assert_eq!(
        marked,
        [true, false],
        "made before: ours; inserted by another service after: not"
    );
}

#[tokio::test]
async fn migrate_down_keeps_adopted_tables_and_their_rows_unless_told_to_drop_them() {
    let schema = go_database().await;
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(GO_ROWS).await.unwrap();
    let seed_shape = crate::catalog::describe(&mut conn).await;
    let mut migrator = Migrator::new(schema.pool().get().await.unwrap());
    migrator.run_pending().await.unwrap();

    let reverted = migrator.revert_all().await.unwrap();
    assert_eq!(reverted.last().map(String::as_str), Some(FIRST));
    for table in ["runs", "stages", "decisions", "checkpoints"] {
        assert!(table_exists(&mut conn, table).await, "{table} is kept");
    }
    assert_eq!(count(&mut conn, "SELECT count(*) AS n FROM runs").await, 4);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM checkpoints").await,
        1
    );
    let shape: Vec<String> = crate::catalog::describe(&mut conn)
        .await
        .into_iter()
        .filter(|l| !l.contains("workflows_adoptions"))
        .collect();
    assert_eq!(shape, seed_shape, "the seed's shape again");
    assert!(migrator.status().await.unwrap().iter().all(|m| !m.applied));

    // Adopted again, then dropped when told.
    migrator.run_pending().await.unwrap();
    let mut migrator = migrator.drop_adopted(true);
    migrator.revert_all().await.unwrap();
    assert!(
        !table_exists(&mut conn, "runs").await,
        "dropped with --drop-adopted"
    );
}

#[tokio::test]
async fn the_go_service_s_inserts_wake_no_worker_and_the_library_s_do() {
    use diesel_async::AsyncConnection;
    use futures_util::StreamExt;
    let schema = go_database().await;
    workflows::db::run_pending_migrations(schema.pool())
        .await
        .unwrap();
    let mut listener = AsyncPgConnection::establish(schema.database_url())
        .await
        .unwrap();
    listener
        .batch_execute("LISTEN workflows_pending")
        .await
        .unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    conn.batch_execute(
        "INSERT INTO runs (workflow_name, status) VALUES ('go_chain', 'pending');
         SELECT pg_notify('workflows_pending', 'after the Go insert');",
    )
    .await
    .unwrap();
    executor(&schema)
        .submit("go_chain", json!({}), None)
        .await
        .unwrap();
    let payloads: Vec<String> = tokio::time::timeout(
        HANG,
        listener
            .notifications_stream()
            .take(2)
            .map(|n| n.unwrap().payload)
            .collect(),
    )
    .await
    .unwrap();
    // Delivered in commit order: had the Go insert notified, its '' would come first.
    assert_eq!(payloads, ["after the Go insert", ""]);
}
