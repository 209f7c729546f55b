//! The OpenAPI contract: it is 3.1, it lists exactly the API's operations, and every one of
//! them is routed (a test that fails when the served spec and the routes disagree).

use serde_json::Value;
use workflows::http::HttpApi;

use super::server::TestServer;

/// The endpoints of DESIGN.md and the cursor pages, as (method, path).
const ENDPOINTS: &[(&str, &str)] = &[
    ("get", "/workflows"),
    ("post", "/workflows/{name}/execute"),
    ("get", "/workflows/runs"),
    ("get", "/workflows/runs/keyset"),
    ("get", "/workflows/runs/{id}"),
    ("delete", "/workflows/runs/{id}"),
    ("get", "/workflows/runs/{id}/stages"),
    ("get", "/workflows/runs/{id}/decisions"),
    ("post", "/workflows/runs/{id}/cancel"),
    ("post", "/workflows/runs/{id}/resume"),
    ("get", "/workflows/runs/{id}/state"),
    ("get", "/workflows/runs/{id}/interrupts"),
    ("post", "/workflows/runs/{id}/answer"),
    ("post", "/workflows/runs/{id}/messages"),
    // Each registered workflow's own execute, with its params schema.
    ("post", "/workflows/asking/execute"),
    ("post", "/workflows/flaky/execute"),
    ("post", "/workflows/gated/execute"),
    ("post", "/workflows/heavy/execute"),
    ("post", "/workflows/linear/execute"),
    ("post", "/workflows/route/execute"),
    ("post", "/workflows/tally/execute"),
];

fn operations(spec: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                found.push((method.clone(), path.clone()));
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_contract_is_openapi_3_1_with_exactly_the_api_s_operations() {
    let server = TestServer::start().await;
    let response = server.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let spec: Value = response.json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let mut expected: Vec<(String, String)> = ENDPOINTS
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(operations(&spec), expected);
    assert_eq!(
        spec,
        HttpApi::new(server.executor.clone()).openapi(),
        "served as built"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typed_workflow_s_execute_takes_its_params_schema_and_a_json_one_any_object() {
    let server = TestServer::start().await;
    let spec: Value = server.get("/openapi.json").await.json().await.unwrap();
    let body = &spec["paths"]["/workflows/tally/execute"]["post"]["requestBody"];
    assert_eq!(body["required"], true, "`to` is required");
    let schema = &body["content"]["application/json"]["schema"];
    assert_eq!(schema["required"], serde_json::json!(["to"]));
    assert_eq!(
        schema["properties"]["to"],
        serde_json::json!({
            "type": "integer", "format": "uint32", "minimum": 0, "maximum": 4294967295u64,
            "description": "How far to count."
        })
    );
    let operation = &spec["paths"]["/workflows/tally/execute"]["post"];
    assert_eq!(operation["operationId"], "execute_tally");
    assert!(
        operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["in"] != "path"),
        "{operation}"
    );
    let json = &spec["paths"]["/workflows/linear/execute"]["post"]["requestBody"];
    assert_eq!(
        json["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/RunParams"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_in_the_contract_is_routed() {
    let server = TestServer::start().await;
    let spec: Value = server.get("/openapi.json").await.json().await.unwrap();
    for (method, path) in operations(&spec) {
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{name}", "no-such-workflow");
        // A body that is not params: routed, the request is refused without starting a run.
        let request = server
            .client
            .request(
                method.to_uppercase().parse().unwrap(),
                server.url(&concrete),
            )
            .json(&serde_json::json!([]));
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let error = body["error"].as_str().unwrap_or("");
        assert!(
            !error.starts_with("no route") && status != 405,
            "{method} {path} is in the contract but not routed: {status} {error}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_documents_its_errors_and_every_reference_and_link_resolves() {
    let server = TestServer::start().await;
    let spec = HttpApi::new(server.executor.clone()).openapi();
    server.stop().await;
    for (method, path) in operations(&spec) {
        let responses = &spec["paths"][&path][&method]["responses"];
        if path != "/workflows" {
            for status in ["400", "500"] {
                assert!(
                    responses.get(status).is_some(),
                    "{method} {path} does not document {status}"
                );
            }
        }
        assert!(
            responses
                .as_object()
                .unwrap()
                .keys()
                .any(|s| s.starts_with('2')),
            "{method} {path} documents no success"
        );
    }
    let operation_ids: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let execute = &spec["paths"]["/workflows/{name}/execute"]["post"]["responses"]["200"];
    let links = execute["links"].as_object().unwrap();
    assert_eq!(
        links.len(),
        6,
        "execute links to what can be done with its run"
    );
    for (name, link) in links {
        let target = link["operationId"].as_str().unwrap();
        assert!(
            operation_ids.contains(&target),
            "link {name} targets unknown {target}"
        );
        assert_eq!(link["parameters"]["id"], "$response.header.X-Run-ID");
    }
    let text = spec.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(
            spec["components"]["schemas"].get(name).is_some(),
            "{name} is referenced but not defined"
        );
    }
}
