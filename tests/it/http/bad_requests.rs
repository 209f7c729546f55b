//! Bad requests: each gets its 4xx and a JSON body whose message names what was wrong, never
//! a 500, and nothing is written.

use serde_json::{Value, json};
use workflows::http::HttpLimits;
use workflows::{PageResult, Run};

use super::server::{Options, TestServer};

/// Asserts the status and that the JSON error body says `message`.
async fn says(response: reqwest::Response, status: u16, message: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(message),
        "{error:?} does not say {message:?}"
    );
}

async fn run_count(server: &TestServer) -> i64 {
    let page: PageResult<Run> = server.get("/workflows/runs").await.json().await.unwrap();
    page.total
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_a_400_naming_the_problem() {
    let server = TestServer::start().await;
    let response = server
        .client
        .post(server.url("/workflows/linear/execute"))
        .header("content-type", "application/json")
        .body("{\"a\": ")
        .send()
        .await
        .unwrap();
    says(response, 400, "malformed JSON body: EOF while parsing").await;
    assert_eq!(run_count(&server).await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_null_body_is_a_400_not_no_params() {
    let server = TestServer::start().await;
    says(
        server
            .post_json("/workflows/linear/execute", &Value::Null)
            .await,
        400,
        "the body is JSON null: send params as a JSON object, or an empty body for no params",
    )
    .await;
    assert_eq!(run_count(&server).await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn params_that_are_not_an_object_are_a_400() {
    let server = TestServer::start().await;
    says(
        server
            .post_json("/workflows/linear/execute", &json!([1, 2]))
            .await,
        400,
        "invalid params \"[1,2]\": must be a JSON object",
    )
    .await;
    says(
        server
            .post_json("/workflows/linear/execute", &json!({"a": "x\u{0}"}))
            .await,
        400,
        "invalid params.a",
    )
    .await;
    assert_eq!(run_count(&server).await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn params_that_do_not_fit_a_typed_workflow_are_a_400_naming_the_field() {
    let server = TestServer::start().await;
    says(
        server
            .post_json("/workflows/tally/execute", &json!({"to": -1}))
            .await,
        400,
        r#"invalid params.to "-1": invalid value: integer `-1`, expected u32"#,
    )
    .await;
    says(
        server.post("/workflows/tally/execute").await,
        400,
        "missing field `to`",
    )
    .await;
    assert_eq!(run_count(&server).await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_of_a_step_that_is_not_a_number_is_a_400_and_past_the_last_a_404() {
    let server = TestServer::start().await;
    let run = server.run("tally", json!({"to": 1})).await;
    for (query, message) in [
        ("step=", r#"invalid step "": must be a step number"#),
        ("step=-1", r#"invalid step "-1": must be a step number"#),
        ("step=x", r#"invalid step "x": must be a step number"#),
    ] {
        says(
            server
                .get(&format!("/workflows/runs/{}/state?{query}", run.id))
                .await,
            400,
            message,
        )
        .await;
    }
    says(
        server
            .get(&format!("/workflows/runs/{}/state?step=3", run.id))
            .await,
        404,
        &format!("run {} has no step 3 yet: its last step is 2", run.id),
    )
    .await;
    let unknown = uuid::Uuid::new_v4();
    says(
        server
            .get(&format!("/workflows/runs/{unknown}/state"))
            .await,
        404,
        &format!("run {unknown} not found"),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_content_type_is_a_415() {
    let server = TestServer::start().await;
    let response = server
        .client
        .post(server.url("/workflows/linear/execute"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    says(response, 415, "unsupported content type \"text/plain\"").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_is_a_413() {
    let limits = HttpLimits::default().body_bytes(1024);
    let server = TestServer::with(Options {
        limits,
        ..Options::default()
    })
    .await;
    let big = json!({"text": "x".repeat(2000)});
    says(
        server.post_json("/workflows/linear/execute", &big).await,
        413,
        "larger than the limit of 1024 bytes",
    )
    .await;
    assert_eq!(run_count(&server).await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_workflow_is_a_404() {
    let server = TestServer::start().await;
    says(
        server
            .post_json("/workflows/nope/execute", &json!({}))
            .await,
        404,
        "workflow \"nope\" is not registered",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_run_id_is_a_400_and_an_unknown_one_a_404() {
    let server = TestServer::start().await;
    for path in [
        "/workflows/runs/42",
        "/workflows/runs/42/stages",
        "/workflows/runs/42/decisions",
    ] {
        says(
            server.get(path).await,
            400,
            "invalid run id \"42\": not a UUID",
        )
        .await;
    }
    says(
        server.post("/workflows/runs/42/cancel").await,
        400,
        "not a UUID",
    )
    .await;
    says(
        server.post("/workflows/runs/42/resume").await,
        400,
        "not a UUID",
    )
    .await;
    says(server.delete("/workflows/runs/42").await, 400, "not a UUID").await;

    let unknown = uuid::Uuid::new_v4();
    let not_found = format!("run {unknown} not found");
    says(
        server.get(&format!("/workflows/runs/{unknown}")).await,
        404,
        &not_found,
    )
    .await;
    says(
        server
            .get(&format!("/workflows/runs/{unknown}/stages"))
            .await,
        404,
        &not_found,
    )
    .await;
    says(
        server
            .post(&format!("/workflows/runs/{unknown}/cancel"))
            .await,
        404,
        &not_found,
    )
    .await;
    says(
        server
            .post(&format!("/workflows/runs/{unknown}/resume"))
            .await,
        404,
        &not_found,
    )
    .await;
    says(
        server.delete(&format!("/workflows/runs/{unknown}")).await,
        404,
        &not_found,
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_query_parameters_are_a_400_naming_the_value() {
    let server = TestServer::start().await;
    let cases = [
        ("page=abc", "invalid page \"abc\": not a whole number"),
        ("page=", "invalid page \"\": not a whole number"),
        ("page_size=1.5", "invalid page_size \"1.5\""),
        (
            "sort=password",
            "invalid sort \"password\": not a sortable field",
        ),
        ("sort=,", "empty field name"),
        (
            "status=done",
            "invalid status \"done\": expected one of pending, running",
        ),
        ("page=1&page=2", "given twice"),
        ("search=a%00b", "contains a NUL character"),
    ];
    for (query, message) in cases {
        says(
            server.get(&format!("/workflows/runs?{query}")).await,
            400,
            message,
        )
        .await;
    }
    says(
        server
            .post_json("/workflows/linear/execute?wait=maybe", &json!({}))
            .await,
        400,
        "invalid wait \"maybe\": expected true or false",
    )
    .await;
    assert_eq!(run_count(&server).await, 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_route_is_a_404_and_a_wrong_method_a_405_both_in_json() {
    let server = TestServer::start().await;
    says(
        server.get("/workflows/runs/1/2/3").await,
        404,
        "no route for GET /workflows/runs/1/2/3",
    )
    .await;
    says(
        server
            .client
            .put(server.url("/workflows"))
            .send()
            .await
            .unwrap(),
        405,
        "/workflows does not take PUT",
    )
    .await;
    server.stop().await;
}
