//! Durable execution in one process: submit and idempotency, workers sharing runs, leases
//! renewed and taken over, the recovery limit, cancel by notification or heartbeat, pruning.
//! (Tests with real worker processes are in `cli/tests/workers.rs`.)

use std::sync::Arc;
use std::time::Duration;

use crate::fixtures::{Gate, HANG, mark, run_of, until_status};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use http::StatusCode;
use serde_json::json;
use tokio::sync::Notify;
use workflows::schema::{checkpoints, decisions, runs, stages};
use workflows::testing::IsolatedSchema;
use workflows::{
    BoxError, Error, Executor, ExecutorConfig, GraphBuilder, NodeContext, Params, Pool,
    PruneReport, Registry, Retention, RunId, RunStatus, Runtime, StageStatus, State, Worker,
    WorkerConfig, WorkflowDef, lifecycle, repository, retention,
};

async fn quick(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("a", mark)
        .add_node("b", mark)
        .add_edge("a", "b")
        .set_entry_point("a")
        .add_exit_point("b");
    Ok(State::new())
}

async fn gated(g: &mut GraphBuilder, rt: &Runtime, _: Params) -> Result<State, BoxError> {
    let gate = rt.get::<Gate>()?;
    g.add_node("a", mark)
        .add_node("wait", move |state: State, ctx: NodeContext| {
            let gate = Arc::clone(&gate);
            async move {
                tokio::select! {
                    () = gate.0.notified() => mark(state, ctx).await,
                    () = ctx.cancelled() => Err("interrupted".into()),
                }
            }
        })
        .add_node("c", mark)
        .add_edge("a", "wait")
        .add_edge("wait", "c")
        .set_entry_point("a")
        .add_exit_point("c");
    Ok(State::new())
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register(WorkflowDef::new("quick", "two nodes", |g, r, p| {
            Box::pin(quick(g, r, p))
        }))
        .unwrap();
    registry
        .register(WorkflowDef::new("gated", "waits for a gate", |g, r, p| {
            Box::pin(gated(g, r, p))
        }))
        .unwrap();
    registry
}

fn executor(
    pool: &Pool,
    owner: &str,
    lease: Duration,
    heartbeat: Duration,
) -> (Executor, Arc<Gate>) {
    let gate = Arc::new(Gate(Notify::new()));
    let executor = Executor::builder(pool.clone(), registry())
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

fn worker(executor: Executor, config: WorkerConfig) -> Worker {
    Worker::new(executor, config)
}

async fn owner_and_recoveries(pool: &Pool, id: RunId) -> (Option<String>, i32) {
    let mut conn = pool.get().await.unwrap();
    runs::table
        .find(id)
        .select((runs::owner, runs::recoveries))
        .first(&mut conn)
        .await
        .unwrap()
}

/// Waits until the run's stage of `node` has started.
async fn until_started(pool: &Pool, id: RunId, node: &str) {
    tokio::time::timeout(HANG, async {
        loop {
            let mut conn = pool.get().await.unwrap();
            let started: i64 = stages::table
                .filter(stages::run_id.eq(id))
                .filter(stages::node_name.eq(node))
                .filter(stages::status.eq(StageStatus::Started))
                .count()
                .get_result(&mut conn)
                .await
                .unwrap();
            if started > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the node started");
}

async fn steps(pool: &Pool, id: RunId) -> Vec<(String, i32, StageStatus)> {
    let mut conn = pool.get().await.unwrap();
    repository::stages(&mut conn, id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.node_name, s.iteration, s.status))
        .collect()
}

fn s(text: &str) -> String {
    text.to_owned()
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn submitting_twice_with_one_key_gives_one_run() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (executor, _) = executor(schema.pool(), "a", SECOND, SECOND / 4);
    let first = executor
        .submit("quick", json!({"x": 1}), Some("order-42"))
        .await
        .unwrap();
    assert_eq!(first.status, RunStatus::Pending);
    let again = executor
        .submit("quick", json!({"x": 1}), Some("order-42"))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    let other = executor
        .submit("quick", json!({"x": 1}), Some("order-43"))
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    let unkeyed = executor
        .submit("quick", json!({"x": 1}), None)
        .await
        .unwrap();
    assert_ne!(unkeyed.id, first.id);

    let err = executor
        .submit("quick", json!({"x": 2}), Some("order-42"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(err.to_string().contains(&first.id.to_string()), "{err}");
    let count: i64 = runs::table
        .count()
        .get_result(&mut schema.pool().get().await.unwrap())
        .await
        .unwrap();
    assert_eq!(count, 3);
}

#[tokio::test]
async fn concurrent_submits_with_one_key_give_one_run() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (executor, _) = executor(schema.pool(), "a", SECOND, SECOND / 4);
    let submits = (0..8).map(|_| {
        let executor = executor.clone();
        tokio::spawn(async move {
            executor
                .submit("quick", json!({}), Some("same"))
                .await
                .unwrap()
                .id
        })
    });
    let mut ids = Vec::new();
    for submit in submits {
        ids.push(submit.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test]
async fn submit_refuses_bad_input_before_writing() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (executor, _) = executor(schema.pool(), "a", SECOND, SECOND / 4);
    assert!(matches!(
        executor.submit("nope", json!({}), None).await.unwrap_err(),
        Error::WorkflowNotFound { .. }
    ));
    assert!(matches!(
        executor
            .submit("quick", json!([1]), None)
            .await
            .unwrap_err(),
        Error::InvalidInput { .. }
    ));
    let err = executor
        .submit("quick", json!({}), Some(" "))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("idempotency key"), "{err}");
    let count: i64 = runs::table
        .count()
        .get_result(&mut schema.pool().get().await.unwrap())
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn two_workers_share_the_pending_runs_and_run_each_once() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (a, _) = executor(schema.pool(), "worker-a", SECOND * 10, SECOND);
    let (b, _) = executor(schema.pool(), "worker-b", SECOND * 10, SECOND);
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(a.submit("quick", json!({}), None).await.unwrap().id);
    }
    let config = WorkerConfig::default().concurrency(4);
    let (wa, wb) = (worker(a, config.clone()), worker(b, config));
    let stop = Arc::new(Notify::new());
    let (sa, sb) = (Arc::clone(&stop), Arc::clone(&stop));
    let (ra, rb) = tokio::join!(
        async {
            let done = tokio::spawn({
                let pool = schema.pool().clone();
                let ids = ids.clone();
                async move {
                    for id in ids {
                        until_status(&pool, id, RunStatus::Completed).await;
                    }
                    stop.notify_waiters();
                }
            });
            let report = wa.run_until(async move { sa.notified().await }).await;
            done.await.unwrap();
            report
        },
        wb.run_until(async move { sb.notified().await }),
    );
    assert!(ra.unwrap().all_stopped && rb.unwrap().all_stopped);

    let mut owners = std::collections::BTreeMap::new();
    for id in &ids {
        assert_eq!(steps(schema.pool(), *id).await.len(), 2, "each node once");
        let (owner, recoveries) = owner_and_recoveries(schema.pool(), *id).await;
        assert_eq!(recoveries, 0);
        *owners.entry(owner.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(owners.values().sum::<i32>(), 40);
    assert_eq!(owners.len(), 2, "both workers took runs: {owners:?}");
}

#[tokio::test]
async fn a_heartbeat_keeps_a_long_node_s_lease() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (a, gate) = executor(
        schema.pool(),
        "a",
        Duration::from_millis(600),
        Duration::from_millis(100),
    );
    let execution = a.start("gated", json!({})).await.unwrap();
    let id = execution.run_id();
    until_started(schema.pool(), id, "wait").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (b, _) = executor(schema.pool(), "b", SECOND, SECOND / 4);
    assert_eq!(
        worker(b, WorkerConfig::default()).fill().await.unwrap(),
        0,
        "nothing expired"
    );
    assert_eq!(
        owner_and_recoveries(schema.pool(), id).await,
        (Some(s("a")), 0)
    );
    gate.0.notify_one();
    assert_eq!(execution.wait().await.unwrap().status, RunStatus::Completed);
}

#[tokio::test]
async fn a_run_whose_lease_expired_is_taken_over_and_its_old_owner_is_fenced_off() {
    let schema = IsolatedSchema::create().await.unwrap();
    // `a` stalls: its heartbeat would come only after an hour, its lease lasts 300 ms.
    let (a, a_gate) = executor(
        schema.pool(),
        "a",
        Duration::from_millis(300),
        Duration::from_secs(3600),
    );
    let stalled = a.start("gated", json!({})).await.unwrap();
    let id = stalled.run_id();
    until_started(schema.pool(), id, "wait").await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let (b, b_gate) = executor(schema.pool(), "b", SECOND * 10, SECOND);
    b_gate.0.notify_one(); // b's `wait` passes at once
    let worker_b = worker(b, WorkerConfig::default());
    assert_eq!(worker_b.fill().await.unwrap(), 1);
    let run = until_status(schema.pool(), id, RunStatus::Completed).await;
    assert_eq!(
        owner_and_recoveries(schema.pool(), id).await,
        (Some(s("b")), 1)
    );

    // `a` wakes up: its node completes, and its write is refused.
    a_gate.0.notify_one();
    let late = tokio::time::timeout(HANG, stalled.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.status, RunStatus::Completed, "b's result stands");
    assert_eq!(late.result, run.result);
    assert_eq!(
        steps(schema.pool(), id).await,
        [
            (s("a"), 1, StageStatus::Completed),
            (s("wait"), 2, StageStatus::Failed), // interrupted: closed by b's takeover
            (s("wait"), 3, StageStatus::Completed),
            (s("c"), 4, StageStatus::Completed),
        ]
    );
    let mut conn = schema.pool().get().await.unwrap();
    let decided: i64 = decisions::table
        .filter(decisions::run_id.eq(id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        decided, 3,
        "a -> wait, wait -> c, c (end): nothing from a's late attempt"
    );
}

#[tokio::test]
async fn past_the_recovery_limit_a_run_fails_saying_so() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (a, _) = executor(
        schema.pool(),
        "a",
        Duration::from_millis(200),
        Duration::from_secs(3600),
    );
    let stalled = a.start("gated", json!({})).await.unwrap();
    let id = stalled.run_id();
    until_started(schema.pool(), id, "wait").await;
    {
        let mut conn = schema.pool().get().await.unwrap();
        diesel::update(runs::table.find(id))
            .set(runs::recoveries.eq(3))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (b, _) = executor(schema.pool(), "b", SECOND, SECOND / 4);
    let config = WorkerConfig::default().max_recoveries(3);
    assert_eq!(worker(b, config).fill().await.unwrap(), 0);
    let run = run_of(schema.pool(), id).await;
    assert_eq!(run.status, RunStatus::Failed);
    let message = run.error_message.unwrap();
    assert!(message.contains("lease ran out 3 times"), "{message}");
    assert_eq!(
        steps(schema.pool(), id).await[1],
        (s("wait"), 2, StageStatus::Failed)
    );
    drop(stalled);
}

async fn cancel_elsewhere(pool: &Pool, id: RunId) {
    let mut conn: diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection> =
        pool.get().await.unwrap();
    lifecycle::cancel_run(&mut conn, id).await.unwrap();
}

#[tokio::test]
async fn a_cancel_from_elsewhere_reaches_a_worker_by_notification() {
    let schema = IsolatedSchema::create().await.unwrap();
    // Heartbeats too rare to matter: only the notification can interrupt the node.
    let (a, _) = executor(schema.pool(), "a", SECOND * 3600, SECOND * 1800);
    let id = a.submit("gated", json!({}), None).await.unwrap().id;
    let stop = Arc::new(Notify::new());
    let stopped = Arc::clone(&stop);
    let pool = schema.pool().clone();
    let worker_a = worker(a, WorkerConfig::default());
    let (report, ()) = tokio::join!(
        worker_a.run_until(async move { stopped.notified().await }),
        async {
            until_started(&pool, id, "wait").await;
            cancel_elsewhere(&pool, id).await;
            // The node awaits forever unless interrupted: its stage closes only if it was.
            tokio::time::timeout(HANG, async {
                while steps(&pool, id).await[1].2 != StageStatus::Failed {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("the node was interrupted");
            stop.notify_waiters();
        }
    );
    assert!(report.unwrap().cancelled.is_empty());
    assert_eq!(run_of(schema.pool(), id).await.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn without_notifications_the_heartbeat_notices_a_cancel() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (a, _) = executor(schema.pool(), "a", SECOND * 10, Duration::from_millis(100));
    let execution = a.start("gated", json!({})).await.unwrap();
    let id = execution.run_id();
    until_started(schema.pool(), id, "wait").await;
    cancel_elsewhere(schema.pool(), id).await;
    let run = tokio::time::timeout(HANG, execution.wait())
        .await
        .expect("interrupted")
        .unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(
        steps(schema.pool(), id).await[1],
        (s("wait"), 2, StageStatus::Failed)
    );
}

/// A finished run `days` old with a stage, a decision and a checkpoint.
async fn finished_run(conn: &mut AsyncPgConnection, status: RunStatus, days: i64) -> RunId {
    let ended = chrono::Utc::now() - chrono::Duration::days(days);
    let id: RunId = diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq("quick"),
            runs::status.eq(status),
            runs::completed_at.eq(Some(ended)),
        ))
        .returning(runs::id)
        .get_result(conn)
        .await
        .unwrap();
    diesel::insert_into(stages::table)
        .values((
            stages::run_id.eq(id),
            stages::node_name.eq("a"),
            stages::iteration.eq(1),
            stages::status.eq(StageStatus::Completed),
        ))
        .execute(conn)
        .await
        .unwrap();
    diesel::insert_into(decisions::table)
        .values((decisions::run_id.eq(id), decisions::from_node.eq("a")))
        .execute(conn)
        .await
        .unwrap();
    diesel::insert_into(checkpoints::table)
        .values((
            checkpoints::run_id.eq(id),
            checkpoints::state_data.eq(json!({})),
            checkpoints::checkpoint_node.eq("a"),
            checkpoints::updated_at.eq(ended),
        ))
        .execute(conn)
        .await
        .unwrap();
    id
}

async fn counts(conn: &mut AsyncPgConnection) -> (i64, i64, i64, i64) {
    (
        runs::table.count().get_result(conn).await.unwrap(),
        stages::table.count().get_result(conn).await.unwrap(),
        decisions::table.count().get_result(conn).await.unwrap(),
        checkpoints::table.count().get_result(conn).await.unwrap(),
    )
}

/// Stages, decisions and checkpoints whose run is gone.
async fn orphans(conn: &mut AsyncPgConnection) -> i64 {
    use diesel::dsl::{exists, not};
    let stages: i64 = stages::table
        .filter(not(exists(runs::table.filter(runs::id.eq(stages::run_id)))))
        .count()
        .get_result(conn)
        .await
        .unwrap();
    let decisions: i64 = decisions::table
        .filter(not(exists(
            runs::table.filter(runs::id.eq(decisions::run_id)),
        )))
        .count()
        .get_result(conn)
        .await
        .unwrap();
    stages + decisions
}

#[tokio::test]
async fn pruning_deletes_old_finished_runs_and_nothing_else() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    let old: Vec<RunId> = vec![
        finished_run(&mut conn, RunStatus::Completed, 40).await,
        finished_run(&mut conn, RunStatus::Failed, 35).await,
        finished_run(&mut conn, RunStatus::Cancelled, 31).await,
    ];
    let recent = finished_run(&mut conn, RunStatus::Completed, 2).await;
    let running: RunId = diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq("quick"),
            runs::status.eq(RunStatus::Running),
        ))
        .returning(runs::id)
        .get_result(&mut conn)
        .await
        .unwrap();

    let month = Retention::default().runs_after(Duration::from_secs(30 * 86_400));
    let report = retention::prune(&mut conn, &month).await.unwrap();
    assert_eq!(
        report,
        PruneReport {
            checkpoints: 0,
            runs: 3
        }
    );
    for id in old {
        assert!(matches!(
            repository::find_run(&mut conn, id).await,
            Err(Error::RunNotFound { .. })
        ));
    }
    repository::find_run(&mut conn, recent).await.unwrap();
    repository::find_run(&mut conn, running).await.unwrap();
    assert_eq!(counts(&mut conn).await, (2, 1, 1, 1));
    assert_eq!(orphans(&mut conn).await, 0);
    assert_eq!(
        retention::prune(&mut conn, &month).await.unwrap(),
        PruneReport::default()
    );
}

#[tokio::test]
async fn pruning_checkpoints_keeps_the_runs() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    let old = finished_run(&mut conn, RunStatus::Completed, 10).await;
    let recent = finished_run(&mut conn, RunStatus::Failed, 1).await;
    let week = Retention::default().checkpoints_after(Duration::from_secs(7 * 86_400));
    assert_eq!(
        retention::prune(&mut conn, &week).await.unwrap(),
        PruneReport {
            checkpoints: 1,
            runs: 0
        }
    );
    let left: Vec<RunId> = checkpoints::table
        .select(checkpoints::run_id)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, [recent]);
    repository::find_run(&mut conn, old).await.unwrap();
}

#[tokio::test]
async fn an_interrupted_prune_leaves_no_orphans() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    for days in 10..15 {
        finished_run(&mut conn, RunStatus::Completed, days).await;
    }
    let small = Retention::default()
        .runs_after(Duration::from_secs(86_400))
        .batch_size(2);
    // One batch, then the pruner "dies": what it did is whole, the rest untouched.
    assert_eq!(
        retention::prune_batch(&mut conn, &small)
            .await
            .unwrap()
            .runs,
        2
    );
    assert_eq!(counts(&mut conn).await, (3, 3, 3, 3));
    assert_eq!(orphans(&mut conn).await, 0);
    assert_eq!(retention::prune(&mut conn, &small).await.unwrap().runs, 3);
    assert_eq!(counts(&mut conn).await, (0, 0, 0, 0));
}

#[tokio::test]
async fn a_stopping_worker_hands_its_unfinished_runs_to_another() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (a, _) = executor(schema.pool(), "a", SECOND * 3600, SECOND * 1800);
    let id = a.submit("gated", json!({}), None).await.unwrap().id;
    let config = WorkerConfig::default().drain(Duration::from_millis(100));
    let worker_a = worker(a, config);
    let pool = schema.pool().clone();
    let report = worker_a
        .run_until(async move { until_started(&pool, id, "wait").await })
        .await
        .unwrap();
    assert_eq!(report.released, [id]);
    assert!(report.cancelled.is_empty() && report.all_stopped);
    assert_eq!(
        run_of(schema.pool(), id).await.status,
        RunStatus::Running,
        "not cancelled"
    );

    // Its lease ended at once (an hour early): another worker takes it over now.
    let (b, b_gate) = executor(schema.pool(), "b", SECOND * 10, SECOND);
    b_gate.0.notify_one();
    assert_eq!(worker(b, WorkerConfig::default()).fill().await.unwrap(), 1);
    until_status(schema.pool(), id, RunStatus::Completed).await;
    assert_eq!(
        owner_and_recoveries(schema.pool(), id).await,
        (Some(s("b")), 0),
        "a handover is not a recovery"
    );
}

#[tokio::test]
async fn a_frequent_heartbeat_never_stops_the_runs_it_holds() {
    // Runs start while a heartbeat is in flight; they were not in its query, and must not be
    // taken for runs whose lease was lost.
    let schema = IsolatedSchema::create().await.unwrap();
    let (a, _) = executor(schema.pool(), "a", SECOND, Duration::from_millis(2));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let mut ended = Vec::new();
            for _ in 0..25 {
                ended.push(a.run("quick", json!({})).await.unwrap().status);
            }
            ended
        }));
    }
    for task in tasks {
        for status in task.await.unwrap() {
            assert_eq!(status, RunStatus::Completed);
        }
    }
}

/// The run's lease token, owner and whether its lease holds now.
async fn lease_of(pool: &Pool, id: RunId) -> (Option<uuid::Uuid>, Option<String>, bool) {
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        held: bool,
    }
    let mut conn = pool.get().await.unwrap();
    let (token, owner): (Option<uuid::Uuid>, Option<String>) = runs::table
        .find(id)
        .select((runs::lease_token, runs::owner))
        .first(&mut conn)
        .await
        .unwrap();
    let held: Held = diesel::sql_query(
        "SELECT lease_expires_at > clock_timestamp() AS held FROM runs WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id.as_uuid())
    .get_result(&mut conn)
    .await
    .unwrap();
    (token, owner, held.held)
}

#[tokio::test]
async fn cancel_then_resume_at_once_keeps_the_new_attempts_heartbeat() {
    let schema = IsolatedSchema::create().await.unwrap();
    let lease = Duration::from_millis(600);
    let (executor, gate) = executor(schema.pool(), "a", lease, Duration::from_millis(100));
    let mut first = executor.start("gated", json!({})).await.unwrap();
    let id = first.run_id();
    until_started(schema.pool(), id, "wait").await;
    // Cancelled from elsewhere (so this process does not interrupt the node), then resumed
    // here at once: two attempts at one run, both waiting at the gate, the old one first.
    cancel_elsewhere(schema.pool(), id).await;
    let second = executor.resume(id).await.unwrap();
    until_started_at(schema.pool(), id, "wait", 3).await;
    let (token, _, _) = lease_of(schema.pool(), id).await;

    // The old attempt passes the gate, its write is refused, and it ends.
    gate.0.notify_one();
    while let Some(event) = tokio::time::timeout(HANG, first.next_event())
        .await
        .unwrap()
    {
        if event.is_final() {
            assert!(
                matches!(event, workflows::Event::Handover { .. }),
                "{event:?}"
            );
        }
    }
    // The new attempt still renews its lease, long after the old one ended.
    tokio::time::sleep(lease * 2).await;
    assert_eq!(
        lease_of(schema.pool(), id).await,
        (token, Some(s("a")), true)
    );
    assert_eq!(executor.active_runs(), 1);

    gate.0.notify_one();
    let run = tokio::time::timeout(HANG, second.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        owner_and_recoveries(schema.pool(), id).await,
        (Some(s("a")), 0)
    );
}

/// Waits until the run's stage of `node` at step `iteration` has started.
async fn until_started_at(pool: &Pool, id: RunId, node: &str, iteration: i32) {
    tokio::time::timeout(HANG, async {
        loop {
            if steps(pool, id)
                .await
                .contains(&(s(node), iteration, StageStatus::Started))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the node started");
}

#[tokio::test]
async fn a_process_whose_lease_ran_out_in_an_outage_takes_its_own_run_over_and_keeps_it() {
    let schema = IsolatedSchema::create().await.unwrap();
    // Renewals fail while `outage` holds a row (a takeover, which changes the token, does
    // not): to the executor, the database is out of reach for its heartbeat.
    schema
        .pool()
        .get()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE outage (on_since timestamptz);
             CREATE FUNCTION refuse_renewals() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.lease_token = OLD.lease_token AND EXISTS (SELECT FROM outage) THEN
                 RAISE EXCEPTION 'no renewals during the outage';
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_renewals BEFORE UPDATE OF heartbeat_at ON runs
               FOR EACH ROW EXECUTE FUNCTION refuse_renewals();",
        )
        .await
        .unwrap();
    let lease = Duration::from_millis(600);
    let (executor, gate) = executor(schema.pool(), "a", lease, Duration::from_millis(100));
    let worker = worker(executor.clone(), WorkerConfig::default());
    let mut old = executor.start("gated", json!({})).await.unwrap();
    let id = old.run_id();
    until_started(schema.pool(), id, "wait").await;
    let outage = |on: bool| {
        let pool = schema.pool().clone();
        async move {
            let sql = if on {
                "INSERT INTO outage VALUES (now())"
            } else {
                "DELETE FROM outage"
            };
            pool.get().await.unwrap().batch_execute(sql).await.unwrap();
        }
    };
    outage(true).await;
    tokio::time::timeout(HANG, async {
        while lease_of(schema.pool(), id).await.2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    // This very process's worker takes the run over, with a new token.
    assert_eq!(worker.fill().await.unwrap(), 1);
    outage(false).await;
    let (token, owner, _) = lease_of(schema.pool(), id).await;
    assert_eq!(owner.as_deref(), Some("a"));

    // The old attempt, its lease gone, was stopped and has ended; the new one keeps its
    // heartbeat.
    let mut last = None;
    while let Some(event) = tokio::time::timeout(HANG, old.next_event()).await.unwrap() {
        last = Some(event);
    }
    assert!(
        matches!(last, Some(workflows::Event::Handover { .. })),
        "the old attempt ended without ending the run: {last:?}"
    );
    tokio::time::sleep(lease * 2).await;
    assert_eq!(
        lease_of(schema.pool(), id).await,
        (token, Some(s("a")), true)
    );
    assert_eq!(executor.active_runs(), 1);
    gate.0.notify_one();
    let run = until_status(schema.pool(), id, RunStatus::Completed).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        owner_and_recoveries(schema.pool(), id).await,
        (Some(s("a")), 1)
    );
}

#[tokio::test]
async fn a_pool_smaller_than_the_concurrency_keeps_every_lease() {
    let schema = IsolatedSchema::create().await.unwrap();
    // Every stage completion waits inside its statement until the test lets go, so the runs'
    // commits keep the pool's connections (and their runs' rows) for as long as it likes.
    let key = 0x0070_6f6f_6c01_i64;
    let mut holder = AsyncPgConnection::establish(schema.database_url())
        .await
        .unwrap();
    holder
        .batch_execute(&format!(
            "CREATE FUNCTION hold_completion() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_advisory_xact_lock_shared({key}); RETURN NEW; END $$;
             CREATE TRIGGER hold_completion BEFORE UPDATE ON stages FOR EACH ROW
               WHEN (NEW.status = 'completed') EXECUTE FUNCTION hold_completion();
             SELECT pg_advisory_lock({key});"
        ))
        .await
        .unwrap();
    let small = workflows::DbConfig::new(schema.database_url())
        .max_connections(2)
        .build_pool()
        .unwrap();
    let lease = Duration::from_millis(800);
    let (small_executor, _) = executor(&small, "small", lease, Duration::from_millis(100));
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(
            small_executor
                .submit("quick", json!({}), None)
                .await
                .unwrap()
                .id,
        );
    }
    let small_worker = worker(small_executor, WorkerConfig::default().concurrency(8));
    assert_eq!(
        small_worker.fill().await.unwrap(),
        8,
        "the small worker has every run"
    );
    // Another worker, on a pool of its own, takes over any run whose lease runs out.
    let (rescuer, _) = executor(schema.pool(), "rescuer", SECOND * 30, SECOND);
    let rescuer = worker(
        rescuer,
        WorkerConfig::default()
            .poll_interval(Duration::from_millis(20))
            .listen(false),
    );
    let stop = Arc::new(Notify::new());
    let (small_done, rescuer_done) = tokio::join!(
        async {
            let done = async {
                crate::fence::until_blocked(&schema, "WITH \"held_run\"%").await;
                // Long past the lease, with commits still stuck.
                tokio::time::sleep(lease * 3).await;
                // The runs whose commit is stuck hold their row: no one could take those
                // over, nor renew their lease. Every other run's lease must have held.
                // (A renewal in flight locks the rows it renews for a moment: look again.)
                let mut conn = schema.pool().get().await.unwrap();
                let mut free: Vec<RunId> = Vec::new();
                for _ in 0..100 {
                    free = runs::table
                        .filter(runs::id.eq_any(&ids))
                        .select(runs::id)
                        .for_update()
                        .skip_locked()
                        .load(&mut conn)
                        .await
                        .unwrap();
                    if free.len() == 7 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                drop(conn);
                stop.notify_one();
                holder
                    .batch_execute(&format!("SELECT pg_advisory_unlock({key})"))
                    .await
                    .unwrap();
                for id in &ids {
                    until_status(schema.pool(), *id, RunStatus::Completed).await;
                }
                free
            };
            let (free, report) = {
                let (sender, receiver) = tokio::sync::oneshot::channel();
                let report = small_worker
                    .run_until(async {
                        let _ = sender.send(done.await);
                    })
                    .await;
                (receiver.await.unwrap(), report)
            };
            report.unwrap();
            free
        },
        rescuer.run_until(stop.notified()),
    );
    rescuer_done.unwrap();
    assert_eq!(
        small_done.len(),
        7,
        "the runs write through one connection of the two: the other is the heartbeat's"
    );
    // (The run whose commit was stuck for three leases may have lost its lease when the
    // commit landed: it held the run's lock, not its lease.)
    for id in small_done {
        assert_eq!(
            owner_and_recoveries(schema.pool(), id).await,
            (Some(s("small")), 0),
            "no lease ran out on the live worker"
        );
        assert_eq!(steps(schema.pool(), id).await.len(), 2, "each node once");
    }
}

#[tokio::test]
async fn fills_called_at_once_claim_no_more_runs_than_there_are_slots() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (executor, gate) = executor(schema.pool(), "a", SECOND * 30, SECOND * 10);
    for _ in 0..6 {
        executor.submit("gated", json!({}), None).await.unwrap();
    }
    let worker = worker(executor.clone(), WorkerConfig::default().concurrency(2));
    let (a, b, c) = tokio::join!(worker.fill(), worker.fill(), worker.fill());
    assert_eq!(a.unwrap() + b.unwrap() + c.unwrap(), 2);
    let running: i64 = runs::table
        .filter(runs::status.eq(RunStatus::Running))
        .count()
        .get_result(&mut schema.pool().get().await.unwrap())
        .await
        .unwrap();
    assert_eq!(running, 2, "every claimed run has a slot");
    assert_eq!(executor.active_runs(), 2);
    gate.0.notify_waiters();
    drop(worker);
    executor.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn pruning_keeps_the_checkpoints_of_runs_that_can_be_resumed_unless_told_otherwise() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    let completed = finished_run(&mut conn, RunStatus::Completed, 10).await;
    let failed = finished_run(&mut conn, RunStatus::Failed, 10).await;
    let cancelled = finished_run(&mut conn, RunStatus::Cancelled, 10).await;
    let week = Duration::from_secs(7 * 86_400);
    let left = async |conn: &mut AsyncPgConnection| -> Vec<RunId> {
        let mut ids: Vec<RunId> = checkpoints::table
            .select(checkpoints::run_id)
            .load(conn)
            .await
            .unwrap();
        ids.sort();
        ids
    };
    let completed_only = Retention::default().checkpoints_after(week);
    assert_eq!(
        retention::prune(&mut conn, &completed_only)
            .await
            .unwrap()
            .checkpoints,
        1
    );
    let mut resumable = vec![failed, cancelled];
    resumable.sort();
    assert_eq!(left(&mut conn).await, resumable);

    let resumable_too = Retention::default().resumable_checkpoints_after(week);
    assert_eq!(
        retention::prune(&mut conn, &resumable_too)
            .await
            .unwrap()
            .checkpoints,
        2
    );
    assert!(left(&mut conn).await.is_empty());
    repository::find_run(&mut conn, completed).await.unwrap();
}

#[tokio::test]
async fn a_run_whose_checkpoint_was_pruned_is_not_resumed_from_the_start() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (executor, _) = executor(schema.pool(), "a", SECOND * 30, SECOND * 10);
    let mut conn = schema.pool().get().await.unwrap();
    let kept = finished_run(&mut conn, RunStatus::Failed, 10).await;
    diesel::update(checkpoints::table.find(kept))
        .set(checkpoints::state_data.eq(json!({
            "data": {"a": 1}, "checkpoint_node": "a", "iteration": 1, "steps": 1,
            "timestamp": "2026-01-01T00:00:00Z"
        })))
        .execute(&mut conn)
        .await
        .unwrap();
    let pruned = finished_run(&mut conn, RunStatus::Failed, 10).await;
    diesel::delete(checkpoints::table.find(pruned))
        .execute(&mut conn)
        .await
        .unwrap();

    let err = executor.resume(pruned).await.err().unwrap();
    assert!(
        matches!(err, Error::NotResumable { run_id, .. } if run_id == pruned),
        "{err:?}"
    );
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert!(err.to_string().contains("checkpoint is gone"), "{err}");
    let run = run_of(schema.pool(), pruned).await;
    assert_eq!(run.status, RunStatus::Failed, "nothing changed");
    assert_eq!(
        steps(schema.pool(), pruned).await,
        [(s("a"), 1, StageStatus::Completed)]
    );

    // With its checkpoint, a run continues after it: `a` is not run again.
    let resumed = executor.resume(kept).await.unwrap();
    let run = tokio::time::timeout(HANG, resumed.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        steps(schema.pool(), kept).await,
        [
            (s("a"), 1, StageStatus::Completed),
            (s("b"), 2, StageStatus::Completed)
        ]
    );
}
