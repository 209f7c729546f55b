//! `workflows serve` as a process: it serves the API, and on SIGTERM lets runs finish within
//! the drain period or cancels them.
#![allow(clippy::unwrap_used)] // test helpers panic on failure, which is what a test wants

mod common;

use futures_util::StreamExt;
use serde_json::{Value, json};
use workflows::testing::IsolatedSchema;

use common::WorkerProcess;

/// The progress stream's event names, and the last event's data, read to the end.
async fn read_stream(response: reqwest::Response) -> (Vec<String>, Value) {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let mut names = Vec::new();
    let mut last = Value::Null;
    for block in text.split("\n\n").filter(|b| b.contains("data:")) {
        for line in block.lines() {
            if let Some(name) = line.strip_prefix("event: ") {
                names.push(name.to_owned());
            } else if let Some(data) = line.strip_prefix("data: ") {
                last = serde_json::from_str(data).unwrap();
            }
        }
    }
    (names, last)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sigterm_a_running_run_finishes_within_the_drain_period() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(schema.database_url(), &["--drain-secs", "30"]);
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/workflows/chain/execute"))
        .json(&json!({"nodes": 3, "delay_ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stream = tokio::spawn(read_stream(response));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let (status, report) = tokio::task::spawn_blocking(move || server.stop_with_report())
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(report, "stopped (0 runs cancelled)");
    let (names, last) = stream.await.unwrap();
    assert_eq!(
        names.last().map(String::as_str),
        Some("complete"),
        "{names:?}"
    );
    assert_eq!(
        (last["status"].as_str(), last["result"]["counter"].as_i64()),
        (Some("completed"), Some(3))
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sigterm_a_run_still_executing_after_the_drain_period_is_cancelled() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(schema.database_url(), &["--drain-secs", "0"]);
    let response = reqwest::Client::new()
        .post(format!("{base}/workflows/chain/execute"))
        .json(&json!({"nodes": 3, "delay_ms": 60000}))
        .send()
        .await
        .unwrap();
    let stream = tokio::spawn(read_stream(response));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let (status, report) = tokio::task::spawn_blocking(move || server.stop_with_report())
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(report, "stopped (1 runs cancelled)");
    let (names, last) = stream.await.unwrap();
    assert_eq!(names.last().map(String::as_str), Some("error"), "{names:?}");
    assert_eq!(last["run"]["status"], "cancelled");
    schema.drop_schema().await.unwrap();
}
