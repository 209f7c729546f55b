//! `POST /workflows/{name}/execute`: the progress stream, waiting for the end, and clients
//! that leave.

use std::time::{Duration, Instant};

use serde_json::json;
use workflows::{Run, RunStatus, StageStatus, repository};

use super::server::{SseReader, TestServer, names};
use crate::fixtures::HANG;

#[tokio::test(flavor = "multi_thread")]
async fn execute_streams_the_events_in_order_and_ends_with_complete() {
    let server = TestServer::start().await;
    let response = server
        .post_json("/workflows/linear/execute", &json!({"topic": "x"}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let events = SseReader::new(response).rest().await;

    let seen: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.event.as_str(),
                e.data
                    .get("node")
                    .or(e.data.get("from"))
                    .and_then(|v| v.as_str()),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("stage.start", Some("a")),
            ("stage.complete", Some("a")),
            ("decision", Some("a")),
            ("stage.start", Some("b")),
            ("stage.complete", Some("b")),
            ("decision", Some("b")),
            ("stage.start", Some("c")),
            ("stage.complete", Some("c")),
            ("decision", Some("c")),
            ("complete", None),
        ]
    );
    assert!(events[..9].iter().all(|e| e.data["run_id"] == id.as_str()));
    assert_eq!(events[0].data["input"], json!({"start": true}));
    assert_eq!(events[2].data["to"], "b");
    let run: Run = serde_json::from_value(events[9].data.clone()).unwrap();
    assert_eq!((run.id.to_string(), run.status), (id, RunStatus::Completed));
    assert_eq!(run.params, Some(json!({"topic": "x"}).into()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_run_ends_its_stream_with_error() {
    let server = TestServer::start().await;
    let response = server
        .post_json("/workflows/flaky/execute", &json!({}))
        .await;
    let events = SseReader::new(response).rest().await;
    let names = names(&events);
    assert_eq!(
        names,
        [
            "stage.start",
            "stage.complete",
            "decision",
            "stage.start",
            "stage.complete",
            "error"
        ]
    );
    assert_eq!(
        events[4].data["error"],
        "node b failed: first attempt fails"
    );
    let end = &events[5].data;
    assert_eq!(end["error"], "node b failed: first attempt fails");
    assert_eq!(end["run"]["status"], "failed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_that_cannot_be_set_up_ends_its_stream_with_error() {
    let server = TestServer::start().await;
    let response = server
        .post_json("/workflows/route/execute", &json!({}))
        .await;
    assert_eq!(
        response.status(),
        200,
        "the run exists: its failure is recorded and streamed"
    );
    let events = SseReader::new(response).rest().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "error");
    assert_eq!(events[0].data["run"]["status"], "failed");
    assert!(
        events[0].data["error"]
            .as_str()
            .unwrap()
            .contains(r#"params key "kind""#),
        "{:?}",
        events[0].data
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_true_answers_with_the_final_run_as_json() {
    let server = TestServer::start().await;
    let response = server
        .post_json("/workflows/linear/execute?wait=true", &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let run: Run = response.json().await.unwrap();
    assert_eq!((run.id.to_string(), run.status), (id, RunStatus::Completed));
    assert_eq!(run.result.unwrap().to_value().unwrap()["c"], 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_body_is_a_run_without_params() {
    let server = TestServer::start().await;
    let response = server.post("/workflows/linear/execute?wait=true").await;
    assert_eq!(response.status(), 200);
    let run: Run = response.json().await.unwrap();
    assert_eq!(
        (run.status, run.params),
        (RunStatus::Completed, Some(json!({}).into()))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_leaves_a_completed_and_fully_recorded_run() {
    let server = TestServer::start().await;
    let response = server
        .post_json("/workflows/gated/execute", &json!({}))
        .await;
    let id: workflows::RunId = response.headers()["x-run-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut progress = SseReader::new(response);
    let first = progress.next().await.unwrap();
    assert_eq!(first.event, "stage.start");
    drop(progress); // the client goes away while the run waits in `wait`

    server.gate.0.notify_one();
    let mut conn = server.executor.pool().get().await.unwrap();
    let deadline = Instant::now() + HANG;
    let run = loop {
        let run = repository::find_run(&mut conn, id).await.unwrap();
        if run.status.is_terminal() {
            break run;
        }
        assert!(Instant::now() < deadline, "the run never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(run.status, RunStatus::Completed);
    let stages = repository::stages(&mut conn, id).await.unwrap();
    let steps: Vec<_> = stages
        .iter()
        .map(|s| (s.node_name.as_str(), s.status))
        .collect();
    assert_eq!(
        steps,
        [
            ("a", StageStatus::Completed),
            ("wait", StageStatus::Completed),
            ("c", StageStatus::Completed)
        ]
    );
    assert_eq!(repository::decisions(&mut conn, id).await.unwrap().len(), 3);
    drop(conn);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_reads_slower_than_its_run_is_told_how_many_events_it_missed() {
    use workflows::http::STREAM_BUFFER;
    let server = TestServer::start().await;
    let response = server
        .post_json("/workflows/heavy/execute", &json!({"nodes": 40}))
        .await;
    let id: workflows::RunId = response.headers()["x-run-id"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The client reads nothing until the run has ended: its events (tens of MB, as each
    // carries the state) cannot all wait for it.
    let run =
        crate::fixtures::until_status(server.executor.pool(), id, workflows::RunStatus::Completed)
            .await;
    let events = SseReader::new(response).rest().await;
    let names = names(&events);
    assert_eq!(names.last(), Some(&"complete"), "{names:?}");
    assert_eq!(events.last().unwrap().data["id"], json!(run.id.to_string()));
    let lagged: Vec<u64> = events
        .iter()
        .filter(|e| e.event == "lagged")
        .map(|e| e.data["missed"].as_u64().unwrap())
        .collect();
    assert!(!lagged.is_empty(), "{names:?}");
    assert!(
        events.len() <= STREAM_BUFFER + 2 * 40,
        "{} events held",
        events.len()
    );
    // Every event is either received or counted as missed: 40 starts, 40 completions and 40
    // decisions (the last one, at the exit).
    let received = events
        .iter()
        .filter(|e| ["stage.start", "stage.complete", "decision"].contains(&e.event.as_str()))
        .count() as u64;
    assert_eq!(received + lagged.iter().sum::<u64>(), 120, "{names:?}");
    server.stop().await;
}
