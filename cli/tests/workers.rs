//! Worker processes against a real PostgreSQL: sharing runs, recovering a killed worker's
//! run, runs waiting out a retry's backoff or for an answer surviving their worker's
//! SIGKILL, fencing off a paused worker, and cancelling from another process.
#![allow(clippy::unwrap_used)] // test helpers panic on failure, which is what a test wants

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::json;
use workflows::schema::{runs, stages};
use workflows::testing::IsolatedSchema;
use workflows::{RunId, RunStatus, StageStatus, repository};

use common::{HANG, WorkerProcess};

async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url).await.unwrap()
}

/// Inserts `n` pending runs of `chain` with `params`, as `submit` would.
async fn pending(url: &str, n: usize, params: serde_json::Value) -> Vec<RunId> {
    let rows: Vec<_> = (0..n)
        .map(|_| {
            (
                runs::workflow_name.eq("chain"),
                runs::status.eq(RunStatus::Pending),
                runs::submitted_by_library.eq(true),
                runs::params.eq(params.clone()),
            )
        })
        .collect();
    diesel::insert_into(runs::table)
        .values(rows)
        .returning(runs::id)
        .get_results(&mut connect(url).await)
        .await
        .unwrap()
}

/// Polls until `done` holds.
async fn until<F: AsyncFnMut(&mut AsyncPgConnection) -> bool>(url: &str, what: &str, mut done: F) {
    let mut conn = connect(url).await;
    let deadline = Instant::now() + HANG;
    while !done(&mut conn).await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stage_started(conn: &mut AsyncPgConnection, id: RunId, node: &str) -> bool {
    stages::table
        .filter(stages::run_id.eq(id))
        .filter(stages::node_name.eq(node))
        .filter(stages::status.eq(StageStatus::Started))
        .count()
        .get_result::<i64>(conn)
        .await
        .unwrap()
        > 0
}

async fn status(conn: &mut AsyncPgConnection, id: RunId) -> RunStatus {
    repository::find_run(conn, id).await.unwrap().status
}

async fn owner_and_recoveries(conn: &mut AsyncPgConnection, id: RunId) -> (Option<String>, i32) {
    runs::table
        .find(id)
        .select((runs::owner, runs::recoveries))
        .first(conn)
        .await
        .unwrap()
}

async fn steps(conn: &mut AsyncPgConnection, id: RunId) -> Vec<(String, i32, StageStatus)> {
    repository::stages(conn, id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.node_name, s.iteration, s.status))
        .collect()
}

/// The run's stages as (node, step, attempt, status).
async fn attempts(conn: &mut AsyncPgConnection, id: RunId) -> Vec<(String, i32, i32, StageStatus)> {
    repository::stages(conn, id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.node_name, s.iteration, s.attempt, s.status))
        .collect()
}

/// How many times each node was started, from the nodes each worker's log says it started.
fn executions(started: &[Vec<String>]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for node in started.iter().flatten() {
        *counts.entry(node.clone()).or_default() += 1;
    }
    counts
}

fn counted(pairs: &[(&str, usize)]) -> std::collections::BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
}

fn s(text: &str) -> String {
    text.to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_worker_processes_share_200_runs_and_complete_each_once() {
    let schema = IsolatedSchema::create().await.unwrap();
    let url = schema.database_url().to_owned();
    let ids = pending(&url, 200, json!({"nodes": 3, "payload": 10})).await;
    let args = ["--concurrency", "4", "--poll-ms", "200"];
    let one = WorkerProcess::start(&url, &[&args[..], &["--name", "one"]].concat());
    let two = WorkerProcess::start(&url, &[&args[..], &["--name", "two"]].concat());

    until(&url, "every run has ended", async |conn| {
        runs::table
            .filter(runs::status.eq_any([RunStatus::Pending, RunStatus::Running]))
            .count()
            .get_result::<i64>(conn)
            .await
            .unwrap()
            == 0
    })
    .await;
    assert!(one.stop().success());
    assert!(two.stop().success());

    let mut conn = connect(&url).await;
    let mut by_owner = std::collections::BTreeMap::new();
    for id in &ids {
        assert_eq!(status(&mut conn, *id).await, RunStatus::Completed);
        let stages = steps(&mut conn, *id).await;
        let expected: Vec<_> = (0..3)
            .map(|i| (format!("n{i}"), i + 1, StageStatus::Completed))
            .collect();
        assert_eq!(stages, expected, "each node exactly once");
        let (owner, recoveries) = owner_and_recoveries(&mut conn, *id).await;
        assert_eq!(recoveries, 0);
        *by_owner.entry(owner.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        by_owner.keys().collect::<Vec<_>>(),
        ["one", "two"],
        "both did work: {by_owner:?}"
    );
    drop(conn);
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_s_run_is_recovered_without_rerunning_completed_nodes() {
    let schema = IsolatedSchema::create().await.unwrap();
    let url = schema.database_url().to_owned();
    let id = pending(&url, 1, json!({"nodes": 5, "delay_ms": 300})).await[0];
    let lease = [
        "--lease-ms",
        "1500",
        "--heartbeat-ms",
        "300",
        "--poll-ms",
        "200",
    ];

    let doomed =
        WorkerProcess::start_logging_nodes(&url, &[&lease[..], &["--name", "doomed"]].concat());
    until(&url, "n2 has started", async |conn| {
        stage_started(conn, id, "n2").await
    })
    .await;
    doomed.signal("-KILL");
    let started_by_doomed = doomed.node_starts(id);
    drop(doomed);

    let rescuer =
        WorkerProcess::start_logging_nodes(&url, &[&lease[..], &["--name", "rescuer"]].concat());
    until(&url, "the run has completed", async |conn| {
        status(conn, id).await == RunStatus::Completed
    })
    .await;
    let started_by_rescuer = rescuer.node_starts(id);
    assert!(rescuer.stop().success());

    let mut conn = connect(&url).await;
    assert_eq!(
        owner_and_recoveries(&mut conn, id).await,
        (Some(s("rescuer")), 1)
    );
    assert_eq!(started_by_doomed, ["n0", "n1", "n2"]);
    assert_eq!(
        executions(&[started_by_doomed, started_by_rescuer]),
        counted(&[("n0", 1), ("n1", 1), ("n2", 2), ("n3", 1), ("n4", 1)]),
        "completed nodes ran once; only the interrupted one ran again"
    );
    assert_eq!(
        steps(&mut conn, id).await,
        [
            (s("n0"), 1, StageStatus::Completed),
            (s("n1"), 2, StageStatus::Completed),
            (s("n2"), 3, StageStatus::Failed),
            (s("n2"), 4, StageStatus::Completed),
            (s("n3"), 5, StageStatus::Completed),
            (s("n4"), 6, StageStatus::Completed),
        ]
    );
    let run = repository::find_run(&mut conn, id).await.unwrap();
    assert_eq!(run.result.unwrap().to_value().unwrap()["counter"], json!(5));
    drop(conn);
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_waiting_out_a_long_backoff_survives_its_worker_s_sigkill_and_another_finishes_it() {
    let schema = IsolatedSchema::create().await.unwrap();
    let url = schema.database_url().to_owned();
    // `transform` fails retryably on its first attempt; the policy tries again 6 s later,
    // longer than the worker holds a run for.
    let id: RunId = diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq("flaky"),
            runs::status.eq(RunStatus::Pending),
            runs::submitted_by_library.eq(true),
            runs::params.eq(json!({"fail_at": "transform", "retryable": true, "delay_ms": 1})),
        ))
        .returning(runs::id)
        .get_result(&mut connect(&url).await)
        .await
        .unwrap();
    let args = ["--poll-ms", "100", "--hold-waits-ms", "1000"];

    let doomed = WorkerProcess::start(&url, &[&args[..], &["--name", "doomed"]].concat());
    until(&url, "the run waits, released", async |conn| {
        status(conn, id).await == RunStatus::Waiting
    })
    .await;
    doomed.signal("-KILL");
    drop(doomed);
    let mut conn = connect(&url).await;
    assert_eq!(owner_and_recoveries(&mut conn, id).await, (None, 0));

    let rescuer = WorkerProcess::start(&url, &[&args[..], &["--name", "rescuer"]].concat());
    until(&url, "the run has completed", async |conn| {
        status(conn, id).await == RunStatus::Completed
    })
    .await;
    assert!(rescuer.stop().success());
    // Not a recovery: nothing was lost, the run was nobody's while it waited.
    assert_eq!(
        owner_and_recoveries(&mut conn, id).await,
        (Some(s("rescuer")), 0)
    );
    assert_eq!(
        attempts(&mut conn, id).await,
        [
            (s("extract"), 1, 1, StageStatus::Completed),
            (s("transform"), 2, 1, StageStatus::Failed),
            (s("transform"), 2, 2, StageStatus::Completed),
            (s("load"), 3, 1, StageStatus::Completed),
        ]
    );
    let run = repository::find_run(&mut conn, id).await.unwrap();
    assert_eq!(
        run.result.unwrap().to_value().unwrap()["done"],
        json!(["extract", "transform", "load"])
    );
    drop(conn);
    schema.drop_schema().await.unwrap();
}

/// A `pending` run of the `approve` sample, as another process would submit it.
async fn pending_approval(url: &str) -> RunId {
    diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq("approve"),
            runs::status.eq(RunStatus::Pending),
            runs::submitted_by_library.eq(true),
            runs::params.eq(json!({"topic": "rust"})),
        ))
        .returning(runs::id)
        .get_result(&mut connect(url).await)
        .await
        .unwrap()
}

/// Answers `true` to the `approve` run `id`'s question, from another process.
fn approve_from_the_cli(url: &str, id: RunId) {
    let answered = Command::new(env!("CARGO_BIN_EXE_workflows"))
        .args(["answer", &id.to_string(), "approve", "--value", "true"])
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(answered.status.success(), "{answered:?}");
}

/// Starts a worker named `rescuer`, waits until it has completed run `id` and stops it.
async fn completed_by_a_rescuer(url: &str, id: RunId) -> AsyncPgConnection {
    let rescuer = WorkerProcess::start(url, &["--name", "rescuer", "--poll-ms", "100"]);
    until(url, "the run has completed", async |conn| {
        status(conn, id).await == RunStatus::Completed
    })
    .await;
    assert!(rescuer.stop().success());
    connect(url).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_waiting_for_an_answer_survives_its_worker_s_sigkill_and_the_answer_continues_it() {
    let schema = IsolatedSchema::create().await.unwrap();
    let url = schema.database_url().to_owned();
    let id = pending_approval(&url).await;

    let doomed = WorkerProcess::start(&url, &["--name", "doomed", "--poll-ms", "100"]);
    until(&url, "the run waits for its answer", async |conn| {
        status(conn, id).await == RunStatus::Waiting
    })
    .await;
    doomed.signal("-KILL");
    drop(doomed);

    // Answered from another process while no worker runs at all.
    approve_from_the_cli(&url, id);

    let mut conn = completed_by_a_rescuer(&url, id).await;
    assert_eq!(
        owner_and_recoveries(&mut conn, id).await,
        (Some(s("rescuer")), 0)
    );
    assert_eq!(
        steps(&mut conn, id).await,
        [
            (s("draft"), 1, StageStatus::Completed),
            (s("review"), 2, StageStatus::Completed),
            (s("publish"), 3, StageStatus::Completed),
        ],
        "the node before the question ran once"
    );
    let run = repository::find_run(&mut conn, id).await.unwrap();
    assert_eq!(
        run.result.unwrap().to_value().unwrap()["published"],
        json!(true)
    );
    drop(conn);
    schema.drop_schema().await.unwrap();
}

/// How many of the schema's sessions wait for a lock in a statement like `like`.
async fn blocked(conn: &mut AsyncPgConnection, schema: &IsolatedSchema, like: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity
          WHERE application_name = $1 AND wait_event_type = 'Lock' AND query LIKE $2",
    )
    .bind::<diesel::sql_types::Text, _>(schema.name())
    .bind::<diesel::sql_types::Text, _>(like)
    .get_result::<Count>(conn)
    .await
    .unwrap()
    .n
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_s_worker_killed_while_continuing_it_after_its_answer_loses_and_repeats_nothing() {
    let schema = IsolatedSchema::create().await.unwrap();
    let url = schema.database_url().to_owned();
    let id = pending_approval(&url).await;
    let doomed = WorkerProcess::start(
        &url,
        &[
            "--name",
            "doomed",
            "--poll-ms",
            "100",
            "--lease-ms",
            "1000",
            "--heartbeat-ms",
            "200",
        ],
    );
    until(&url, "the run waits for its answer", async |conn| {
        status(conn, id).await == RunStatus::Waiting
    })
    .await;

    // Hold the window open: with the run's checkpoint row locked, `review`'s commit (which
    // saves the checkpoint) waits, so the worker is killed with the node run and its commit
    // in flight, not yet durable.
    let mut locker = connect(&url).await;
    locker.batch_execute("BEGIN").await.unwrap();
    diesel::sql_query("SELECT run_id FROM checkpoints WHERE run_id = $1 FOR UPDATE")
        .bind::<diesel::sql_types::Uuid, _>(id.as_uuid())
        .execute(&mut locker)
        .await
        .unwrap();
    approve_from_the_cli(&url, id);
    let mut watcher = connect(&url).await;
    let deadline = Instant::now() + HANG;
    while blocked(&mut watcher, &schema, "%checkpoints%").await == 0 {
        assert!(
            Instant::now() < deadline,
            "review's commit never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.signal("-KILL");
    drop(doomed);
    // What the kernel's closing of its sockets does to its sessions (a session waiting for a
    // lock notices only when it next reads): its statements end, uncommitted.
    diesel::sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = $1 AND pid <> pg_backend_pid() AND pid <> $2",
    )
    .bind::<diesel::sql_types::Text, _>(schema.name())
    .bind::<diesel::sql_types::Integer, _>(backend_pid(&mut watcher).await)
    .execute(&mut locker)
    .await
    .unwrap();
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        steps(&mut watcher, id).await,
        [
            (s("draft"), 1, StageStatus::Completed),
            (s("review"), 2, StageStatus::Started),
        ],
        "the worker died with review's commit not made"
    );

    let mut conn = completed_by_a_rescuer(&url, id).await;
    assert_eq!(
        owner_and_recoveries(&mut conn, id).await,
        (Some(s("rescuer")), 1)
    );
    assert_eq!(
        attempts(&mut conn, id).await,
        [
            (s("draft"), 1, 1, StageStatus::Completed),
            (s("review"), 2, 1, StageStatus::Failed),
            (s("review"), 3, 1, StageStatus::Completed),
            (s("publish"), 4, 1, StageStatus::Completed),
        ],
        "draft ran once; review, whose commit died with its worker, ran again once (a \
         takeover continues at a new step, given the answer)"
    );
    let asked = repository::interrupts(&mut conn, id).await.unwrap();
    assert_eq!(
        (
            asked.len(),
            asked[0].answer.as_ref().map(|a| a.to_value().unwrap())
        ),
        (1, Some(json!(true))),
        "the question was asked once and its answer kept"
    );
    let run = repository::find_run(&mut conn, id).await.unwrap();
    assert_eq!(
        run.result.unwrap().to_value().unwrap()["published"],
        json!(true)
    );
    drop((conn, watcher, locker));
    schema.drop_schema().await.unwrap();
}

async fn backend_pid(conn: &mut AsyncPgConnection) -> i32 {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result(conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_worker_s_late_writes_are_refused() {
    let schema = IsolatedSchema::create().await.unwrap();
    let url = schema.database_url().to_owned();
    let id = pending(&url, 1, json!({"nodes": 4, "delay_ms": 1000})).await[0];

    let paused = WorkerProcess::start_logging_nodes(
        &url,
        &[
            "--name",
            "paused",
            "--lease-ms",
            "1000",
            "--heartbeat-ms",
            "200",
            "--poll-ms",
            "200",
        ],
    );
    until(&url, "n1 has started", async |conn| {
        stage_started(conn, id, "n1").await
    })
    .await;
    paused.signal("-STOP"); // longer than its lease, mid-node

    let other = WorkerProcess::start_logging_nodes(&url, &["--name", "other", "--poll-ms", "200"]);
    until(&url, "the run has completed", async |conn| {
        status(conn, id).await == RunStatus::Completed
    })
    .await;
    let mut conn = connect(&url).await;
    let finished = repository::find_run(&mut conn, id).await.unwrap();
    let recorded = steps(&mut conn, id).await;

    paused.signal("-CONT");
    // Its node had 1 s to go, its heartbeat 0.2 s: give it time to try to write.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let started = [paused.node_starts(id), other.node_starts(id)];
    assert!(paused.stop().success());
    assert!(other.stop().success());

    assert_eq!(
        owner_and_recoveries(&mut conn, id).await,
        (Some(s("other")), 1)
    );
    assert_eq!(
        steps(&mut conn, id).await,
        recorded,
        "nothing written after the takeover"
    );
    assert_eq!(repository::find_run(&mut conn, id).await.unwrap(), finished);
    assert_eq!(
        recorded,
        [
            (s("n0"), 1, StageStatus::Completed),
            (s("n1"), 2, StageStatus::Failed),
            (s("n1"), 3, StageStatus::Completed),
            (s("n2"), 4, StageStatus::Completed),
            (s("n3"), 5, StageStatus::Completed),
        ]
    );
    assert_eq!(
        started[0],
        ["n0", "n1"],
        "the paused worker went no further once it woke"
    );
    assert_eq!(
        executions(&started),
        counted(&[("n0", 1), ("n1", 2), ("n2", 1), ("n3", 1)]),
        "the paused worker went no further once it woke"
    );
    drop(conn);
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_from_another_process_stops_a_worker_s_run() {
    let schema = IsolatedSchema::create().await.unwrap();
    let url = schema.database_url().to_owned();
    // Each node sleeps a minute (the samples' longest): only an interruption ends it within
    // the test's guard.
    let id = pending(&url, 1, json!({"nodes": 3, "delay_ms": 60_000})).await[0];
    let worker = WorkerProcess::start(&url, &["--name", "w", "--poll-ms", "200"]);
    until(&url, "n0 has started", async |conn| {
        stage_started(conn, id, "n0").await
    })
    .await;

    let cancel = Command::new(env!("CARGO_BIN_EXE_workflows"))
        .args(["cancel", &id.to_string()])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(cancel.status.success());
    until(&url, "the node was interrupted", async |conn| {
        steps(conn, id).await == [(s("n0"), 1, StageStatus::Failed)]
    })
    .await;
    assert!(worker.stop().success());
    let mut conn = connect(&url).await;
    let run = repository::find_run(&mut conn, id).await.unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    let stage = &repository::stages(&mut conn, id).await.unwrap()[0];
    assert_eq!(
        stage.error_message.as_deref(),
        Some("cancelled while executing")
    );
    drop(conn);
    schema.drop_schema().await.unwrap();
}

/// Forwards connections made to `listener` to `target` (host:port) once started.
async fn forward(listener: tokio::net::TcpListener, target: String) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_started_before_the_database_is_reachable_waits_for_it_saying_so() {
    let schema = IsolatedSchema::create().await.unwrap();
    let url = schema.database_url().to_owned();
    // The database is reached through a port nothing listens on yet.
    let at = url.find('@').unwrap() + 1;
    let end = at + url[at..].find('/').unwrap();
    let server = url[at..end].to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let through = format!("{}127.0.0.1:{port}{}", &url[..at], &url[end..]);
    let worker = WorkerProcess::launch(&through, &["--name", "early", "--poll-ms", "100"]);
    let said = worker.expect_line("stderr: worker: cannot reach the database yet");
    assert!(said.contains("retrying in"), "{said}");

    // The proxy runs on a thread and runtime of its own: this test's thread blocks while it
    // reads the worker's output, and must not hold up the worker's connections meanwhile.
    let proxy = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            tokio::select! {
                () = forward(listener, server) => {}
                () = tokio::time::sleep(HANG) => {}
            }
        });
    });
    worker.expect_line("worker early started");
    let ids = pending(&url, 1, json!({"nodes": 2})).await;
    until(&url, "the run completed", async |conn| {
        status(conn, ids[0]).await == RunStatus::Completed
    })
    .await;
    assert!(worker.stop().success());
    drop(proxy);
    schema.drop_schema().await.unwrap();
}
