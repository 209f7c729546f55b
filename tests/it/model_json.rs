//! The JSON shape of runs, stages and decisions: the Go original's field names, absent
//! optionals omitted, lower-case statuses, RFC 3339 timestamps.

use serde_json::{Value, json};
use workflows::{RunStatus, StageStatus, WorkflowInfo, repository, testing};

use crate::fixtures::{at, insert_decision, insert_full_run, insert_run, insert_stage, t0};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<_> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn a_run_with_every_field_has_the_go_field_names() {
    let mut conn = testing::connection().await.unwrap();
    let id = insert_full_run(&mut conn).await;
    let run = repository::find_run(&mut conn, id).await.unwrap();
    let json = serde_json::to_value(&run).unwrap();
    assert_eq!(
        keys(&json),
        [
            "completed_at",
            "created_at",
            "error_message",
            "id",
            "params",
            "result",
            "started_at",
            "status",
            "updated_at",
            "workflow_name"
        ]
    );
    assert_eq!(json["id"], json!(id.to_string()));
    assert_eq!(json["status"], json!("completed"));
    assert_eq!(json["params"], json!({"topic": "rust"}));
    assert_eq!(json["result"], json!({"summary": "fast"}));
    assert_eq!(json["started_at"], json!("2026-01-01T12:01:00Z"));
    assert_eq!(json["created_at"], json!("2026-01-01T12:00:00Z"));
}

#[tokio::test]
async fn absent_optional_fields_are_omitted_not_null() {
    let mut conn = testing::connection().await.unwrap();
    let id = insert_run(&mut conn, "summarize", RunStatus::Pending, t0()).await;
    let run = repository::find_run(&mut conn, id).await.unwrap();
    let json = serde_json::to_value(&run).unwrap();
    assert_eq!(
        keys(&json),
        ["created_at", "id", "status", "updated_at", "workflow_name"]
    );
}

#[tokio::test]
async fn timestamps_are_rfc3339_and_round_trip() {
    let mut conn = testing::connection().await.unwrap();
    let id = insert_run(&mut conn, "summarize", RunStatus::Pending, t0()).await;
    let run = repository::find_run(&mut conn, id).await.unwrap();
    let json = serde_json::to_value(&run).unwrap();
    for field in ["created_at", "updated_at"] {
        let text = json[field].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{field}: {text}: {e}"));
    }
    let back: workflows::Run = serde_json::from_value(json).unwrap();
    assert_eq!(back, run);
}

#[tokio::test]
async fn stages_and_decisions_have_the_go_field_names() {
    let mut conn = testing::connection().await.unwrap();
    let id = insert_run(&mut conn, "summarize", RunStatus::Running, t0()).await;
    insert_stage(&mut conn, id, "fetch", 1, at(1)).await;
    insert_decision(&mut conn, id, "fetch", None, at(2)).await;

    let stage = &repository::stages(&mut conn, id).await.unwrap()[0];
    let json = serde_json::to_value(stage).unwrap();
    assert_eq!(
        keys(&json),
        [
            "created_at",
            "duration_ms",
            "id",
            "input_snapshot",
            "iteration",
            "node_name",
            "run_id",
            "status"
        ]
    );
    assert_eq!(json["status"], json!("completed"));
    assert_eq!(json["iteration"], json!(1));

    let decision = &repository::decisions(&mut conn, id).await.unwrap()[0];
    let json = serde_json::to_value(decision).unwrap();
    assert_eq!(
        keys(&json),
        [
            "created_at",
            "from_node",
            "id",
            "predicate_name",
            "predicate_result",
            "run_id"
        ]
    );
    assert_eq!(json["predicate_result"], json!(true));
}

#[test]
fn statuses_are_lower_case_strings() {
    for status in RunStatus::ALL {
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!(status.as_str())
        );
        assert_eq!(status.as_str(), status.as_str().to_lowercase());
        assert_eq!(status.as_str().parse::<RunStatus>().unwrap(), *status);
    }
    // The Go service's five, and `waiting` (a run waiting out a long retry backoff).
    let all: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        all,
        [
            "pending",
            "running",
            "waiting",
            "completed",
            "failed",
            "cancelled"
        ]
    );
    let all: Vec<_> = StageStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(all, ["started", "completed", "failed"]);
    assert!(serde_json::from_value::<RunStatus>(json!("Running")).is_err());
}

#[test]
fn workflow_info_has_name_and_description() {
    let info = WorkflowInfo {
        name: "a".into(),
        description: "b".into(),
    };
    assert_eq!(
        serde_json::to_value(info).unwrap(),
        json!({"name": "a", "description": "b"})
    );
}

/// Params and a result PostgreSQL stores but `f64` cannot hold: digits beyond 64 bits, a
/// scale to keep, a number far out of range.
const ODD_NUMBERS: &str =
    r#"{"big": 123456789012345678901234567890, "price": 1.10, "huge": 1e400}"#;

async fn insert_odd_run(conn: &mut diesel_async::AsyncPgConnection) -> workflows::RunId {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use workflows::schema::runs;
    let odd: workflows::RawJson = serde_json::from_str(ODD_NUMBERS).unwrap();
    diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq("odd"),
            runs::status.eq(RunStatus::Completed),
            runs::params.eq(&odd),
            runs::result.eq(&odd),
        ))
        .returning(runs::id)
        .get_result(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn numbers_come_back_as_stored() {
    let mut conn = testing::connection().await.unwrap();
    let id = insert_odd_run(&mut conn).await;
    let run = repository::find_run(&mut conn, id).await.unwrap();
    let huge = format!("1{}", "0".repeat(400));
    for stored in [run.params.unwrap(), run.result.unwrap()] {
        let text = stored.as_str();
        assert!(text.contains("123456789012345678901234567890"), "{text}");
        assert!(text.contains("1.10"), "{text}");
        assert!(
            text.contains(&huge),
            "1e400 as PostgreSQL's numeric prints it: {text}"
        );
    }
    let body = serde_json::to_string(&repository::find_run(&mut conn, id).await.unwrap()).unwrap();
    assert!(
        body.contains(r#""big": 123456789012345678901234567890"#),
        "{body}"
    );
    assert!(body.contains(r#""price": 1.10"#), "{body}");
}

#[tokio::test]
async fn one_odd_row_does_not_break_a_page() {
    let mut conn = testing::connection().await.unwrap();
    let odd = insert_odd_run(&mut conn).await;
    let plain = insert_run(&mut conn, "plain", RunStatus::Pending, t0()).await;
    let page = repository::list_runs(
        &mut conn,
        &workflows::PageConfig::default(),
        workflows::PageRequest::new(1, 20),
        &workflows::RunFilters::default(),
    )
    .await
    .unwrap();
    let ids: Vec<_> = page.data.iter().map(|r| r.id).collect();
    assert!(ids.contains(&odd) && ids.contains(&plain), "{ids:?}");
    let keyset = repository::list_runs_keyset(
        &mut conn,
        &workflows::PageConfig::default(),
        workflows::PageRequest::new(1, 20),
        &workflows::RunFilters::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(keyset.data.len(), 2);
}
