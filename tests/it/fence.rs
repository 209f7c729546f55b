//! The fence under races, each window held open deterministically: a node commit that
//! waits for the run's lock while a cancel or a takeover commits writes nothing; a cancel or
//! a takeover that comes while a node commit holds the lock waits for it, and then sees all
//! it wrote. (The window is held by a test transaction holding the run's row, or by a
//! trigger that makes a stage write wait on an advisory lock the test holds; the test waits
//! until PostgreSQL shows the other side blocked before it lets go.)

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::json;
use tokio::sync::Notify;
use workflows::schema::{checkpoints, decisions, runs, stages};
use workflows::testing::IsolatedSchema;
use workflows::{
    Error, Event, Execution, Executor, ExecutorConfig, Pool, Registry, Run, RunId, RunStatus,
    Runtime, StageStatus, Worker, WorkerConfig, WorkflowDef, lifecycle, repository,
};

use crate::fixtures::{Gate, HANG, gated};

fn executor(
    pool: &Pool,
    owner: &str,
    lease: Duration,
    heartbeat: Duration,
) -> (Executor, Arc<Gate>) {
    let gate = Arc::new(Gate(Notify::new()));
    let mut registry = Registry::new();
    registry
        .register(WorkflowDef::new("gated", "waits for a gate", |g, r, p| {
            Box::pin(gated(g, r, p))
        }))
        .unwrap();
    let executor = Executor::builder(pool.clone(), registry)
        .runtime(Runtime::builder().with_arc(Arc::clone(&gate)).build())
        .config(
            ExecutorConfig::default()
                .owner(owner.to_owned())
                .lease(lease)
                .heartbeat(heartbeat),
        )
        .build()
        .unwrap();
    (executor, gate)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Waits until a session of `schema` is blocked on a lock while executing a statement whose
/// text is `like` (an SQL `LIKE` pattern).
pub(crate) async fn until_blocked(schema: &IsolatedSchema, like: &str) {
    until_blocked_n(schema, like, 1).await;
}

/// Waits until `sessions` sessions of `schema` are blocked on a lock while executing a
/// statement whose text is `like`.
pub(crate) async fn until_blocked_n(schema: &IsolatedSchema, like: &str, sessions: i64) {
    let mut conn = schema.pool().get().await.unwrap();
    tokio::time::timeout(HANG, async {
        loop {
            let waiting: Count = diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity
                  WHERE application_name = $1 AND wait_event_type = 'Lock' AND query LIKE $2",
            )
            .bind::<Text, _>(schema.name())
            .bind::<Text, _>(like)
            .get_result(&mut conn)
            .await
            .unwrap();
            if waiting.n >= sessions {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("fewer than {sessions} statements like {like:?} ever waited for a lock")
    });
}

/// Waits until the run's stage of `node` is `status`.
async fn until_stage(pool: &Pool, id: RunId, node: &str, status: StageStatus) {
    let mut conn = pool.get().await.unwrap();
    tokio::time::timeout(HANG, async {
        loop {
            let n: i64 = stages::table
                .filter(stages::run_id.eq(id))
                .filter(stages::node_name.eq(node))
                .filter(stages::status.eq(status))
                .count()
                .get_result(&mut conn)
                .await
                .unwrap();
            if n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stage of {node} never became {status}"));
}

/// Waits until the run's lease has expired by the database's clock.
async fn until_lease_expired(pool: &Pool, id: RunId) {
    let mut conn = pool.get().await.unwrap();
    tokio::time::timeout(HANG, async {
        loop {
            let expired: i64 = runs::table
                .find(id)
                .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                    "lease_expires_at < now()",
                ))
                .count()
                .get_result(&mut conn)
                .await
                .unwrap();
            if expired > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lease expired");
}

/// Makes the completion of node `node`'s stage wait, inside its statement (so after the
/// statement has taken its snapshot and its locks), until the test releases the advisory
/// lock `key`, which it holds on the returned connection.
async fn hold_completion_of(schema: &IsolatedSchema, node: &str, key: i64) -> AsyncPgConnection {
    let mut setup = schema.pool().get().await.unwrap();
    setup
        .batch_execute(&format!(
            "CREATE FUNCTION hold_completion() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_advisory_xact_lock_shared({key}); RETURN NEW; END $$;
             CREATE TRIGGER hold_completion BEFORE UPDATE ON stages FOR EACH ROW
               WHEN (NEW.status = 'completed' AND NEW.node_name = '{node}')
               EXECUTE FUNCTION hold_completion();"
        ))
        .await
        .unwrap();
    let mut holder = AsyncPgConnection::establish(schema.database_url())
        .await
        .unwrap();
    holder
        .batch_execute(&format!("SELECT pg_advisory_lock({key})"))
        .await
        .unwrap();
    holder
}

type StageRow = (String, i32, StageStatus, Option<String>);

async fn stages_of(pool: &Pool, id: RunId) -> Vec<StageRow> {
    let mut conn = pool.get().await.unwrap();
    repository::stages(&mut conn, id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.node_name, s.iteration, s.status, s.error_message))
        .collect()
}

async fn decisions_of(pool: &Pool, id: RunId) -> Vec<(String, Option<String>)> {
    let mut conn = pool.get().await.unwrap();
    repository::decisions(&mut conn, id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.from_node, d.to_node))
        .collect()
}

async fn checkpoint_node(pool: &Pool, id: RunId) -> Option<String> {
    let mut conn = pool.get().await.unwrap();
    checkpoints::table
        .find(id)
        .select(checkpoints::checkpoint_node)
        .first(&mut conn)
        .await
        .optional()
        .unwrap()
}

async fn wait(execution: Execution) -> Run {
    tokio::time::timeout(HANG, execution.wait())
        .await
        .expect("the run ended")
        .unwrap()
}

/// The events of an execution, to its last.
async fn events_of(execution: &mut Execution) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(HANG, execution.next_event())
        .await
        .expect("an event came")
    {
        events.push(event);
    }
    events
}

fn stage(node: &str, step: i32, status: StageStatus, error: Option<&str>) -> StageRow {
    (node.to_owned(), step, status, error.map(str::to_owned))
}

fn decision(from: &str, to: Option<&str>) -> (String, Option<String>) {
    (from.to_owned(), to.map(str::to_owned))
}

const LONG: Duration = Duration::from_secs(30);
const CANCELLED: &str = "cancelled while executing";
const INTERRUPTED: &str = "interrupted: the run stopped while this node was executing";

#[tokio::test]
async fn a_node_commit_that_waits_for_the_run_writes_nothing_once_the_run_is_cancelled() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (executor, gate) = executor(schema.pool(), "a", LONG, LONG / 3);
    let execution = executor.start("gated", json!({})).await.unwrap();
    let id = execution.run_id();
    until_stage(schema.pool(), id, "wait", StageStatus::Started).await;

    // Hold the run's row; let the node finish; once its commit waits for the row, cancel
    // the run in the same transaction and commit.
    let mut holder = schema.pool().get().await.unwrap();
    holder
        .transaction::<_, Error, _>(async |t| {
            runs::table
                .find(id)
                .select(runs::id)
                .for_update()
                .first::<RunId>(t)
                .await?;
            gate.0.notify_one();
            until_blocked(&schema, "WITH \"held_run\"%").await;
            lifecycle::cancel_run(t, id).await?;
            Ok(())
        })
        .await
        .unwrap();

    let run = wait(execution).await;
    assert_eq!(run.status, RunStatus::Cancelled);
    let pool = schema.pool();
    assert_eq!(
        stages_of(pool, id).await,
        [
            stage("a", 1, StageStatus::Completed, None),
            stage("wait", 2, StageStatus::Failed, Some(CANCELLED)),
        ],
        "the node's completion was not written, and its stage was closed as cancelled"
    );
    assert_eq!(decisions_of(pool, id).await, [decision("a", Some("wait"))]);
    assert_eq!(checkpoint_node(pool, id).await.as_deref(), Some("a"));
    drop(holder);
    drop(executor);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_node_commit_that_waits_for_the_run_writes_nothing_once_it_was_taken_over() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (executor, gate) = executor(schema.pool(), "a", LONG, LONG / 3);
    let mut execution = executor.start("gated", json!({})).await.unwrap();
    let id = execution.run_id();
    until_stage(schema.pool(), id, "wait", StageStatus::Started).await;

    // Another owner takes the run over (a new token, the started stage interrupted) while
    // the node's commit waits for the row.
    let mut holder = schema.pool().get().await.unwrap();
    holder
        .transaction::<_, Error, _>(async |t| {
            runs::table
                .find(id)
                .select(runs::id)
                .for_update()
                .first::<RunId>(t)
                .await?;
            gate.0.notify_one();
            until_blocked(&schema, "WITH \"held_run\"%").await;
            diesel::update(runs::table.find(id))
                .set((
                    runs::owner.eq("thief"),
                    runs::lease_token.eq(uuid::Uuid::new_v4()),
                ))
                .execute(t)
                .await?;
            diesel::update(stages::table.filter(stages::status.eq(StageStatus::Started)))
                .set((
                    stages::status.eq(StageStatus::Failed),
                    stages::error_message.eq("taken over"),
                ))
                .execute(t)
                .await?;
            Ok(())
        })
        .await
        .unwrap();

    let events = events_of(&mut execution).await;
    assert!(
        matches!(events.last(), Some(Event::Handover { run_id, .. }) if *run_id == id),
        "the attempt ends handing the run over, not claiming it cancelled: {:?}",
        events.last()
    );
    let pool = schema.pool();
    assert_eq!(
        stages_of(pool, id).await,
        [
            stage("a", 1, StageStatus::Completed, None),
            stage("wait", 2, StageStatus::Failed, Some("taken over")),
        ],
        "the stale owner neither completed the stage the new owner closed nor started another"
    );
    assert_eq!(decisions_of(pool, id).await, [decision("a", Some("wait"))]);
    assert_eq!(checkpoint_node(pool, id).await.as_deref(), Some("a"));
    let run = repository::find_run(&mut pool.get().await.unwrap(), id)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Running, "still the new owner's");
    drop(holder);
    drop(executor);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_cancel_during_a_node_commit_waits_for_it_and_the_owner_stops_at_its_next_write() {
    let schema = IsolatedSchema::create().await.unwrap();
    let key = 0x6665_6e63_6501;
    let mut holder = hold_completion_of(&schema, "wait", key).await;
    let (executor, gate) = executor(schema.pool(), "a", LONG, LONG / 3);
    let execution = executor.start("gated", json!({})).await.unwrap();
    let id = execution.run_id();
    until_stage(schema.pool(), id, "wait", StageStatus::Started).await;

    // The commit of `wait` takes the run's lock, then waits inside its statement.
    gate.0.notify_one();
    until_blocked(&schema, "WITH \"held_run\"%").await;
    let pool = schema.pool().clone();
    let cancel = tokio::spawn(async move {
        let mut conn = pool.get().await.unwrap();
        lifecycle::cancel_run(&mut conn, id).await
    });
    until_blocked(
        &schema,
        "%UPDATE \"runs\" SET \"status\" = %\"completed_at\"%",
    )
    .await;
    holder
        .batch_execute(&format!("SELECT pg_advisory_unlock({key})"))
        .await
        .unwrap();
    let cancelled = cancel.await.unwrap().unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);

    let run = wait(execution).await;
    assert_eq!(run.status, RunStatus::Cancelled);
    let pool = schema.pool();
    assert_eq!(
        stages_of(pool, id).await,
        [
            stage("a", 1, StageStatus::Completed, None),
            stage("wait", 2, StageStatus::Completed, None),
            stage("c", 3, StageStatus::Failed, Some(CANCELLED)),
        ],
        "the commit landed whole, before the cancel; the next node's write was refused"
    );
    assert_eq!(
        decisions_of(pool, id).await,
        [decision("a", Some("wait")), decision("wait", Some("c"))]
    );
    assert_eq!(checkpoint_node(pool, id).await.as_deref(), Some("wait"));
    // Everything of the run was written before the cancel committed.
    let mut conn = pool.get().await.unwrap();
    let ended = run.completed_at.unwrap();
    let last_stage: Option<chrono::DateTime<chrono::Utc>> = stages::table
        .filter(stages::run_id.eq(id))
        .select(diesel::dsl::max(stages::created_at))
        .first(&mut conn)
        .await
        .unwrap();
    let last_decision: Option<chrono::DateTime<chrono::Utc>> = decisions::table
        .filter(decisions::run_id.eq(id))
        .select(diesel::dsl::max(decisions::created_at))
        .first(&mut conn)
        .await
        .unwrap();
    let checkpointed: chrono::DateTime<chrono::Utc> = checkpoints::table
        .find(id)
        .select(checkpoints::updated_at)
        .first(&mut conn)
        .await
        .unwrap();
    assert!(last_stage.unwrap() < ended && last_decision.unwrap() < ended && checkpointed < ended);
    drop(conn);
    drop(executor);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_takeover_during_a_node_commit_waits_for_it_and_closes_the_stage_it_started() {
    let schema = IsolatedSchema::create().await.unwrap();
    let key = 0x6665_6e63_6502;
    let mut holder = hold_completion_of(&schema, "wait", key).await;
    // The first executor never renews its lease: it stalls, as far as anyone can tell.
    let (stalled, gate) = executor(
        schema.pool(),
        "stalled",
        Duration::from_millis(300),
        Duration::from_secs(3600),
    );
    // Its `c` waits for the gate too: the stale owner cannot send `c`'s commit (and take the
    // run's lock before the takeover does) until the test opens the gate again.
    let mut execution = stalled
        .start("gated", json!({"gate_c": true}))
        .await
        .unwrap();
    let id = execution.run_id();
    until_stage(schema.pool(), id, "wait", StageStatus::Started).await;
    until_lease_expired(schema.pool(), id).await;

    // Its commit of `wait` takes the run's lock, then waits; meanwhile a worker takes over.
    gate.0.notify_one();
    until_blocked(&schema, "WITH \"held_run\"%").await;
    let (rescuer, rescuer_gate) = executor(schema.pool(), "rescuer", LONG, LONG / 3);
    // The worker's `c` goes through at once.
    rescuer_gate.0.notify_one();
    let worker = Arc::new(Worker::new(rescuer, WorkerConfig::default()));
    let fill = tokio::spawn({
        let worker = Arc::clone(&worker);
        async move { worker.fill().await }
    });
    until_blocked(
        &schema,
        "SELECT \"runs\".\"id\" FROM \"runs\"%FOR NO KEY UPDATE%",
    )
    .await;
    holder
        .batch_execute(&format!("SELECT pg_advisory_unlock({key})"))
        .await
        .unwrap();
    assert_eq!(
        fill.await.unwrap().unwrap(),
        1,
        "the worker took the run over"
    );
    // The stale owner's `c` now ends, and its commit is refused.
    gate.0.notify_one();

    let events = events_of(&mut execution).await;
    assert!(
        matches!(events.last(), Some(Event::Handover { .. })),
        "{:?}",
        events.last()
    );
    let run = wait(execution).await;
    assert_eq!(
        run.status,
        RunStatus::Completed,
        "wait() follows the run to its end"
    );
    let pool = schema.pool();
    assert_eq!(
        stages_of(pool, id).await,
        [
            stage("a", 1, StageStatus::Completed, None),
            stage("wait", 2, StageStatus::Completed, None),
            stage("c", 3, StageStatus::Failed, Some(INTERRUPTED)),
            stage("c", 4, StageStatus::Completed, None),
        ],
        "the takeover saw the stage the commit started, and the stale owner wrote no more"
    );
    assert_eq!(
        decisions_of(pool, id).await,
        [
            decision("a", Some("wait")),
            decision("wait", Some("c")),
            decision("c", None)
        ]
    );
    let recoveries: i32 = runs::table
        .find(id)
        .select(runs::recoveries)
        .first(&mut pool.get().await.unwrap())
        .await
        .unwrap();
    assert_eq!(recoveries, 1);
    drop(worker);
    drop(stalled);
    schema.drop_schema().await.unwrap();
}
