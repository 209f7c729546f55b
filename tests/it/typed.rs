//! Typed workflows next to JSON ones: the user's own state through the executor, resume and
//! workers; params checked before anything is written; dependencies checked when the
//! executor is built; stages storing updates, from which `state_at` rebuilds every step.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;
use workflows::schema::{runs, stages};
use workflows::testing::IsolatedSchema;
use workflows::{
    Error, Executor, ExecutorConfig, PgCheckpointStore, Registry, RunStatus, Runtime,
    SnapshotPolicy, State, StateUpdate, Worker, WorkerConfig, WorkflowDef, repository,
};

use crate::fixtures::{Ledger, Tally, linear, tally, tally_graph, tally_with};

/// `tally` and the JSON `linear`, side by side.
fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(tally()).unwrap();
    registry
        .register(WorkflowDef::new("linear", "a, b, c", |g, r, p| {
            Box::pin(linear(g, r, p))
        }))
        .unwrap();
    registry
        .register(tally_with("tally-full", |g| {
            tally_graph(g, SnapshotPolicy::Full)
        }))
        .unwrap();
    registry
        .register(tally_with("tally-every-3", |g| {
            tally_graph(g, SnapshotPolicy::Every(3))
        }))
        .unwrap();
    registry
}

fn executor(schema: &IsolatedSchema, ledger: &Arc<Ledger>) -> Executor {
    Executor::builder(schema.pool().clone(), registry())
        .runtime(Runtime::builder().with_arc(Arc::clone(ledger)).build())
        .build()
        .unwrap()
}

/// The state a run ended with, as `Tally`.
fn tally_of(run: &workflows::Run) -> Tally {
    run.result.as_ref().unwrap().deserialize().unwrap()
}

#[tokio::test]
async fn typed_and_json_workflows_run_side_by_side_through_the_executor() {
    let schema = IsolatedSchema::create().await.unwrap();
    let ledger = Arc::new(Ledger::default());
    let executor = executor(&schema, &ledger);

    let typed = executor.run("tally", json!({"to": 2})).await.unwrap();
    assert_eq!(
        typed.status,
        RunStatus::Completed,
        "{:?}",
        typed.error_message
    );
    let end = tally_of(&typed);
    assert_eq!((end.count, end.seen.as_slice()), (2, [1, 2].as_slice()));
    assert_eq!(end.words, [("w1".into(), 1), ("w2".into(), 2)].into());

    let json = executor.run("linear", json!({})).await.unwrap();
    assert_eq!(json.status, RunStatus::Completed);
    assert_eq!(
        json.result.unwrap(),
        json!({"start": true, "a": 1, "b": 2, "c": 3})
    );

    // Each typed stage stores what its node changed: appended counts, a merged word, and
    // nothing at all for `check`.
    let mut conn = schema.pool().get().await.unwrap();
    let stages = repository::stages(&mut conn, typed.id).await.unwrap();
    let updates: Vec<StateUpdate> = stages
        .iter()
        .map(|s| s.state_update.as_ref().unwrap().deserialize().unwrap())
        .collect();
    let expected: Vec<StateUpdate> = serde_json::from_value(json!([
        {"set": {"count": 1}, "append": {"seen": [1]}, "merge": {"words": {"w1": 1}}},
        {},
        {"set": {"count": 2}, "append": {"seen": [2]}, "merge": {"words": {"w2": 2}}},
        {},
    ]))
    .unwrap();
    assert_eq!(updates, expected);
    assert_eq!(
        stages[0].input_snapshot,
        Some(json!({"to": 2, "count": 0, "seen": [], "words": {}, "fail_at": null}).into())
    );
    drop(conn);
    executor.shutdown(Duration::from_secs(5)).await;
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn params_that_do_not_fit_are_refused_naming_the_field_before_anything_is_written() {
    let schema = IsolatedSchema::create().await.unwrap();
    let executor = executor(&schema, &Arc::new(Ledger::default()));

    let err = executor
        .start("tally", json!({"to": "three"}))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        r#"invalid params.to "\"three\"": invalid type: string "three", expected u32"#
    );
    let err = executor
        .submit("tally", json!({"fail_at": 1}), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid params "{\"fail_at\":1}": missing field `to`"#
    );

    let mut conn = schema.pool().get().await.unwrap();
    let count: i64 = runs::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(count, 0, "no run was written");
    drop(conn);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn an_executor_whose_runtime_lacks_a_workflow_s_dependency_is_not_built() {
    let schema = IsolatedSchema::create().await.unwrap();
    let err = Executor::builder(schema.pool().clone(), registry())
        .build()
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::MissingDependency { workflow: Some(w), .. } if w == "tally"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(r#"workflow "tally" needs a `it::fixtures::Ledger`"#),
        "{err}"
    );
    schema.drop_schema().await.unwrap();
}

/// Checks that `state_at` gives, for every stage of `run`, the state its node saw (the
/// state after the step before) and, for the last, the run's result.
async fn state_at_agrees_with_what_the_run_saw(
    executor: &Executor,
    ledger: &Ledger,
    run: &workflows::Run,
) {
    let mut conn = executor.pool().get().await.unwrap();
    let seen = ledger.seen_by(run.id);
    assert!(!seen.is_empty());
    for (step, tally) in &seen {
        let at = repository::state_at(&mut conn, run.id, Some(step - 1))
            .await
            .unwrap();
        assert_eq!(at.step, step - 1);
        let rebuilt: Tally = serde_json::from_value(at.state).unwrap();
        assert_eq!(&rebuilt, tally, "the state before step {step}");
    }
    let last = repository::state_at(&mut conn, run.id, None).await.unwrap();
    assert_eq!(
        Some(&last.state),
        run.result.as_ref().map(|r| r.to_value().unwrap()).as_ref()
    );
}

#[tokio::test]
async fn state_at_agrees_with_every_stage_of_a_run_that_looped_and_resumed() {
    let schema = IsolatedSchema::create().await.unwrap();
    let ledger = Arc::new(Ledger::default());
    let executor = executor(&schema, &ledger);

    let failed = executor
        .run("tally", json!({"to": 4, "fail_at": 3}))
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(
        failed.error_message.as_deref(),
        Some("node add failed: add fails once at 3")
    );
    let resumed = executor
        .resume(failed.id)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(
        resumed.status,
        RunStatus::Completed,
        "{:?}",
        resumed.error_message
    );
    assert_eq!(tally_of(&resumed).seen, [1, 2, 3, 4]);

    // Steps 1-4 of the first attempt, the failed add at 5, then 6-9 after the resume.
    let mut conn = schema.pool().get().await.unwrap();
    let stages = repository::stages(&mut conn, failed.id).await.unwrap();
    let steps: Vec<_> = stages
        .iter()
        .map(|s| {
            (
                s.node_name.as_str(),
                s.iteration,
                s.input_snapshot.is_some(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("add", 1, true),
            ("check", 2, false),
            ("add", 3, false),
            ("check", 4, false),
            ("add", 5, false),
            ("add", 6, true),
            ("check", 7, false),
            ("add", 8, false),
            ("check", 9, false),
        ]
    );
    drop(conn);
    state_at_agrees_with_what_the_run_saw(&executor, &ledger, &resumed).await;

    let mut conn = schema.pool().get().await.unwrap();
    let err = repository::state_at(&mut conn, failed.id, Some(10))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("run {} has no step 10 yet: its last step is 9", failed.id)
    );
    drop(conn);
    executor.shutdown(Duration::from_secs(5)).await;
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn full_and_every_k_snapshots_are_stored_as_the_policy_says_and_agree_with_state_at() {
    let schema = IsolatedSchema::create().await.unwrap();
    let ledger = Arc::new(Ledger::default());
    let executor = executor(&schema, &ledger);
    for (workflow, expected_outputs) in [
        ("tally-full", vec![1, 2, 3, 4, 5, 6]),
        ("tally-every-3", vec![3, 6]),
    ] {
        let run = executor.run(workflow, json!({"to": 3})).await.unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        let mut conn = schema.pool().get().await.unwrap();
        let stages = repository::stages(&mut conn, run.id).await.unwrap();
        let with_output: Vec<i32> = stages
            .iter()
            .filter(|s| s.output_snapshot.is_some())
            .map(|s| s.iteration)
            .collect();
        assert_eq!(with_output, expected_outputs, "{workflow}");
        for stage in &stages {
            assert!(
                stage.state_update.is_some(),
                "every stage stores its update"
            );
            if let Some(output) = &stage.output_snapshot {
                let step = u32::try_from(stage.iteration).unwrap();
                let at = repository::state_at(&mut conn, run.id, Some(step))
                    .await
                    .unwrap();
                assert_eq!(output, &at.state, "{workflow} step {step}");
            }
        }
        let every_input = stages.iter().all(|s| s.input_snapshot.is_some());
        assert_eq!(every_input, workflow == "tally-full", "{workflow}");
        drop(conn);
        state_at_agrees_with_what_the_run_saw(&executor, &ledger, &run).await;
    }
    executor.shutdown(Duration::from_secs(5)).await;
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn stages_with_whole_snapshots_and_no_updates_as_the_go_service_wrote_them_are_read() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();
    let run = crate::fixtures::insert_run(
        &mut conn,
        "legacy",
        RunStatus::Completed,
        crate::fixtures::t0(),
    )
    .await;
    for (step, input, output) in [
        (1, json!({"n": 0}), json!({"n": 1})),
        (2, json!({"n": 1}), json!({"n": 1, "done": true})),
    ] {
        diesel::insert_into(stages::table)
            .values((
                stages::run_id.eq(run),
                stages::node_name.eq(format!("n{step}")),
                stages::iteration.eq(step),
                stages::status.eq(workflows::StageStatus::Completed),
                stages::input_snapshot.eq(input),
                stages::output_snapshot.eq(output),
            ))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for (step, expected) in [
        (0, json!({"n": 0})),
        (1, json!({"n": 1})),
        (2, json!({"n": 1, "done": true})),
    ] {
        let at = repository::state_at(&mut conn, run, Some(step))
            .await
            .unwrap();
        assert_eq!(at.state, expected, "step {step}");
    }
    let stage = &repository::stages(&mut conn, run).await.unwrap()[1];
    assert!(stage.state_update.is_none(), "a snapshot, not an update");
    drop(conn);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_checkpoint_that_does_not_fit_the_state_type_fails_the_resume_naming_the_field() {
    let schema = IsolatedSchema::create().await.unwrap();
    let ledger = Arc::new(Ledger::default());
    let executor = executor(&schema, &ledger);
    let failed = executor
        .run("tally", json!({"to": 3, "fail_at": 2}))
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);

    // The checkpoint edited as JSON, as an operator might, into something `Tally` is not.
    let store = PgCheckpointStore::new(schema.pool().clone());
    let mut saved: State = store.get(failed.id).await.unwrap().unwrap();
    saved.set("count", "two");
    store.save(failed.id, &saved).await.unwrap();

    let resumed = executor
        .resume(failed.id)
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(resumed.status, RunStatus::Failed);
    let message = resumed.error_message.unwrap();
    assert!(
        message.starts_with(
            "resuming failed: its checkpoint does not fit the workflow's state: state key \"count\": as stored, does not fit it::fixtures::Tally: invalid type: string \"two\", expected u32"
        ),
        "{message}"
    );
    executor.shutdown(Duration::from_secs(5)).await;
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_takes_over_a_typed_run_from_its_checkpoint_when_its_lease_runs_out() {
    let schema = IsolatedSchema::create().await.unwrap();
    // `a` stalls in its second `add`; its lease lasts 300 ms and its heartbeat would come
    // only after an hour.
    let stalled = Arc::new(Ledger::holding_at(2));
    let a = Executor::builder(schema.pool().clone(), registry())
        .runtime(Runtime::builder().with_arc(Arc::clone(&stalled)).build())
        .config(
            ExecutorConfig::default()
                .owner("a")
                .lease(Duration::from_millis(300))
                .heartbeat(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let started = a.start("tally", json!({"to": 3})).await.unwrap();
    let id = started.run_id();
    until(&schema, "a's second add started", || {
        stalled.seen_by(id).len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let ledger = Arc::new(Ledger::default());
    let b = executor(&schema, &ledger);
    let worker = Worker::new(b.clone(), WorkerConfig::default());
    assert_eq!(worker.fill().await.unwrap(), 1, "b takes the run over");
    let run = tokio::time::timeout(crate::fixtures::HANG, async {
        loop {
            let mut conn = schema.pool().get().await.unwrap();
            let run = repository::find_run(&mut conn, id).await.unwrap();
            if run.status.is_terminal() {
                return run;
            }
            drop(conn);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error_message);
    assert_eq!(tally_of(&run).seen, [1, 2, 3]);

    // b went on from a's checkpoint (after `check` at step 2): its first node saw a's
    // counting, and every step's state is rebuilt as its node saw it, under either owner.
    let from_b = ledger.seen_by(id);
    assert_eq!(from_b[0].1.seen, [1]);
    let mut conn = schema.pool().get().await.unwrap();
    for (step, tally) in stalled.seen_by(id).into_iter().chain(from_b) {
        let at = repository::state_at(&mut conn, id, Some(step - 1))
            .await
            .unwrap();
        let rebuilt: Tally = serde_json::from_value(at.state).unwrap();
        assert_eq!(rebuilt, tally, "the state before step {step}");
    }
    drop(conn);
    stalled.gate.notify_one();
    let late = tokio::time::timeout(crate::fixtures::HANG, started.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late.result, run.result, "b's result stands");
    b.shutdown(Duration::from_secs(5)).await;
    a.shutdown(Duration::from_secs(5)).await;
    schema.drop_schema().await.unwrap();
}

/// Waits until `done` holds (checking every few milliseconds), or fails naming `what`.
async fn until(_schema: &IsolatedSchema, what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(crate::fixtures::HANG, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}
