//! Every endpoint's answer to a good request.

use serde_json::{Value, json};
use workflows::http::HttpLimits;
use workflows::{Decision, PageResult, Run, RunStatus, Stage};

use super::server::{Options, SseReader, TestServer, names};

#[tokio::test(flavor = "multi_thread")]
async fn get_workflows_lists_the_registered_workflows_by_name() {
    let server = TestServer::start().await;
    let response = server.get("/workflows").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let names: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "asking", "flaky", "gated", "heavy", "linear", "route", "tally"
        ]
    );
    assert_eq!(body[4]["description"], "a, b, c");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typed_run_executes_over_http_and_its_state_at_each_step_is_served() {
    let server = TestServer::start().await;
    let run = server.run("tally", json!({"to": 2})).await;
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error_message);
    let stages: Vec<Stage> = server
        .get(&format!("/workflows/runs/{}/stages", run.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        stages[0].state_update,
        Some(
            json!({"set": {"count": 1}, "append": {"seen": [1]}, "merge": {"words": {"w1": 1}}})
                .into()
        )
    );
    for (query, step, seen) in [
        ("?step=0", 0, json!([])),
        ("?step=1", 1, json!([1])),
        ("?step=3", 3, json!([1, 2])),
        ("", 4, json!([1, 2])),
    ] {
        let response = server
            .get(&format!("/workflows/runs/{}/state{query}", run.id))
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["run_id"], json!(run.id), "{query}");
        assert_eq!(body["step"], step, "{query}");
        assert_eq!(body["state"]["seen"], seen, "{query}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_runs_returns_the_page_envelope_filtered_and_sorted() {
    let server = TestServer::start().await;
    let first = server.run("linear", json!({})).await;
    let second = server.run("route", json!({"kind": "math"})).await;
    let failed = server.run("flaky", json!({})).await;
    assert_eq!(failed.status, RunStatus::Failed);

    let page: PageResult<Run> = server.get("/workflows/runs").await.json().await.unwrap();
    let ids: Vec<_> = page.data.iter().map(|r| r.id).collect();
    assert_eq!(ids, [failed.id, second.id, first.id], "newest first");
    assert_eq!(
        (page.total, page.page, page.page_size, page.total_pages),
        (3, 1, 20, 1)
    );

    let page: PageResult<Run> = server
        .get("/workflows/runs?status=completed&sort=workflow_name&page_size=1&page=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page.data.iter().map(|r| r.id).collect::<Vec<_>>(),
        [second.id]
    );
    assert_eq!(
        (page.total, page.page, page.page_size, page.total_pages),
        (2, 2, 1, 2)
    );

    let page: PageResult<Run> = server
        .get("/workflows/runs?workflow_name=linear")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page.data.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first.id]
    );

    let page: Value = server
        .get("/workflows/runs?search=nothing-like-it")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page,
        json!({"data": [], "total": 0, "page": 1, "page_size": 20, "total_pages": 1})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_are_served_as_stored_and_an_odd_row_does_not_break_a_page() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use workflows::schema::runs;
    let server = TestServer::start().await;
    let odd: workflows::RawJson = serde_json::from_str(
        r#"{"big": 123456789012345678901234567890, "price": 1.10, "huge": 1e400}"#,
    )
    .unwrap();
    let id: workflows::RunId = diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq("odd"),
            runs::status.eq(RunStatus::Completed),
            runs::params.eq(&odd),
        ))
        .returning(runs::id)
        .get_result(&mut server.executor.pool().get().await.unwrap())
        .await
        .unwrap();
    let response = server.get(&format!("/workflows/runs/{id}")).await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        body.contains(r#""big": 123456789012345678901234567890"#),
        "{body}"
    );
    assert!(body.contains(r#""price": 1.10"#), "{body}");
    assert!(
        body.contains(&format!(r#""huge": 1{}"#, "0".repeat(400))),
        "{body}"
    );
    for list in ["/workflows/runs", "/workflows/runs/keyset"] {
        let response = server.get(list).await;
        assert_eq!(response.status(), 200, "{list}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("123456789012345678901234567890")
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn page_size_is_capped_at_the_maximum_and_defaults_below_one() {
    let server = TestServer::start().await;
    let page: Value = server
        .get("/workflows/runs?page_size=100000&page=-3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (page["page_size"].as_i64(), page["page"].as_i64()),
        (Some(100), Some(1))
    );
    let page: Value = server
        .get("/workflows/runs?page_size=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["page_size"], 20);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_its_stages_and_its_decisions_are_served_as_recorded() {
    let server = TestServer::start().await;
    let run = server.run("route", json!({"kind": "math"})).await;

    let response = server.get(&format!("/workflows/runs/{}", run.id)).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "completed");
    assert_eq!(body["params"], json!({"kind": "math"}));
    assert!(
        body.get("error_message").is_none(),
        "absent fields are omitted: {body}"
    );

    let stages: Vec<Stage> = server
        .get(&format!("/workflows/runs/{}/stages", run.id))
        .await
        .json()
        .await
        .unwrap();
    let steps: Vec<_> = stages
        .iter()
        .map(|s| (s.node_name.as_str(), s.iteration))
        .collect();
    assert_eq!(steps, [("analyze", 1), ("math", 2)]);

    let decisions: Vec<Decision> = server
        .get(&format!("/workflows/runs/{}/decisions", run.id))
        .await
        .json()
        .await
        .unwrap();
    let taken: Vec<_> = decisions
        .iter()
        .map(|d| {
            (
                d.from_node.as_str(),
                d.to_node.as_deref(),
                d.predicate_name.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        taken,
        [
            ("analyze", Some("math"), Some("key_equals(kind, \"math\")")),
            ("math", None, None)
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_a_finished_run_and_refuses_a_running_one() {
    let server = TestServer::start().await;
    let done = server.run("linear", json!({})).await;
    let response = server.delete(&format!("/workflows/runs/{}", done.id)).await;
    assert_eq!(response.status(), 204);
    assert_eq!(response.content_length(), Some(0));
    assert_eq!(
        server
            .get(&format!("/workflows/runs/{}", done.id))
            .await
            .status(),
        404
    );

    let stream = server
        .post_json("/workflows/gated/execute", &json!({"polite": true}))
        .await;
    let running = stream.headers()["x-run-id"].to_str().unwrap().to_owned();
    let response = server.delete(&format!("/workflows/runs/{running}")).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"],
        format!("run {running} is running: cannot delete (cancel it first)")
    );
    drop(stream);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_running_run_and_resume_finishes_it() {
    let server = TestServer::start().await;
    let mut progress = SseReader::new(
        server
            .post_json("/workflows/gated/execute", &json!({"polite": true}))
            .await,
    );
    let first = progress.next().await.unwrap();
    let id = first.data["run_id"].as_str().unwrap().to_owned();

    let response = server.post(&format!("/workflows/runs/{id}/cancel")).await;
    assert_eq!(response.status(), 200);
    let cancelled: Run = response.json().await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let last = progress.rest().await.pop().unwrap();
    assert_eq!(
        (last.event.as_str(), last.data["run"]["status"].as_str()),
        ("error", Some("cancelled"))
    );

    let again = server.post(&format!("/workflows/runs/{id}/cancel")).await;
    assert_eq!(
        again.status(),
        400,
        "a cancelled run cannot be cancelled again"
    );

    server.gate.0.notify_one();
    let response = server
        .post(&format!("/workflows/runs/{id}/resume?wait=true"))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-run-id"], id.as_str());
    let resumed: Run = response.json().await.unwrap();
    assert_eq!(resumed.status, RunStatus::Completed);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_streams_the_rest_of_a_failed_run() {
    let server = TestServer::start().await;
    let failed = server.run("flaky", json!({})).await;
    assert_eq!(
        failed.error_message.as_deref(),
        Some("node b failed: first attempt fails")
    );
    let response = server
        .post(&format!("/workflows/runs/{}/resume", failed.id))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
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
            "decision",
            "complete"
        ]
    );
    assert_eq!(events[0].data["node"], "b");
    assert_eq!(
        events[0].data["iteration"], 3,
        "steps continue after the failed attempt"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_router_serves_under_a_prefix_with_its_contract_and_pages_pointing_there() {
    let server = TestServer::with(Options {
        prefix: "/api/v1",
        ..Options::default()
    })
    .await;
    let run = server.run("linear", json!({})).await;
    assert_eq!(run.status, RunStatus::Completed);
    let spec: Value = server.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(spec["servers"], json!([{"url": "/api/v1"}]));
    let page = server.get("").await.text().await.unwrap();
    assert!(page.contains(r#"<base href="/api/v1/">"#), "{page}");
    let docs = server.get("/docs").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("SwaggerUIBundle"));
    let script = server.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(script.headers()["content-type"], "text/javascript");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_slower_than_the_timeout_is_a_503_with_a_message() {
    let limits = HttpLimits::default().request_timeout(std::time::Duration::ZERO);
    let server = TestServer::with(Options {
        limits,
        ..Options::default()
    })
    .await;
    let response = server.get("/workflows/runs").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"],
        "the request took longer than 0 ms and was abandoned; retry later"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keyset_pages_walk_every_run_once_in_order_and_end_without_a_cursor() {
    let server = TestServer::start().await;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(server.run("linear", json!({})).await.id);
    }
    made.push(server.run("flaky", json!({})).await.id);
    made.reverse(); // newest first

    let mut seen = Vec::new();
    let mut query = String::from("page_size=2");
    loop {
        let response = server.get(&format!("/workflows/runs/keyset?{query}")).await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        for run in page["data"].as_array().unwrap() {
            seen.push(
                run["id"]
                    .as_str()
                    .unwrap()
                    .parse::<workflows::RunId>()
                    .unwrap(),
            );
        }
        match page.get("next_cursor") {
            Some(cursor) => query = format!("page_size=2&cursor={}", cursor.as_str().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, made);

    let failed: Value = server
        .get("/workflows/runs/keyset?status=failed&sort=id")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failed["data"].as_array().unwrap().len(), 1);
    assert_eq!(failed["data"][0]["workflow_name"], "flaky");
    assert!(failed.get("next_cursor").is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sort_given_with_a_cursor_is_not_used_but_must_be_a_sort() {
    let server = TestServer::start().await;
    for _ in 0..2 {
        server.run("linear", json!({})).await;
    }
    let first: Value = server
        .get("/workflows/runs/keyset?page_size=1")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let known = server
        .get(&format!(
            "/workflows/runs/keyset?page_size=1&sort=id&cursor={cursor}"
        ))
        .await;
    assert_eq!(known.status(), 200, "the cursor's order serves the page");
    let page: Value = known.json().await.unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let unknown = server
        .get(&format!(
            "/workflows/runs/keyset?sort=%C3%A3&cursor={cursor}"
        ))
        .await;
    assert_eq!(unknown.status(), 400);
    let body: Value = unknown.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("invalid sort \"ã\""),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sort_naming_fields_again_is_served_in_the_order_of_their_first_mention() {
    let server = TestServer::start().await;
    let older = server.run("route", json!({"kind": "math"})).await;
    let newer = server.run("linear", json!({})).await;
    // Forty keys: each repeat used to double the work of building the query.
    let sort = ["workflow_name", "-created_at", "status", "-id"]
        .repeat(10)
        .join(",");
    let page: PageResult<Run> = server
        .get(&format!("/workflows/runs?sort={sort}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page.data.iter().map(|r| r.id).collect::<Vec<_>>(),
        [newer.id, older.id]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_question_is_streamed_listed_and_answered_over_http() {
    let server = TestServer::start().await;
    let mut progress = SseReader::new(
        server
            .post_json("/workflows/asking/execute", &json!({}))
            .await,
    );
    let events = progress.rest().await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "stage.start",
            "stage.complete",
            "decision",
            "interrupt",
            "waiting"
        ]
    );
    let interrupt = &events[3].data;
    assert_eq!(
        (interrupt["key"].as_str(), interrupt["question"].clone()),
        (Some("ok"), json!({"sure?": true}))
    );
    let run = &events[4].data;
    assert_eq!(run["status"], "waiting");
    let id = run["id"].as_str().unwrap().to_owned();

    let listed: Vec<Value> = server
        .get(&format!("/workflows/runs/{id}/interrupts"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            listed.len(),
            listed[0]["key"].as_str(),
            listed[0].get("answer")
        ),
        (1, Some("ok"), None)
    );
    let waiting: PageResult<Run> = server
        .get("/workflows/runs?status=waiting")
        .await
        .json()
        .await
        .unwrap();
    let waiting: Vec<String> = waiting.data.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(waiting, [id.as_str()]);

    let wrong = server
        .post_json(
            &format!("/workflows/runs/{id}/answer"),
            &json!({"key": "nope", "value": 1}),
        )
        .await;
    assert_eq!(wrong.status(), 400);
    let malformed = server
        .post_json(
            &format!("/workflows/runs/{id}/answer"),
            &json!({"value": 1}),
        )
        .await;
    assert_eq!(malformed.status(), 400);
    let answered = server
        .post_json(
            &format!("/workflows/runs/{id}/answer"),
            &json!({"key": "ok", "value": "yes"}),
        )
        .await;
    assert_eq!(answered.status(), 200);
    let due: Run = answered.json().await.unwrap();
    assert_eq!(due.status, RunStatus::Waiting);
    assert!(due.wake_at.is_some());
    let listed: Vec<Value> = server
        .get(&format!("/workflows/runs/{id}/interrupts"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["answer"], json!("yes"));
    server.stop().await;
}
