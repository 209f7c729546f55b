//! The executor on a real PostgreSQL: what a run records, routing, cycles, failures, cancel,
//! resume, races, bad input and shutdown.

use std::sync::Arc;
use std::time::Duration;

use crate::fixtures::{Gate, HANG, flaky, gated, linear, mark, route};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;
use workflows::schema::{checkpoints, runs};
use workflows::testing::{self, IsolatedSchema};
use workflows::{
    BoxError, Error, Event, Execution, Executor, ExecutorConfig, GraphBuilder, Params, Pool,
    Predicate, Registry, Run, RunId, RunStatus, Runtime, StageStatus, State, WorkflowDef,
    lifecycle, repository,
};

async fn spin(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("again", mark)
        .add_node("never", mark)
        .add_edge("again", "again")
        .set_entry_point("again")
        .add_exit_point("never")
        .set_max_iterations(5);
    Ok(State::new())
}

async fn boom(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("a", mark)
        .add_node("b", |_state: State, _ctx| async move {
            Err::<State, BoxError>("boom".into())
        })
        .add_edge("a", "b")
        .set_entry_point("a")
        .add_exit_point("b");
    Ok(State::new())
}

async fn panics(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("a", |_state: State, _ctx| async move {
        if true {
            panic!("kaboom");
        }
        Ok(State::new())
    })
    .set_entry_point("a")
    .add_exit_point("a");
    Ok(State::new())
}

async fn no_way_out(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("a", mark)
        .add_node("b", mark)
        .add_conditional_edge("a", "b", Predicate::key_exists("missing"))
        .set_entry_point("a")
        .add_exit_point("b");
    Ok(State::new())
}

async fn panicking_factory(
    _: &mut GraphBuilder,
    _: &Runtime,
    _: Params,
) -> Result<State, BoxError> {
    panic!("factory exploded")
}

async fn bad_factory(_: &mut GraphBuilder, _: &Runtime, p: Params) -> Result<State, BoxError> {
    let _: u32 = p.require("count")?;
    Ok(State::new())
}

/// Sleeps an hour in `slow`, unless interrupted.
async fn slow(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("slow", |state: State, _ctx| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(state)
    })
    .set_entry_point("slow")
    .add_exit_point("slow");
    Ok(State::new())
}

/// Returns a state PostgreSQL cannot store: a NUL character in a string.
async fn unstorable(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("a", |state: State, _ctx| async move {
        Ok(state.with("text", "a\u{0}b"))
    })
    .set_entry_point("a")
    .add_exit_point("a");
    Ok(State::new())
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    for def in [
        WorkflowDef::new("linear", "a, b, c", |g, r, p| Box::pin(linear(g, r, p))),
        WorkflowDef::new("route", "routes on kind", |g, r, p| {
            Box::pin(route(g, r, p))
        }),
        WorkflowDef::new("spin", "loops forever", |g, r, p| Box::pin(spin(g, r, p))),
        WorkflowDef::new("boom", "fails at b", |g, r, p| Box::pin(boom(g, r, p))),
        WorkflowDef::new("panics", "panics", |g, r, p| Box::pin(panics(g, r, p))),
        WorkflowDef::new("no-way-out", "no edge holds", |g, r, p| {
            Box::pin(no_way_out(g, r, p))
        }),
        WorkflowDef::new("bad-factory", "needs count", |g, r, p| {
            Box::pin(bad_factory(g, r, p))
        }),
        WorkflowDef::new("panicking-factory", "panics while building", |g, r, p| {
            Box::pin(panicking_factory(g, r, p))
        }),
        WorkflowDef::new("gated", "waits for a gate", |g, r, p| {
            Box::pin(gated(g, r, p))
        }),
        WorkflowDef::new("slow", "sleeps", |g, r, p| Box::pin(slow(g, r, p))),
        WorkflowDef::new("flaky", "fails once at b", |g, r, p| {
            Box::pin(flaky(g, r, p))
        }),
        WorkflowDef::new("unstorable", "returns a NUL", |g, r, p| {
            Box::pin(unstorable(g, r, p))
        }),
    ] {
        registry.register(def).unwrap();
    }
    registry
}

fn executor_on(pool: Pool, config: ExecutorConfig) -> (Executor, Arc<Gate>) {
    let gate = Arc::new(Gate(Notify::new()));
    let executor = Executor::builder(pool, registry())
        .runtime(Runtime::builder().with_arc(Arc::clone(&gate)).build())
        .config(config)
        .build()
        .unwrap();
    (executor, gate)
}

/// An executor on a test-transaction pool: nothing it writes outlives the test.
async fn executor() -> (Executor, Arc<Gate>) {
    executor_on(testing::pool().await.unwrap(), ExecutorConfig::default())
}

/// The last event of `execution`'s stream, once it has ended.
async fn last_event(execution: &mut Execution) -> Option<Event> {
    let mut last = None;
    while let Some(event) = execution.next_event().await {
        last = Some(event);
    }
    last
}

async fn wait(execution: Execution) -> Run {
    tokio::time::timeout(HANG, execution.wait())
        .await
        .expect("the run ended")
        .unwrap()
}

/// A stage as these tests compare it: node, step, status, error.
type StageRow = (String, i32, StageStatus, Option<String>);

/// A decision as these tests compare it: from, to, predicate, result.
type DecisionRow = (String, Option<String>, Option<String>, Option<bool>);

async fn stages_of(executor: &Executor, run: RunId) -> Vec<StageRow> {
    let mut conn = executor.pool().get().await.unwrap();
    repository::stages(&mut conn, run)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.node_name, s.iteration, s.status, s.error_message))
        .collect()
}

async fn decisions_of(executor: &Executor, run: RunId) -> Vec<DecisionRow> {
    let mut conn = executor.pool().get().await.unwrap();
    repository::decisions(&mut conn, run)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.from_node, d.to_node, d.predicate_name, d.predicate_result))
        .collect()
}

async fn checkpoint_of(executor: &Executor, run: RunId) -> Option<(String, Value)> {
    let mut conn = executor.pool().get().await.unwrap();
    checkpoints::table
        .find(run)
        .select((checkpoints::checkpoint_node, checkpoints::state_data))
        .first(&mut conn)
        .await
        .optional()
        .unwrap()
}

fn s(text: &str) -> String {
    text.to_owned()
}

/// Waits for the event `wanted` on the progress stream.
async fn until(execution: &mut Execution, wanted: impl Fn(&Event) -> bool) {
    tokio::time::timeout(HANG, async {
        while let Some(event) = execution.next_event().await {
            if wanted(&event) {
                return;
            }
        }
        panic!("the stream ended first");
    })
    .await
    .expect("the event came");
}

fn node_started(name: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::NodeStarted { node, .. } if node == name)
}

/// Records the SQL of every statement a connection sends, but the test pool's check of its
/// connection on every `get()` (production pools do not check).
struct Statements(Arc<std::sync::Mutex<Vec<String>>>);

impl diesel::connection::Instrumentation for Statements {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        if let diesel::connection::InstrumentationEvent::StartQuery { query, .. } = event {
            let sql = query.to_string();
            if sql != "SELECT $1 -- binds: [1]" {
                self.0.lock().unwrap().push(sql);
            }
        }
    }
}

/// The test pool, whose one connection (so every statement of a run) records what it sends.
async fn pool_recording_statements() -> (Pool, Arc<std::sync::Mutex<Vec<String>>>) {
    let pool = testing::pool().await.unwrap();
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    pool.get()
        .await
        .unwrap()
        .set_instrumentation(Statements(Arc::clone(&sent)));
    (pool, sent)
}

/// `run` of `linear` completed, as recorded, with a completed stage per node.
async fn linear_run_completed_as_recorded(executor: &Executor, run: Run) {
    assert_eq!(run.status, RunStatus::Completed);
    let mut conn = executor.pool().get().await.unwrap();
    let recorded = repository::find_run(&mut conn, run.id).await.unwrap();
    assert_eq!(
        run, recorded,
        "the run its last write returned is the run as recorded"
    );
    drop(conn);
    assert_eq!(
        stages_of(executor, run.id).await,
        [
            (s("a"), 1, StageStatus::Completed, None),
            (s("b"), 2, StageStatus::Completed, None),
            (s("c"), 3, StageStatus::Completed, None),
        ]
    );
}

#[tokio::test]
async fn with_group_commit_a_run_executing_alone_commits_alone_and_reads_nothing_after() {
    let (pool, sent) = pool_recording_statements().await;
    let config = ExecutorConfig::default().group_commit(true);
    let (executor, _) = executor_on(pool.clone(), config);
    let run = executor.run("linear", json!({})).await.unwrap();
    let sent = sent.lock().unwrap().clone();
    assert_eq!(
        sent.len(),
        4,
        "its start, then a, b and c's commits: {sent:#?}"
    );
    assert!(
        sent.iter().all(|s| !s.contains("unnest(")),
        "none a batch: {sent:#?}"
    );
    linear_run_completed_as_recorded(&executor, run).await;
}

#[tokio::test]
async fn a_started_run_is_inserted_with_its_first_stage_then_sends_one_statement_per_node_and_reads_nothing_after()
 {
    let (pool, sent) = pool_recording_statements().await;
    let (executor, _) = executor_on(pool.clone(), ExecutorConfig::default());
    let execution = executor.start("linear", json!({})).await.unwrap();
    let inserted = sent.lock().unwrap().clone();
    assert_eq!(inserted.len(), 1, "{inserted:#?}");
    assert!(
        inserted[0].contains(r#"INSERT INTO "stages""#)
            && inserted[0].contains(r#"INSERT INTO "runs""#),
        "the run and its first stage in one statement: {}",
        inserted[0]
    );
    let run = wait(execution).await;
    let sent = sent.lock().unwrap().clone();
    let commits = &sent[1..];
    assert_eq!(commits.len(), 3, "a, b and c's commits: {sent:#?}");
    assert!(
        commits
            .iter()
            .all(|s| s.starts_with(r#"WITH "held_run" AS MATERIALIZED"#)),
        "{commits:#?}"
    );
    linear_run_completed_as_recorded(&executor, run).await;
}

#[tokio::test]
async fn a_linear_run_records_a_stage_per_node_a_decision_per_edge_and_its_checkpoint() {
    let (executor, _) = executor().await;
    let run = executor.run("linear", json!({"topic": "x"})).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert!(run.started_at.is_some() && run.completed_at.is_some());
    assert_eq!(run.params, Some(json!({"topic": "x"}).into()));
    assert_eq!(
        run.result,
        Some(json!({"start": true, "a": 1, "b": 2, "c": 3}).into())
    );

    let mut conn = executor.pool().get().await.unwrap();
    let stages = repository::stages(&mut conn, run.id).await.unwrap();
    drop(conn);
    let shape: Vec<_> = stages
        .iter()
        .map(|s| (s.node_name.as_str(), s.iteration, s.status))
        .collect();
    assert_eq!(
        shape,
        [
            ("a", 1, StageStatus::Completed),
            ("b", 2, StageStatus::Completed),
            ("c", 3, StageStatus::Completed)
        ]
    );
    assert!(stages.iter().all(|s| s.duration_ms.is_some_and(|d| d >= 0)));
    // The first stage holds the whole state the run started from; each stage what its
    // node changed, and no whole snapshot.
    assert_eq!(
        stages[0].input_snapshot,
        Some(json!({"start": true}).into())
    );
    let updates: Vec<_> = stages.iter().map(|s| s.state_update.clone()).collect();
    assert_eq!(
        updates,
        [
            Some(json!({"set": {"a": 1}}).into()),
            Some(json!({"set": {"b": 2}}).into()),
            Some(json!({"set": {"c": 3}}).into()),
        ]
    );
    assert!(stages[1..].iter().all(|s| s.input_snapshot.is_none()));
    assert!(stages.iter().all(|s| s.output_snapshot.is_none()));

    assert_eq!(
        decisions_of(&executor, run.id).await,
        [
            (s("a"), Some(s("b")), None, None),
            (s("b"), Some(s("c")), None, None),
            (s("c"), None, None, None),
        ]
    );
    let (node, state) = checkpoint_of(&executor, run.id)
        .await
        .expect("kept by default");
    assert_eq!(node, "c");
    assert_eq!(
        state["data"],
        json!({"start": true, "a": 1, "b": 2, "c": 3})
    );
    assert_eq!(state["iteration"], json!(3));
    assert_eq!(state["run_id"], json!(run.id.to_string()));
}

#[tokio::test]
async fn completed_runs_drop_their_checkpoint_when_configured() {
    let config = ExecutorConfig::default().keep_checkpoints(false);
    let (executor, _) = executor_on(testing::pool().await.unwrap(), config);
    let run = executor.run("linear", json!({})).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(checkpoint_of(&executor, run.id).await, None);
    assert_eq!(stages_of(&executor, run.id).await.len(), 3);
}

#[tokio::test]
async fn conditional_routing_takes_the_first_edge_that_holds_and_records_why() {
    let (executor, _) = executor().await;
    let math = executor
        .run("route", json!({"kind": "math"}))
        .await
        .unwrap();
    let prose = executor
        .run("route", json!({"kind": "poem"}))
        .await
        .unwrap();

    let nodes =
        |stages: Vec<StageRow>| -> Vec<String> { stages.into_iter().map(|s| s.0).collect() };
    assert_eq!(
        nodes(stages_of(&executor, math.id).await),
        ["analyze", "math"]
    );
    assert_eq!(
        nodes(stages_of(&executor, prose.id).await),
        ["analyze", "prose"]
    );

    let first = |d: Vec<DecisionRow>| d[0].clone();
    assert_eq!(
        first(decisions_of(&executor, math.id).await),
        (
            s("analyze"),
            Some(s("math")),
            Some(s(r#"key_equals(kind, "math")"#)),
            Some(true)
        )
    );
    assert_eq!(
        first(decisions_of(&executor, prose.id).await),
        (
            s("analyze"),
            Some(s("prose")),
            Some(s("always")),
            Some(true)
        )
    );
    let mut conn = executor.pool().get().await.unwrap();
    let reason = repository::decisions(&mut conn, prose.id).await.unwrap()[0]
        .reason
        .clone();
    assert_eq!(
        reason.as_deref(),
        Some(r#"always held; key_equals(kind, "math") did not"#)
    );
}

#[tokio::test]
async fn a_cycle_past_max_iterations_fails_the_run_saying_so() {
    let (executor, _) = executor().await;
    let mut execution = executor.start("spin", json!({})).await.unwrap();
    let mut cycle = None;
    while let Some(event) = execution.next_event().await {
        if let Event::CycleDetected {
            max_iterations,
            iteration,
            ..
        } = event
        {
            cycle = Some((max_iterations, iteration));
        }
    }
    assert_eq!(cycle, Some((5, 6)));
    let run = wait(execution).await;
    assert_eq!(run.status, RunStatus::Failed);
    let message = run.error_message.unwrap();
    assert!(message.contains("max_iterations (5)"), "{message}");
    let stages = stages_of(&executor, run.id).await;
    assert_eq!(stages.len(), 5, "exactly max_iterations node executions");
    assert!(stages.iter().all(|s| s.2 == StageStatus::Completed));
}

#[tokio::test]
async fn a_node_error_fails_the_run_and_its_stage() {
    let (executor, _) = executor().await;
    let run = executor.run("boom", json!({})).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.error_message.as_deref(), Some("node b failed: boom"));
    assert!(run.result.is_none());
    assert_eq!(
        stages_of(&executor, run.id).await,
        [
            (s("a"), 1, StageStatus::Completed, None),
            (
                s("b"),
                2,
                StageStatus::Failed,
                Some(s("node b failed: boom"))
            ),
        ]
    );
    let (node, _) = checkpoint_of(&executor, run.id).await.unwrap();
    assert_eq!(node, "a", "the checkpoint is the last completed node");
}

#[tokio::test]
async fn a_panicking_node_fails_the_run_instead_of_the_process() {
    let (executor, _) = executor().await;
    let run = executor.run("panics", json!({})).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error_message.as_deref(),
        Some("node a panicked: kaboom")
    );
}

#[tokio::test]
async fn a_node_with_no_edge_that_holds_fails_the_run() {
    let (executor, _) = executor().await;
    let run = executor.run("no-way-out", json!({})).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error_message.as_deref(),
        Some("no edge from node a holds: key_exists(missing) did not")
    );
    assert_eq!(
        decisions_of(&executor, run.id).await,
        [(s("a"), None, Some(s("key_exists(missing)")), Some(false))]
    );
}

#[tokio::test]
async fn a_factory_error_fails_the_run_with_its_message() {
    let (executor, _) = executor().await;
    let run = executor.run("bad-factory", json!({})).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error_message.as_deref(),
        Some(
            r#"workflow "bad-factory" could not be set up: params key "count": required but not given"#
        )
    );
    assert!(stages_of(&executor, run.id).await.is_empty());
}

#[tokio::test]
async fn a_panicking_factory_fails_the_run_and_ends_its_stream() {
    let (executor, _) = executor().await;
    let mut execution = executor
        .start("panicking-factory", json!({}))
        .await
        .unwrap();
    let id = execution.run_id();
    let last = last_event(&mut execution).await;
    assert!(
        matches!(
            &last,
            Some(Event::GraphCompleted {
                status: RunStatus::Failed,
                ..
            })
        ),
        "{last:?}"
    );
    let run = wait(execution).await;
    assert_eq!(run.id, id);
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error_message.as_deref(),
        Some("the run panicked: factory exploded")
    );
}

#[tokio::test]
async fn events_arrive_in_order_and_end_with_graph_completed() {
    let (executor, _) = executor().await;
    let mut execution = executor.start("linear", json!({})).await.unwrap();
    let mut kinds = Vec::new();
    while let Some(event) = execution.next_event().await {
        kinds.push(match event {
            Event::GraphStarted { .. } => s("graph_started"),
            Event::NodeStarted { node, .. } => format!("start {node}"),
            Event::NodeCompleted { node, .. } => format!("done {node}"),
            Event::EdgeTransition { to, .. } => format!("edge {}", to.unwrap_or_default()),
            Event::CheckpointSaved { node, .. } => format!("checkpoint {node}"),
            Event::GraphCompleted { status, .. } => format!("completed {status}"),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        kinds,
        [
            "graph_started",
            "start a",
            "done a",
            "edge b",
            "checkpoint a",
            "start b",
            "done b",
            "edge c",
            "checkpoint b",
            "start c",
            "done c",
            "edge ",
            "checkpoint c",
            "completed completed"
        ]
    );
    assert_eq!(wait(execution).await.status, RunStatus::Completed);
}

/// Records the step events it is told of, though it does not want them.
#[derive(Default)]
struct StepsUnwanted(std::sync::Mutex<Vec<String>>);

impl workflows::Observer for StepsUnwanted {
    fn on_event(&self, event: &Event) {
        let heard = match event {
            Event::NodeStarted { node, .. } => format!("start {node}"),
            Event::NodeCompleted { node, .. } => format!("done {node}"),
            Event::EdgeTransition { from, .. } => format!("edge from {from}"),
            Event::CheckpointSaved { node, .. } => format!("checkpoint {node}"),
            _ => return,
        };
        self.0.lock().unwrap().push(heard);
    }

    fn observes_steps(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn once_nobody_reads_a_run_s_stream_its_step_events_are_no_longer_made() {
    let gate = Arc::new(Gate(Notify::new()));
    let heard = Arc::new(StepsUnwanted::default());
    let executor = Executor::builder(testing::pool().await.unwrap(), registry())
        .runtime(Runtime::builder().with_arc(Arc::clone(&gate)).build())
        .observer(Arc::clone(&heard) as Arc<dyn workflows::Observer>)
        .build()
        .unwrap();
    let mut execution = executor.start("gated", json!({})).await.unwrap();
    let id = execution.run_id();
    // Read, the stream wants the steps: every observer hears them.
    until(&mut execution, node_started("wait")).await;
    // Dropped, it reads nothing more: the run goes on, and its steps are no longer made.
    drop(execution);
    gate.0.notify_one();
    crate::fixtures::until_status(executor.pool(), id, RunStatus::Completed).await;
    assert_eq!(
        *heard.0.lock().unwrap(),
        [
            "start a",
            "done a",
            "edge from a",
            "checkpoint a",
            "start wait"
        ]
    );
}

#[tokio::test]
async fn the_last_event_carries_the_result_the_run_recorded() {
    let (executor, _) = executor().await;
    let mut execution = executor.start("linear", json!({})).await.unwrap();
    let last = last_event(&mut execution).await;
    let run = wait(execution).await;
    let recorded = run
        .result
        .expect("a completed run has a result")
        .to_value()
        .unwrap();
    match last {
        Some(Event::GraphCompleted {
            status: RunStatus::Completed,
            result: Some(result),
            ..
        }) => assert_eq!(*result, recorded),
        other => panic!("the last event was {other:?}"),
    }
}

#[tokio::test]
async fn cancel_during_a_slow_node_ends_the_run_cancelled() {
    let (executor, _) = executor().await;
    let mut execution = executor.start("slow", json!({})).await.unwrap();
    until(&mut execution, node_started("slow")).await;

    let cancelled = executor.cancel(execution.run_id()).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let run = wait(execution).await; // the node sleeps an hour: this returns only if interrupted
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(
        stages_of(&executor, run.id).await,
        [(
            s("slow"),
            1,
            StageStatus::Failed,
            Some(s("cancelled while executing"))
        )]
    );
}

/// Starts `gated` with a node that awaits cancellation, and cancels it there.
async fn cancelled_while_waiting(executor: &Executor) -> Run {
    let mut execution = executor
        .start("gated", json!({"polite": true}))
        .await
        .unwrap();
    until(&mut execution, node_started("wait")).await;
    executor.cancel(execution.run_id()).await.unwrap();
    wait(execution).await
}

#[tokio::test]
async fn a_node_awaiting_cancellation_sees_it() {
    let (executor, _) = executor().await;
    let run = cancelled_while_waiting(&executor).await;
    assert_eq!(run.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn a_cancel_from_elsewhere_stops_the_run_at_its_next_write() {
    let (executor, gate) = executor().await;
    let mut execution = executor.start("gated", json!({})).await.unwrap();
    until(&mut execution, node_started("wait")).await;
    // As another process would: only the database learns of it.
    {
        let mut conn = executor.pool().get().await.unwrap();
        lifecycle::cancel_run(&mut conn, execution.run_id())
            .await
            .unwrap();
    }
    gate.0.notify_one();
    let run = wait(execution).await;
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(
        stages_of(&executor, run.id).await,
        [
            (s("a"), 1, StageStatus::Completed, None),
            (
                s("wait"),
                2,
                StageStatus::Failed,
                Some(s("cancelled while executing"))
            ),
        ],
        "the node's completion was refused, and c never started"
    );
    let (node, _) = checkpoint_of(&executor, run.id).await.unwrap();
    assert_eq!(node, "a");
}

#[tokio::test]
async fn a_pending_run_cancelled_before_it_starts_never_starts() {
    let (executor, _) = executor().await;
    let run = executor.submit("linear", json!({}), None).await.unwrap();
    let cancelled = executor.cancel(run.id).await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let worker = workflows::Worker::new(executor.clone(), workflows::WorkerConfig::default());
    assert_eq!(worker.fill().await.unwrap(), 0, "nothing to claim");
    let mut conn = executor.pool().get().await.unwrap();
    assert_eq!(
        repository::find_run(&mut conn, run.id)
            .await
            .unwrap()
            .status,
        RunStatus::Cancelled
    );
    assert!(
        repository::stages(&mut conn, run.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn resume_after_a_failure_continues_at_the_failed_node_with_new_step_numbers() {
    let (executor, _) = executor().await;
    let failed = executor.run("flaky", json!({"p": 1})).await.unwrap();
    assert_eq!(failed.status, RunStatus::Failed);

    let mut execution = executor.resume(failed.id).await.unwrap();
    assert_eq!(execution.run().status, RunStatus::Running);
    let mut resumed_at = None;
    while let Some(event) = execution.next_event().await {
        if let Event::Resumed {
            node, iteration, ..
        } = event
        {
            resumed_at = Some((node, iteration));
        }
    }
    assert_eq!(resumed_at, Some((s("b"), 3)));
    let run = wait(execution).await;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.error_message, None);
    assert_eq!(run.params, Some(json!({"p": 1}).into()), "the same params");
    assert_eq!(run.result, Some(json!({"a": 1, "b": 3, "c": 4}).into()));
    assert_eq!(
        stages_of(&executor, run.id).await,
        [
            (s("a"), 1, StageStatus::Completed, None),
            (
                s("b"),
                2,
                StageStatus::Failed,
                Some(s("node b failed: first attempt fails"))
            ),
            (s("b"), 3, StageStatus::Completed, None),
            (s("c"), 4, StageStatus::Completed, None),
        ]
    );
}

#[tokio::test]
async fn resume_after_a_cancel_closes_the_interrupted_stage_and_finishes() {
    let (executor, gate) = executor().await;
    let cancelled = cancelled_while_waiting(&executor).await;

    gate.0.notify_one(); // the resumed attempt's `wait` passes at once
    let run = wait(executor.resume(cancelled.id).await.unwrap()).await;
    assert_eq!(run.status, RunStatus::Completed);
    let stages = stages_of(&executor, run.id).await;
    let shape: Vec<_> = stages.iter().map(|s| (s.0.as_str(), s.1, s.2)).collect();
    assert_eq!(
        shape,
        [
            ("a", 1, StageStatus::Completed),
            ("wait", 2, StageStatus::Failed),
            ("wait", 3, StageStatus::Completed),
            ("c", 4, StageStatus::Completed),
        ]
    );
}

#[tokio::test]
async fn resume_without_a_checkpoint_starts_from_the_entry_point() {
    let (executor, _) = executor().await;
    let failed = executor.run("panics", json!({})).await.unwrap();
    let run = wait(executor.resume(failed.id).await.unwrap()).await;
    assert_eq!(run.status, RunStatus::Failed, "it panics again");
    let steps: Vec<_> = stages_of(&executor, run.id)
        .await
        .into_iter()
        .map(|s| (s.0, s.1))
        .collect();
    assert_eq!(steps, [(s("a"), 1), (s("a"), 2)]);
}

#[tokio::test]
async fn finished_runs_refuse_invalid_transitions() {
    let (executor, _) = executor().await;
    let run = executor.run("linear", json!({})).await.unwrap();
    let err = executor.resume(run.id).await.err().unwrap();
    assert!(
        matches!(
            err,
            Error::InvalidStatus {
                status: RunStatus::Completed,
                action: "resume",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    let err = executor.cancel(run.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidStatus {
                action: "cancel",
                ..
            }
        ),
        "{err:?}"
    );

    let mut conn = executor.pool().get().await.unwrap();
    let still = repository::find_run(&mut conn, run.id).await.unwrap();
    assert_eq!(
        (still.status, still.error_message),
        (RunStatus::Completed, None)
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_written() {
    let (executor, _) = executor().await;
    let count = |executor: Executor| async move {
        let mut conn = executor.pool().get().await.unwrap();
        runs::table
            .count()
            .get_result::<i64>(&mut conn)
            .await
            .unwrap()
    };
    let before = count(executor.clone()).await;

    for params in [json!([1, 2]), json!("text"), json!(42)] {
        let err = executor.start("linear", params).await.err().unwrap();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.to_string().contains("must be a JSON object"), "{err}");
    }
    let err = executor.start("nope", json!({})).await.err().unwrap();
    assert!(matches!(err, Error::WorkflowNotFound { .. }), "{err:?}");
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    assert_eq!(count(executor.clone()).await, before, "no run was created");

    let unknown = RunId::from_uuid(uuid::Uuid::new_v4());
    assert!(matches!(
        executor.cancel(unknown).await.unwrap_err(),
        Error::RunNotFound { .. }
    ));
    assert!(matches!(
        executor.resume(unknown).await.err().unwrap(),
        Error::RunNotFound { .. }
    ));
}

#[tokio::test]
async fn null_params_count_as_none() {
    let (executor, _) = executor().await;
    let run = executor.run("linear", Value::Null).await.unwrap();
    assert_eq!(
        (run.status, run.params),
        (RunStatus::Completed, Some(json!({}).into()))
    );
}

#[tokio::test]
async fn deleting_a_finished_run_removes_its_stages_decisions_and_checkpoint() {
    let (executor, _) = executor().await;
    let run = executor.run("linear", json!({})).await.unwrap();
    let mut conn = executor.pool().get().await.unwrap();
    lifecycle::delete_run(&mut conn, run.id).await.unwrap();
    assert!(matches!(
        repository::find_run(&mut conn, run.id).await,
        Err(Error::RunNotFound { .. })
    ));
    drop(conn);
    assert_eq!(checkpoint_of(&executor, run.id).await, None);
    let mut conn = executor.pool().get().await.unwrap();
    let left: i64 = workflows::schema::stages::table
        .filter(workflows::schema::stages::run_id.eq(run.id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_running_run_cannot_be_deleted() {
    let (executor, gate) = executor().await;
    let mut execution = executor.start("gated", json!({})).await.unwrap();
    until(&mut execution, node_started("wait")).await;
    {
        let mut conn = executor.pool().get().await.unwrap();
        let err = lifecycle::delete_run(&mut conn, execution.run_id())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidStatus {
                    status: RunStatus::Running,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    gate.0.notify_one();
    assert_eq!(wait(execution).await.status, RunStatus::Completed);
}

#[tokio::test]
async fn fifty_concurrent_executions_all_complete_with_every_row() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (executor, _) = executor_on(schema.pool().clone(), ExecutorConfig::default());
    let mut executions = Vec::new();
    for i in 0..50 {
        executions.push(executor.start("linear", json!({"i": i})).await.unwrap());
    }
    let mut ids = Vec::new();
    for execution in executions {
        let run = wait(execution).await;
        assert_eq!(run.status, RunStatus::Completed);
        ids.push(run.id);
    }
    for id in ids {
        assert_eq!(stages_of(&executor, id).await.len(), 3);
        assert_eq!(decisions_of(&executor, id).await.len(), 3);
        assert!(checkpoint_of(&executor, id).await.is_some());
    }
    drop(executor);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn of_two_racing_status_changes_exactly_one_wins() {
    let schema = IsolatedSchema::create().await.unwrap();
    for _ in 0..20 {
        let run = {
            let mut conn = schema.pool().get().await.unwrap();
            let id = crate::fixtures::insert_run(
                &mut conn,
                "linear",
                RunStatus::Running,
                crate::fixtures::at(0),
            )
            .await;
            repository::find_run(&mut conn, id).await.unwrap()
        };
        let (mut a, mut b) = (
            schema.pool().get().await.unwrap(),
            schema.pool().get().await.unwrap(),
        );
        let (done, failed) = tokio::join!(
            lifecycle::cancel_run(&mut a, run.id),
            lifecycle::cancel_run(&mut b, run.id),
        );
        assert!(
            done.is_ok() != failed.is_ok(),
            "exactly one wins: {done:?} / {failed:?}"
        );
        let loser = done.err().or(failed.err()).unwrap();
        assert!(matches!(loser, Error::InvalidStatus { .. }), "{loser:?}");
        let final_status = repository::find_run(&mut a, run.id).await.unwrap().status;
        assert_eq!(final_status, RunStatus::Cancelled);
    }
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_failed_write_fails_the_run_and_leaves_the_node_unrecorded() {
    let schema = IsolatedSchema::create().await.unwrap();
    {
        // Decisions can no longer be written: the second part of every node commit fails.
        let mut conn = schema.pool().get().await.unwrap();
        conn.batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'decisions are read-only today'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON decisions FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .unwrap();
    }
    let (executor, _) = executor_on(schema.pool().clone(), ExecutorConfig::default());
    let execution = executor.start("linear", json!({})).await.unwrap();
    let id = execution.run_id();
    // `wait` returns the run as recorded: failed, saying why.
    let waited = tokio::time::timeout(HANG, execution.wait())
        .await
        .unwrap()
        .unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    let run = repository::find_run(&mut conn, id).await.unwrap();
    assert_eq!(waited, run);
    assert_eq!(run.status, RunStatus::Failed);
    let message = run.error_message.unwrap();
    assert!(message.starts_with("recording the run failed"), "{message}");
    assert!(
        message.contains("decisions are read-only today"),
        "{message}"
    );
    drop(conn);
    // The node's stage completion and checkpoint were in the refused statement: neither is
    // there, so stages, decisions and checkpoint still agree.
    assert_eq!(
        stages_of(&executor, id).await,
        [(s("a"), 1, StageStatus::Started, None)]
    );
    assert_eq!(checkpoint_of(&executor, id).await, None);
    drop(executor);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn shutdown_drains_quick_runs_cancels_slow_ones_and_refuses_new_ones() {
    let (executor, _) = executor().await;
    let mut slow = executor.start("slow", json!({})).await.unwrap();
    until(&mut slow, node_started("slow")).await;
    let report = executor.shutdown(Duration::from_millis(200)).await;
    assert_eq!(report.cancelled, [slow.run_id()]);
    assert!(report.all_stopped);
    assert_eq!(wait(slow).await.status, RunStatus::Cancelled);

    let err = executor.start("linear", json!({})).await.err().unwrap();
    assert!(matches!(err, Error::ShuttingDown), "{err:?}");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_group_commit_concurrent_runs_record_every_node_and_shutdown_drains_their_commits() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (executor, _) = executor_on(
        schema.pool().clone(),
        ExecutorConfig::default().group_commit(true),
    );
    let mut executions = Vec::new();
    for i in 0..8 {
        executions.push(executor.start("linear", json!({"topic": i})).await.unwrap());
    }
    // Their commits are queued or in flight: shutdown waits for every one of them.
    let report = executor.shutdown(HANG).await;
    assert!(report.cancelled.is_empty() && report.all_stopped);
    for execution in executions {
        let run = wait(execution).await;
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(
            stages_of(&executor, run.id).await,
            [
                (s("a"), 1, StageStatus::Completed, None),
                (s("b"), 2, StageStatus::Completed, None),
                (s("c"), 3, StageStatus::Completed, None),
            ]
        );
        assert_eq!(decisions_of(&executor, run.id).await.len(), 3);
    }
    drop(executor);
    schema.drop_schema().await.unwrap();
}

/// Everything a run recorded but ids and times (the checkpoint's too), as JSON text with
/// the run's id replaced: its stages, decisions and checkpoint.
async fn recorded(executor: &Executor, run: RunId) -> String {
    let mut conn = executor.pool().get().await.unwrap();
    let stages = repository::stages(&mut conn, run).await.unwrap();
    let decisions = repository::decisions(&mut conn, run).await.unwrap();
    drop(conn);
    let stages: Vec<Value> = stages
        .into_iter()
        .map(|stage| {
            json!([
                stage.node_name,
                stage.iteration,
                stage.attempt,
                stage.status,
                stage.duration_ms.is_some(),
                stage.state_update,
                stage.input_snapshot,
                stage.output_snapshot,
                stage.error_message
            ])
        })
        .collect();
    let decisions: Vec<Value> = decisions
        .into_iter()
        .map(|d| {
            json!([
                d.from_node,
                d.to_node,
                d.predicate_name,
                d.predicate_result,
                d.reason
            ])
        })
        .collect();
    let mut checkpoint = checkpoint_of(executor, run).await;
    if let Some((_, Value::Object(state))) = &mut checkpoint {
        assert!(state.remove("timestamp").is_some());
    }
    json!([stages, decisions, checkpoint])
        .to_string()
        .replace(&run.to_string(), "RUN")
}

#[tokio::test]
async fn by_default_runs_executing_together_commit_together() {
    let (pool, sent) = pool_recording_statements().await;
    let (executor, gate) = executor_on(pool, ExecutorConfig::default());
    let mut beside = executor.start("gated", json!({})).await.unwrap();
    until(&mut beside, node_started("wait")).await;
    sent.lock().unwrap().clear();
    let run = executor.run("linear", json!({})).await.unwrap();
    let sent = sent.lock().unwrap().clone();
    assert!(
        sent.iter().any(|s| s.contains("unnest(")),
        "a batch was sent: {sent:#?}"
    );
    linear_run_completed_as_recorded(&executor, run).await;
    gate.0.notify_one();
    assert_eq!(wait(beside).await.status, RunStatus::Completed);
}

#[tokio::test]
async fn with_group_commit_a_run_records_exactly_what_it_records_without() {
    let (pool, sent) = pool_recording_statements().await;
    let (alone, _) = executor_on(pool.clone(), ExecutorConfig::default().group_commit(false));
    let (grouped, gate) = executor_on(pool, ExecutorConfig::default().group_commit(true));
    // Another run executing beside them, so that their commits go into batches (a run
    // executing alone commits alone).
    let mut beside = grouped.start("gated", json!({})).await.unwrap();
    until(&mut beside, node_started("wait")).await;
    for (workflow, params) in [("linear", json!({})), ("route", json!({"kind": "math"}))] {
        let one = alone.run(workflow, params.clone()).await.unwrap();
        let other = grouped.run(workflow, params).await.unwrap();
        assert_eq!(
            (one.status, one.result.clone()),
            (other.status, other.result.clone())
        );
        assert_eq!(
            recorded(&alone, one.id).await,
            recorded(&grouped, other.id).await,
            "{workflow}"
        );
        // The run a batch completed comes back as it was recorded.
        let mut conn = grouped.pool().get().await.unwrap();
        assert_eq!(
            repository::find_run(&mut conn, other.id).await.unwrap(),
            other
        );
    }
    assert!(
        sent.lock().unwrap().iter().any(|s| s.contains("unnest(")),
        "the grouped runs' commits went into batches"
    );
    gate.0.notify_one();
    assert_eq!(wait(beside).await.status, RunStatus::Completed);
}

#[tokio::test]
async fn shutdown_lets_runs_that_finish_in_time_complete() {
    let (executor, gate) = executor().await;
    let mut execution = executor.start("gated", json!({})).await.unwrap();
    until(&mut execution, node_started("wait")).await;
    gate.0.notify_one();
    let report = executor.shutdown(HANG).await;
    assert!(report.cancelled.is_empty() && report.all_stopped);
    assert_eq!(wait(execution).await.status, RunStatus::Completed);
}

#[tokio::test]
async fn wait_returns_the_failed_record_of_a_run_whose_output_could_not_be_stored() {
    // A refused statement aborts a test transaction: this needs a schema of its own.
    let schema = IsolatedSchema::create().await.unwrap();
    let (executor, _) = executor_on(schema.pool().clone(), ExecutorConfig::default());
    let run = wait(executor.start("unstorable", json!({})).await.unwrap()).await;
    assert_eq!(run.status, RunStatus::Failed);
    let message = run.error_message.clone().unwrap();
    assert!(
        message.starts_with("recording the run failed, so it was stopped"),
        "{message}"
    );
    let mut conn = executor.pool().get().await.unwrap();
    assert_eq!(repository::find_run(&mut conn, run.id).await.unwrap(), run);
    drop(conn);
    drop(executor);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn every_timestamp_of_a_run_is_read_off_one_clock() {
    let (executor, _) = executor().await;
    let run = executor.run("linear", json!({})).await.unwrap();
    let (started, ended) = (run.started_at.unwrap(), run.completed_at.unwrap());
    assert!(run.created_at <= started, "{run:?}");
    let mut conn = executor.pool().get().await.unwrap();
    let stages = repository::stages(&mut conn, run.id).await.unwrap();
    let decisions = repository::decisions(&mut conn, run.id).await.unwrap();
    for stage in &stages {
        assert!(
            started <= stage.created_at && stage.created_at <= ended,
            "{stage:?}"
        );
    }
    for decision in &decisions {
        assert!(
            started <= decision.created_at && decision.created_at <= ended,
            "{decision:?}"
        );
    }
    let checkpointed: chrono::DateTime<chrono::Utc> = checkpoints::table
        .find(run.id)
        .select(checkpoints::updated_at)
        .first(&mut conn)
        .await
        .unwrap();
    assert!(checkpointed <= ended);
}

#[tokio::test]
async fn a_resume_that_fails_keeps_the_runs_first_error_and_says_what_failed() {
    let (executor, _) = executor().await;
    let failed = executor.run("flaky", json!({})).await.unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    let first = failed.error_message.clone().unwrap();
    {
        let mut conn = executor.pool().get().await.unwrap();
        diesel::update(checkpoints::table.find(failed.id))
            .set(checkpoints::state_data.eq(json!("not a state")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let run = wait(executor.resume(failed.id).await.unwrap()).await;
    assert_eq!(run.status, RunStatus::Failed);
    let message = run.error_message.unwrap();
    assert!(
        message.starts_with("resuming failed: its checkpoint could not be read"),
        "{message}"
    );
    assert!(
        message.ends_with(&format!(
            "(before this resume, the run had failed with: {first})"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn a_start_under_way_when_shutdown_begins_is_drained_before_shutdown_returns() {
    let schema = IsolatedSchema::create().await.unwrap();
    let key = 0x7374_6172_7401_i64;
    // A connection of its own (not pooled), so that a failing test releases the lock.
    let mut holder = diesel_async::AsyncPgConnection::establish(schema.database_url())
        .await
        .unwrap();
    holder
        .batch_execute(&format!(
            "CREATE FUNCTION hold_insert() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_advisory_xact_lock_shared({key}); RETURN NEW; END $$;
             CREATE TRIGGER hold_insert BEFORE INSERT ON runs FOR EACH ROW
               EXECUTE FUNCTION hold_insert();
             SELECT pg_advisory_lock({key});"
        ))
        .await
        .unwrap();
    let (executor, _) = executor_on(schema.pool().clone(), ExecutorConfig::default());
    // A start whose insert waits inside its statement.
    let starting = tokio::spawn({
        let executor = executor.clone();
        async move { executor.start("linear", json!({})).await }
    });
    crate::fence::until_blocked(&schema, "%INSERT INTO \"runs\"%").await;
    let mut shutdown = tokio::spawn({
        let executor = executor.clone();
        async move { executor.shutdown(HANG).await }
    });
    // Shutdown has begun once new starts are refused (or queue behind it)...
    let unknown = crate::fixtures::unknown_run();
    tokio::time::timeout(HANG, async {
        loop {
            match tokio::time::timeout(Duration::from_millis(50), executor.resume(unknown)).await {
                Ok(Err(Error::ShuttingDown)) | Err(_) => return,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(
        executor.start("linear", json!({})).await,
        Err(Error::ShuttingDown)
    ));
    // ...but it cannot end while the start under way has not spawned its run.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut shutdown)
            .await
            .is_err(),
        "shutdown returned before a start under way had spawned its run"
    );
    holder
        .batch_execute(&format!("SELECT pg_advisory_unlock({key})"))
        .await
        .unwrap();
    let execution = starting.await.unwrap().unwrap();
    let report = shutdown.await.unwrap();
    assert!(
        report.all_stopped && report.cancelled.is_empty(),
        "{report:?}"
    );
    let mut conn = schema.pool().get().await.unwrap();
    let run = repository::find_run(&mut conn, execution.run_id())
        .await
        .unwrap();
    assert_eq!(
        run.status,
        RunStatus::Completed,
        "drained, not left running"
    );
    drop(conn);
    drop(holder);
    schema.drop_schema().await.unwrap();
}
