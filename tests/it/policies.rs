//! Node policies: retries with backoff (one stage row per attempt, the completion once),
//! fatal errors, per-attempt and idle timeouts, the run's deadline, cancel during a backoff,
//! long backoffs that release the run to any worker, and resume after exhausted retries.

use std::time::Duration;

use serde_json::json;
use workflows::testing::IsolatedSchema;

use crate::fixtures::{HANG, Running, owner_and_token, run_of, until_status};
use workflows::{
    BoxError, Event, Executor, ExecutorConfig, GraphBuilder, NodeContext, NodeError, NodePolicy,
    Params, Pool, Registry, RetryPolicy, RunId, RunStatus, Runtime, StageStatus, State, Worker,
    WorkerConfig, WorkflowDef, repository,
};

/// `call` then `after`. `call` misbehaves as `mode` says on its first `fail_times` attempts
/// (`retryable`: a marked error; `scribble`: one after changing its state; `fatal`: an
/// unmarked one; `hang`: sleeps a minute; `beat`:
/// takes 0.6 s, heartbeating every 0.05 s), then adds 1 to `calls`. Its policy:
/// `max_attempts`, `interval_ms` (no jitter), `timeout_ms`, `idle_ms`; `run_timeout_ms`
/// bounds the run.
async fn retried(g: &mut GraphBuilder, _: &Runtime, p: Params) -> Result<State, BoxError> {
    let ms = |key: &str| -> Result<Option<Duration>, BoxError> {
        Ok(p.get::<u64>(key)?.map(Duration::from_millis))
    };
    let mut policy = NodePolicy::new().retry(
        RetryPolicy::attempts(p.get::<u32>("max_attempts")?.unwrap_or(1))
            .initial_interval(ms("interval_ms")?.unwrap_or(Duration::from_millis(10)))
            .jitter(false),
    );
    if let Some(timeout) = ms("timeout_ms")? {
        policy = policy.timeout(timeout);
    }
    if let Some(idle) = ms("idle_ms")? {
        policy = policy.idle_timeout(idle);
    }
    if let Some(limit) = ms("run_timeout_ms")? {
        g.run_timeout(limit);
    }
    let call = g.node("call", call);
    let after = g.node(
        "after",
        |s: State, _| async move { Ok(s.with("after", true)) },
    );
    g.policy(call, policy)
        .edge(call, after)
        .start_at(call)
        .end_at(after);
    let mode: String = p.require("mode")?;
    let fail_times: u32 = p.require("fail_times")?;
    Ok(State::new()
        .with("mode", mode)
        .with("fail_times", fail_times)
        .with("calls", 0))
}

async fn call(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    let mode: String = state.require("mode")?;
    let fail_times: u32 = state.require("fail_times")?;
    if ctx.attempt() <= fail_times {
        match mode.as_str() {
            "scribble" => {
                state.set("scribbled", ctx.attempt());
                return Err(NodeError::retryable("failed after changing its state").into());
            }
            "retryable" => {
                return Err(
                    NodeError::retryable(format!("503 on attempt {}", ctx.attempt())).into(),
                );
            }
            "fatal" => return Err("400 bad request".into()),
            "hang" => tokio::time::sleep(Duration::from_secs(60)).await,
            "beat" => {
                for _ in 0..12 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    ctx.heartbeat();
                }
            }
            other => return Err(format!("unknown mode {other}").into()),
        }
    }
    let calls: u64 = state.require("calls")?;
    let scribbled = state.value("scribbled").cloned();
    Ok(state
        .with("saw_scribbled", scribbled)
        .with("calls", calls + 1)
        .with("attempt", ctx.attempt()))
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register(WorkflowDef::new(
            "retried",
            "call, then after",
            |g, r, p| Box::pin(retried(g, r, p)),
        ))
        .unwrap();
    registry
}

fn executor(pool: &Pool) -> Executor {
    Executor::builder(pool.clone(), registry()).build().unwrap()
}

/// Each stage of `call`: (attempt, status, error).
async fn attempts_of(pool: &Pool, id: RunId) -> Vec<(i32, StageStatus, Option<String>)> {
    let mut conn = pool.get().await.unwrap();
    repository::stages(&mut conn, id)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.node_name == "call")
        .map(|s| (s.attempt, s.status, s.error_message))
        .collect()
}

#[tokio::test]
async fn a_node_failing_twice_then_succeeding_completes_with_three_attempts_and_its_work_done_once()
{
    let schema = IsolatedSchema::create().await.unwrap();
    let executor = executor(schema.pool());
    let mut execution = executor
        .start(
            "retried",
            json!({"mode": "retryable", "fail_times": 2, "max_attempts": 5}),
        )
        .await
        .unwrap();
    let mut retrying = Vec::new();
    while let Some(event) = execution.next_event().await {
        if let Event::NodeRetrying {
            attempt,
            max_attempts,
            retry_in_ms,
            released,
            error,
            ..
        } = event
        {
            retrying.push((attempt, max_attempts, retry_in_ms, released, error));
        }
    }
    let run = execution.wait().await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error_message);
    let result = run.result.unwrap().to_value().unwrap();
    assert_eq!(
        (result["calls"].clone(), result["attempt"].clone()),
        (json!(1), json!(3))
    );
    assert_eq!(
        retrying,
        [
            (2, 5, 10, false, "503 on attempt 1".to_owned()),
            (3, 5, 20, false, "503 on attempt 2".to_owned()),
        ]
    );
    assert_eq!(
        attempts_of(schema.pool(), run.id).await,
        [
            (
                1,
                StageStatus::Failed,
                Some("503 on attempt 1 (attempt 1 of 5; trying again in 0.0 s)".to_owned())
            ),
            (
                2,
                StageStatus::Failed,
                Some("503 on attempt 2 (attempt 2 of 5; trying again in 0.0 s)".to_owned())
            ),
            (3, StageStatus::Completed, None),
        ]
    );
    // The completion is recorded once: one decision out of `call`.
    let mut conn = schema.pool().get().await.unwrap();
    let decisions = repository::decisions(&mut conn, run.id).await.unwrap();
    assert_eq!(
        decisions.iter().filter(|d| d.from_node == "call").count(),
        1
    );
    drop(conn);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_retried_attempt_is_given_the_state_as_it_was_not_as_the_failed_attempt_changed_it() {
    let schema = IsolatedSchema::create().await.unwrap();
    let run = executor(schema.pool())
        .run(
            "retried",
            json!({"mode": "scribble", "fail_times": 2, "max_attempts": 3}),
        )
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error_message);
    let result = run.result.unwrap().to_value().unwrap();
    assert_eq!(
        (result["saw_scribbled"].clone(), result["attempt"].clone()),
        (json!(null), json!(3))
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn when_attempts_run_out_the_run_fails_naming_the_node_the_attempts_and_the_last_error() {
    let schema = IsolatedSchema::create().await.unwrap();
    let executor = executor(schema.pool());
    let run = executor
        .run(
            "retried",
            json!({"mode": "retryable", "fail_times": 9, "max_attempts": 3}),
        )
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error_message.as_deref(),
        Some("node call failed after 3 attempts: 503 on attempt 3")
    );
    let attempts = attempts_of(schema.pool(), run.id).await;
    assert_eq!(
        attempts.iter().map(|a| (a.0, a.1)).collect::<Vec<_>>(),
        [
            (1, StageStatus::Failed),
            (2, StageStatus::Failed),
            (3, StageStatus::Failed)
        ]
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn an_unmarked_error_is_fatal_and_not_retried() {
    let schema = IsolatedSchema::create().await.unwrap();
    let executor = executor(schema.pool());
    let run = executor
        .run(
            "retried",
            json!({"mode": "fatal", "fail_times": 1, "max_attempts": 5}),
        )
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error_message.as_deref(),
        Some("node call failed: 400 bad request")
    );
    assert_eq!(attempts_of(schema.pool(), run.id).await.len(), 1);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn an_attempt_past_its_timeout_is_stopped_and_tried_again() {
    let schema = IsolatedSchema::create().await.unwrap();
    let executor = executor(schema.pool());
    let run = executor
        .run(
            "retried",
            json!({"mode": "hang", "fail_times": 1, "max_attempts": 2, "timeout_ms": 100}),
        )
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error_message);
    let attempts = attempts_of(schema.pool(), run.id).await;
    assert_eq!(
        attempts[0].2.as_deref(),
        Some(
            "timed out: the attempt took longer than its timeout (0.1 s) (attempt 1 of 2; trying again in 0.0 s)"
        )
    );
    assert_eq!((attempts[1].0, attempts[1].1), (2, StageStatus::Completed));
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn an_idle_timeout_stops_an_attempt_without_heartbeats_and_heartbeats_keep_one_alive() {
    let schema = IsolatedSchema::create().await.unwrap();
    let executor = executor(schema.pool());
    // Silent for a minute: stopped after 0.2 s without a heartbeat, every attempt.
    let silent = executor
        .run(
            "retried",
            json!({"mode": "hang", "fail_times": 9, "max_attempts": 2, "idle_ms": 200}),
        )
        .await
        .unwrap();
    assert_eq!(
        silent.error_message.as_deref(),
        Some(
            "node call failed after 2 attempts: timed out: no heartbeat for longer than its idle_timeout (0.2 s)"
        )
    );
    // 0.6 s, three times the idle timeout, but heartbeating every 0.05 s: one attempt.
    let beating = executor
        .run(
            "retried",
            json!({"mode": "beat", "fail_times": 1, "max_attempts": 2, "idle_ms": 200}),
        )
        .await
        .unwrap();
    assert_eq!(
        beating.status,
        RunStatus::Completed,
        "{:?}",
        beating.error_message
    );
    assert_eq!(
        attempts_of(schema.pool(), beating.id).await,
        [(1, StageStatus::Completed, None)]
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn the_run_timeout_stops_the_node_executing_and_fails_the_run() {
    let schema = IsolatedSchema::create().await.unwrap();
    let executor = executor(schema.pool());
    let run = executor
        .run(
            "retried",
            json!({"mode": "hang", "fail_times": 1, "max_attempts": 5, "run_timeout_ms": 200}),
        )
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error_message.as_deref(),
        Some("the run took longer than its run_timeout (0.2 s) and was stopped in node call")
    );
    assert_eq!(attempts_of(schema.pool(), run.id).await.len(), 1);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_cancel_during_a_backoff_cancels_at_once() {
    let schema = IsolatedSchema::create().await.unwrap();
    let executor = executor(schema.pool());
    // A minute's backoff, waited out in this process (a caller's run is never released).
    let mut execution = executor
        .start(
            "retried",
            json!({"mode": "retryable", "fail_times": 1, "max_attempts": 2, "interval_ms": 60000}),
        )
        .await
        .unwrap();
    let id = execution.run().id;
    while let Some(event) = execution.next_event().await {
        if matches!(event, Event::NodeRetrying { .. }) {
            break;
        }
    }
    executor.cancel(id).await.unwrap();
    let run = tokio::time::timeout(HANG, execution.wait())
        .await
        .expect("the cancel ended the backoff")
        .unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    let attempts = attempts_of(schema.pool(), id).await;
    assert_eq!(
        attempts.iter().map(|a| (a.0, a.1)).collect::<Vec<_>>(),
        [(1, StageStatus::Failed), (2, StageStatus::Failed)]
    );
    assert_eq!(attempts[1].2.as_deref(), Some("cancelled while executing"));
    schema.drop_schema().await.unwrap();
}

/// A worker whose backoffs above 50 ms release the run.
fn releasing_worker(pool: &Pool, owner: &str) -> Worker {
    let executor = Executor::builder(pool.clone(), registry())
        .config(ExecutorConfig::default().owner(owner))
        .build()
        .unwrap();
    Worker::new(
        executor,
        WorkerConfig::default()
            .poll_interval(Duration::from_millis(50))
            .hold_waits_up_to(Duration::from_millis(50)),
    )
}

#[tokio::test]
async fn a_long_backoff_releases_the_run_and_another_worker_finishes_it_when_due() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let submitted = executor(pool)
        .submit(
            "retried",
            json!({"mode": "retryable", "fail_times": 1, "max_attempts": 2, "interval_ms": 1500}),
            None,
        )
        .await
        .unwrap();

    // The first worker claims the run, fails its first attempt and lets go of it.
    let first = Running::start(releasing_worker(pool, "first"));
    let waiting = until_status(pool, submitted.id, RunStatus::Waiting).await;
    let report = first.stop().await;
    assert!(
        report.cancelled.is_empty(),
        "nothing was executing to cancel"
    );
    let wake_at = waiting.wake_at.expect("a waiting run says when it is due");
    assert_eq!(
        owner_and_token(pool, submitted.id).await,
        (None, None),
        "a waiting run holds no lease"
    );

    // Another worker, started later, finishes it once it is due.
    let second = Running::start(releasing_worker(pool, "second"));
    let done = until_status(pool, submitted.id, RunStatus::Completed).await;
    second.stop().await;
    let mut conn = pool.get().await.unwrap();
    let stages = repository::stages(&mut conn, submitted.id).await.unwrap();
    drop(conn);
    let retried = stages
        .iter()
        .find(|s| s.node_name == "call" && s.attempt == 2)
        .expect("the second attempt has a stage");
    assert!(
        retried.created_at >= wake_at,
        "the second attempt started at {} before it was due at {wake_at}",
        retried.created_at
    );
    assert_eq!(retried.status, StageStatus::Completed);
    let result = done.result.unwrap().to_value().unwrap();
    assert_eq!(
        (result["calls"].clone(), result["attempt"].clone()),
        (json!(1), json!(2))
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_waiting_run_can_be_cancelled_and_is_never_continued() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let executor = executor(pool);
    let submitted = executor
        .submit(
            "retried",
            json!({"mode": "retryable", "fail_times": 1, "max_attempts": 2, "interval_ms": 200}),
            None,
        )
        .await
        .unwrap();
    let worker = Running::start(releasing_worker(pool, "worker"));
    until_status(pool, submitted.id, RunStatus::Waiting).await;
    let cancelled = executor.cancel(submitted.id).await.unwrap();
    assert_eq!(
        (cancelled.status, cancelled.wake_at),
        (RunStatus::Cancelled, None)
    );
    // Well past its due time, the worker has not touched it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    worker.stop().await;
    assert_eq!(
        run_of(pool, submitted.id).await.status,
        RunStatus::Cancelled
    );
    assert_eq!(attempts_of(pool, submitted.id).await.len(), 1);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn resume_after_exhausted_retries_starts_the_nodes_attempts_afresh() {
    let schema = IsolatedSchema::create().await.unwrap();
    let executor = executor(schema.pool());
    // Its first two attempts at any step fail, and two are all the policy allows.
    let params = json!({"mode": "retryable", "fail_times": 2, "max_attempts": 2});
    let failed = executor.run("retried", params).await.unwrap();
    assert_eq!(
        failed.error_message.as_deref(),
        Some("node call failed after 2 attempts: 503 on attempt 2")
    );
    let resumed = executor
        .resume(failed.id)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    // The resume tries `call` at a new step, with the whole budget again: attempts 1 and 2.
    assert_eq!(
        resumed.error_message.as_deref(),
        Some("node call failed after 2 attempts: 503 on attempt 2")
    );
    let mut conn = schema.pool().get().await.unwrap();
    let steps: Vec<(i32, i32, StageStatus)> = repository::stages(&mut conn, failed.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.iteration, s.attempt, s.status))
        .collect();
    drop(conn);
    assert_eq!(
        steps,
        [
            (1, 1, StageStatus::Failed),
            (1, 2, StageStatus::Failed),
            (2, 1, StageStatus::Failed),
            (2, 2, StageStatus::Failed)
        ]
    );
    schema.drop_schema().await.unwrap();
}
