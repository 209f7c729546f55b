//! What the second migration adds to the seed's schema: allowed statuses, unique stage rows,
//! `updated_at` kept current, checkpoints removed with their run.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use workflows::schema::{checkpoints, runs, stages};
use workflows::{RunStatus, StageStatus, testing};

use crate::fixtures::{at, insert_run, insert_stage};

/// Runs a statement expected to fail in a savepoint (so the test transaction survives it)
/// and returns the kind of error the database gave.
macro_rules! refused {
    ($conn:expr, async |$c:ident| $body:expr) => {
        match $conn
            .transaction::<_, DieselError, _>(async |$c: &mut AsyncPgConnection| $body)
            .await
        {
            Err(DieselError::DatabaseError(kind, _)) => kind,
            Err(other) => panic!("expected a database error, got {other:?}"),
            Ok(_) => panic!("expected the statement to be refused"),
        }
    };
}

#[tokio::test]
async fn a_run_status_outside_the_known_ones_is_refused() {
    let mut conn = testing::connection().await.unwrap();
    let kind = refused!(conn, async |c| {
        diesel::insert_into(runs::table)
            .values((runs::workflow_name.eq("x"), runs::status.eq("done")))
            .execute(c)
            .await
    });
    assert!(
        matches!(kind, DatabaseErrorKind::CheckViolation),
        "{kind:?}"
    );
}

#[tokio::test]
async fn a_stage_status_outside_the_known_ones_is_refused() {
    let mut conn = testing::connection().await.unwrap();
    let run = insert_run(&mut conn, "x", RunStatus::Running, at(0)).await;
    let kind = refused!(conn, async |c| {
        diesel::insert_into(stages::table)
            .values((
                stages::run_id.eq(run),
                stages::node_name.eq("a"),
                stages::iteration.eq(1),
                stages::status.eq("skipped"),
            ))
            .execute(c)
            .await
    });
    assert!(
        matches!(kind, DatabaseErrorKind::CheckViolation),
        "{kind:?}"
    );
}

#[tokio::test]
async fn one_node_iteration_of_a_run_has_one_stage_row() {
    let mut conn = testing::connection().await.unwrap();
    let run = insert_run(&mut conn, "x", RunStatus::Running, at(0)).await;
    insert_stage(&mut conn, run, "a", 1, at(1)).await;
    let kind = refused!(conn, async |c| {
        diesel::insert_into(stages::table)
            .values((
                stages::run_id.eq(run),
                stages::node_name.eq("a"),
                stages::iteration.eq(1),
                stages::status.eq(StageStatus::Started),
            ))
            .execute(c)
            .await
    });
    assert!(
        matches!(kind, DatabaseErrorKind::UniqueViolation),
        "{kind:?}"
    );
    // Another iteration of the same node is fine.
    insert_stage(&mut conn, run, "a", 2, at(2)).await;
}

#[tokio::test]
async fn updated_at_follows_every_update() {
    let mut conn = testing::connection().await.unwrap();
    let run = insert_run(&mut conn, "x", RunStatus::Pending, at(0)).await;
    let before: chrono::DateTime<chrono::Utc> = runs::table
        .find(run)
        .select(runs::updated_at)
        .first(&mut conn)
        .await
        .unwrap();
    diesel::update(runs::table.find(run))
        .set(runs::status.eq(RunStatus::Running))
        .execute(&mut conn)
        .await
        .unwrap();
    let after: chrono::DateTime<chrono::Utc> = runs::table
        .find(run)
        .select(runs::updated_at)
        .first(&mut conn)
        .await
        .unwrap();
    assert!(after > before, "{before} -> {after}");
}

#[tokio::test]
async fn a_checkpoint_is_removed_with_its_run() {
    let mut conn = testing::connection().await.unwrap();
    let run = insert_run(&mut conn, "x", RunStatus::Failed, at(0)).await;
    diesel::insert_into(checkpoints::table)
        .values((
            checkpoints::run_id.eq(run),
            checkpoints::state_data.eq(json!({"data": {}})),
            checkpoints::checkpoint_node.eq("a"),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::delete(runs::table.find(run))
        .execute(&mut conn)
        .await
        .unwrap();
    let left: i64 = checkpoints::table
        .filter(checkpoints::run_id.eq(run))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_checkpoint_needs_an_existing_run() {
    let mut conn = testing::connection().await.unwrap();
    let kind = refused!(conn, async |c| {
        diesel::insert_into(checkpoints::table)
            .values((
                checkpoints::run_id.eq(crate::fixtures::unknown_run()),
                checkpoints::state_data.eq(json!({})),
                checkpoints::checkpoint_node.eq("a"),
            ))
            .execute(c)
            .await
    });
    assert!(
        matches!(kind, DatabaseErrorKind::ForeignKeyViolation),
        "{kind:?}"
    );
}

#[tokio::test]
async fn rows_written_in_one_transaction_keep_their_order() {
    let mut conn = testing::connection().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id: workflows::RunId = diesel::insert_into(runs::table)
            .values(runs::workflow_name.eq("ordered"))
            .returning(runs::id)
            .get_result(&mut conn)
            .await
            .unwrap();
        ids.push(id);
    }
    let by_time: Vec<workflows::RunId> = runs::table
        .filter(runs::workflow_name.eq("ordered"))
        .order_by(runs::created_at.asc())
        .select(runs::id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(by_time, ids);
}
