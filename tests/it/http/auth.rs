//! Bearer tokens: every route of the contract refuses a request without a token or with a
//! wrong one (401), a read-only token may read but not change (403), a read-write token may do
//! both; the static pages need none; the contract documents the answers.

use serde_json::Value;
use workflows::http::{Access, BearerTokens};

use super::server::{Options, TestServer};

const READ_WRITE: &str = "rw-0123456789abcdef0123456789";
const READ_ONLY: &str = "ro-0123456789abcdef0123456789";
/// One character off the read-write token.
const WRONG: &str = "rw-0123456789abcdef012345678X";

async fn server() -> TestServer {
    let tokens = BearerTokens::new()
        .with(READ_WRITE, Access::ReadWrite)
        .unwrap()
        .with(READ_ONLY, Access::ReadOnly)
        .unwrap();
    TestServer::with(Options {
        auth: Some(tokens),
        ..Options::default()
    })
    .await
}

/// Every (method, path) of the contract, with its parameters filled in: a run id of no run,
/// a workflow that exists.
fn routes(contract: &Value) -> Vec<(reqwest::Method, String)> {
    let mut routes = Vec::new();
    for (path, operations) in contract["paths"].as_object().unwrap() {
        let path = path
            .replace("{id}", "00000000-0000-4000-8000-000000000000")
            .replace("{name}", "linear");
        for method in operations.as_object().unwrap().keys() {
            routes.push((method.to_uppercase().parse().unwrap(), path.clone()));
        }
    }
    routes.push((reqwest::Method::GET, "/openapi.json".to_owned()));
    routes
}

async fn status_of(
    server: &TestServer,
    (method, path): &(reqwest::Method, String),
    token: Option<&str>,
) -> u16 {
    let mut request = server
        .client
        .request(method.clone(), server.url(path))
        .header("content-type", "application/json")
        .body("{}");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn every_route_refuses_a_request_without_a_token_or_with_a_wrong_one() {
    let server = server().await;
    let contract = server.executor.clone();
    let contract = workflows::http::HttpApi::new(contract).openapi();
    let routes = routes(&contract);
    assert!(routes.len() >= 15, "{routes:?}");
    for route in &routes {
        assert_eq!(
            status_of(&server, route, None).await,
            401,
            "{route:?} without a token"
        );
        assert_eq!(
            status_of(&server, route, Some(WRONG)).await,
            401,
            "{route:?} with a wrong token"
        );
    }
    let refused = server.get("/workflows/runs").await;
    assert_eq!(
        refused.headers()["www-authenticate"],
        r#"Bearer realm="workflows""#
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "this API needs a bearer token: send `Authorization: Bearer <token>`", "status": 401})
    );
    server.stop().await;
}

#[tokio::test]
async fn a_read_only_token_reads_and_is_refused_every_change_which_a_read_write_token_may_make() {
    let server = server().await;
    let contract = workflows::http::HttpApi::new(server.executor.clone()).openapi();
    for route in routes(&contract) {
        let reads = route.0 == reqwest::Method::GET;
        let read_only = status_of(&server, &route, Some(READ_ONLY)).await;
        if reads {
            assert!(![401, 403].contains(&read_only), "{route:?}: {read_only}");
        } else {
            assert_eq!(read_only, 403, "{route:?} with a read-only token");
        }
        let read_write = status_of(&server, &route, Some(READ_WRITE)).await;
        assert!(![401, 403].contains(&read_write), "{route:?}: {read_write}");
    }
    let refused = server
        .client
        .post(server.url("/workflows/runs/00000000-0000-4000-8000-000000000000/cancel"))
        .bearer_auth(READ_ONLY)
        .send()
        .await
        .unwrap();
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"],
        "this token is read-only: POST needs a read-write token"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_inspector_and_docs_pages_load_without_a_token_and_the_runs_need_one() {
    let server = server().await;
    for page in [
        "/",
        "/docs",
        "/inspector/inspector.js",
        "/docs/swagger-ui.css",
    ] {
        assert_eq!(server.get(page).await.status(), 200, "{page}");
    }
    let run = server
        .client
        .post(server.url("/workflows/linear/execute?wait=true"))
        .bearer_auth(READ_WRITE)
        .json(&serde_json::json!({"text": "a. b."}))
        .send()
        .await
        .unwrap();
    assert_eq!(run.status(), 200);
    let listed: Value = server
        .client
        .get(server.url("/workflows/runs"))
        .bearer_auth(READ_ONLY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 1);
    server.stop().await;
}

#[tokio::test]
async fn the_contract_documents_the_bearer_scheme_and_its_401_and_403_answers() {
    let server = TestServer::start().await;
    let contract = workflows::http::HttpApi::new(server.executor.clone()).openapi();
    assert_eq!(
        contract["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let cancel = &contract["paths"]["/workflows/runs/{id}/cancel"]["post"]["responses"];
    assert_eq!(
        cancel["403"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    assert!(cancel["401"].is_object());
    let list = &contract["paths"]["/workflows/runs"]["get"]["responses"];
    assert!(list["401"].is_object() && list["403"].is_null(), "{list}");
    server.stop().await;
}

#[test]
fn tokens_are_never_shown_in_debug_output_or_errors() {
    let tokens = BearerTokens::parse(&format!("rw:{READ_WRITE}\nro:{READ_ONLY}")).unwrap();
    let shown = format!("{tokens:?} {:?}", tokens.layer());
    assert!(!shown.contains("0123456789"), "{shown}");
    let twice = BearerTokens::parse(&format!("rw:{READ_WRITE},ro:{READ_WRITE}")).unwrap_err();
    assert!(
        twice.to_string().contains("given twice") && !twice.to_string().contains("0123456789"),
        "{twice}"
    );
    let malformed = BearerTokens::parse("admin:0123456789abcdef0123").unwrap_err();
    assert!(
        malformed
            .to_string()
            .contains("expected `rw:TOKEN` or `ro:TOKEN`")
            && !malformed.to_string().contains("0123456789"),
        "{malformed}"
    );
}
