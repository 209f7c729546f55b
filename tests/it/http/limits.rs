//! Bounded work: runs started over HTTP beyond the executor's bound are a 503 with
//! `Retry-After` (the runs it holds go on), and a state over its size limit fails its run
//! naming the node and the size.

use std::time::Duration;

use serde_json::{Value, json};
use workflows::testing::IsolatedSchema;
use workflows::{
    BoxError, Executor, ExecutorConfig, GraphBuilder, NodeContext, Params, Registry, RunStatus,
    Runtime, State, WorkflowDef, repository,
};

use super::server::{Options, TestServer};
use crate::fixtures::{HANG, mark, until_status};

/// Until the run's `wait` node has started.
async fn until_waiting_at_the_gate(server: &TestServer, id: &str) {
    tokio::time::timeout(HANG, async {
        loop {
            let stages: Value = server
                .get(&format!("/workflows/runs/{id}/stages"))
                .await
                .json()
                .await
                .unwrap();
            if stages
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["node_name"] == "wait")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn executes_beyond_the_bound_are_503_with_retry_after_while_the_held_runs_go_on() {
    let server = TestServer::with(Options {
        config: ExecutorConfig::default().max_runs(2),
        ..Options::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let response = server
            .post_json("/workflows/gated/execute", &json!({}))
            .await;
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
        until_waiting_at_the_gate(&server, &id).await;
        held.push((id, response));
    }

    let no_params = json!({});
    let refusals = futures_util::future::join_all(
        (0..100).map(|_| server.post_json("/workflows/linear/execute?wait=true", &no_params)),
    )
    .await;
    for refused in refusals {
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()["retry-after"], "1");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(
            body["error"],
            "this server is executing as many runs as it may at once (2); retry in a moment, or submit the run for a worker"
        );
    }
    let listed: Value = server.get("/workflows/runs").await.json().await.unwrap();
    assert_eq!(listed["total"], 2, "a refused execute records nothing");

    server.gate.0.notify_one();
    server.gate.0.notify_one();
    for (id, _) in &held {
        let run = until_status(
            server.executor.pool(),
            id.parse().unwrap(),
            RunStatus::Completed,
        )
        .await;
        assert_eq!(run.status, RunStatus::Completed);
    }
    // Their permits are back once their tasks end.
    let again = tokio::time::timeout(HANG, async {
        loop {
            let response = server
                .post_json("/workflows/linear/execute?wait=true", &json!({}))
                .await;
            if response.status() != 503 {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(again.status(), 200);
    drop(held);
    server.stop().await;
}

async fn grows(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("small", mark)
        .add_node("big", |mut state: State, _: NodeContext| async move {
            state.set("blob", "x".repeat(5000));
            Ok(state)
        })
        .add_edge("small", "big")
        .set_entry_point("small")
        .add_exit_point("big");
    Ok(State::new())
}

#[tokio::test]
async fn a_state_over_the_limit_fails_its_run_naming_the_node_and_the_size() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut registry = Registry::new();
    registry
        .register(WorkflowDef::new(
            "grows",
            "a state that grows",
            |g, r, p| Box::pin(grows(g, r, p)),
        ))
        .unwrap();
    let executor = Executor::builder(schema.pool().clone(), registry)
        .config(ExecutorConfig::default().max_state_bytes(4096))
        .build()
        .unwrap();
    let run = executor.run("grows", json!({})).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let message = run.error_message.unwrap();
    assert!(
        message.starts_with("the state after node big is 5")
            && message.ends_with(
                " bytes serialized, more than a run may hold (4096 bytes, ExecutorConfig::max_state_bytes); keep large data outside the state"
            ),
        "{message}"
    );
    let mut conn = schema.pool().get().await.unwrap();
    let stages: Vec<(String, String)> = repository::stages(&mut conn, run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.node_name, s.status.to_string()))
        .collect();
    assert_eq!(
        stages,
        [
            ("small".to_owned(), "completed".to_owned()),
            ("big".to_owned(), "failed".to_owned())
        ]
    );
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use workflows::schema::checkpoints;
    let saved: String = checkpoints::table
        .find(run.id)
        .select(checkpoints::checkpoint_node)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(saved, "small", "nothing of big's step is recorded");
    drop(conn);
    executor.shutdown(Duration::from_secs(5)).await;
    schema.drop_schema().await.unwrap();
}
