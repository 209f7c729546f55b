//! What tests share: rows inserted with Diesel directly (to read them back without running
//! anything), and the pieces test workflows are built from.

use chrono::{DateTime, Duration, TimeZone, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Notify;
use workflows::schema::{decisions, runs, stages};

use workflows::{
    BoxError, GraphBuilder, NodeContext, Params, Predicate, RunId, RunStatus, Runtime, StageStatus,
    State,
};

/// Guards against hangs only: far longer than anything a test waits for.
pub(crate) const HANG: std::time::Duration = std::time::Duration::from_secs(60);

/// A node that records its step number under its own name.
pub(crate) async fn mark(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    state.set(ctx.node(), ctx.iteration());
    Ok(state)
}

/// Put in a workflow's runtime to hold a node until the test opens it.
pub(crate) struct Gate(pub(crate) Notify);

/// A fixed instant, so orders and timestamps are predictable.
pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

/// `t0` plus `minutes`.
pub(crate) fn at(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

/// Inserts a run with only its required fields and `created_at`.
pub(crate) async fn insert_run(
    conn: &mut AsyncPgConnection,
    workflow: &str,
    status: RunStatus,
    created_at: DateTime<Utc>,
) -> RunId {
    diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq(workflow),
            runs::status.eq(status),
            runs::created_at.eq(created_at),
        ))
        .returning(runs::id)
        .get_result(conn)
        .await
        .unwrap()
}

/// Inserts a completed run with every optional field set.
pub(crate) async fn insert_full_run(conn: &mut AsyncPgConnection) -> RunId {
    diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq("summarize"),
            runs::status.eq(RunStatus::Completed),
            runs::params.eq(json!({"topic": "rust"})),
            runs::result.eq(json!({"summary": "fast"})),
            runs::error_message.eq("none really"),
            runs::started_at.eq(at(1)),
            runs::completed_at.eq(at(2)),
            runs::created_at.eq(t0()),
        ))
        .returning(runs::id)
        .get_result(conn)
        .await
        .unwrap()
}

/// Inserts a stage of `run`.
pub(crate) async fn insert_stage(
    conn: &mut AsyncPgConnection,
    run: RunId,
    node: &str,
    iteration: i32,
    created_at: DateTime<Utc>,
) {
    diesel::insert_into(stages::table)
        .values((
            stages::run_id.eq(run),
            stages::node_name.eq(node),
            stages::iteration.eq(iteration),
            stages::status.eq(StageStatus::Completed),
            stages::input_snapshot.eq(json!({"i": iteration})),
            stages::duration_ms.eq(5),
            stages::created_at.eq(created_at),
        ))
        .execute(conn)
        .await
        .unwrap();
}

/// Inserts a decision of `run`.
pub(crate) async fn insert_decision(
    conn: &mut AsyncPgConnection,
    run: RunId,
    from: &str,
    to: Option<&str>,
    created_at: DateTime<Utc>,
) {
    diesel::insert_into(decisions::table)
        .values((
            decisions::run_id.eq(run),
            decisions::from_node.eq(from),
            decisions::to_node.eq(to),
            decisions::predicate_name.eq("always"),
            decisions::predicate_result.eq(true),
            decisions::created_at.eq(created_at),
        ))
        .execute(conn)
        .await
        .unwrap();
}

/// A run id no row has.
pub(crate) fn unknown_run() -> RunId {
    RunId::from_uuid(uuid::Uuid::new_v4())
}

// Test workflows shared by the executor and HTTP tests.

pub(crate) async fn linear(
    g: &mut GraphBuilder,
    _: &Runtime,
    _: Params,
) -> Result<State, BoxError> {
    g.add_node("a", mark)
        .add_node("b", mark)
        .add_node("c", mark)
        .add_edge("a", "b")
        .add_edge("b", "c")
        .set_entry_point("a")
        .add_exit_point("c");
    Ok(State::new().with("start", true))
}

pub(crate) async fn route(g: &mut GraphBuilder, _: &Runtime, p: Params) -> Result<State, BoxError> {
    let kind: String = p.require("kind")?;
    g.add_node("analyze", mark)
        .add_node("math", mark)
        .add_node("prose", mark)
        .add_conditional_edge("analyze", "math", Predicate::key_equals("kind", "math"))
        .add_conditional_edge("analyze", "prose", Predicate::always())
        .set_entry_point("analyze")
        .add_exit_point("math")
        .add_exit_point("prose");
    Ok(State::new().with("kind", kind))
}

/// `wait` blocks on the runtime's [`Gate`] (and ignores cancellation unless `polite`).
pub(crate) async fn gated(
    g: &mut GraphBuilder,
    rt: &Runtime,
    p: Params,
) -> Result<State, BoxError> {
    let gate = rt.get::<Gate>()?;
    let polite: bool = p.get("polite")?.unwrap_or(false);
    g.add_node("a", mark)
        .add_node("wait", move |state: State, ctx: NodeContext| {
            let gate = Arc::clone(&gate);
            async move {
                if polite {
                    tokio::select! {
                        () = gate.0.notified() => {}
                        () = ctx.cancelled() => return Err::<State, BoxError>("stopped politely".into()),
                    }
                } else {
                    gate.0.notified().await;
                }
                Ok(state)
            }
        })
        .add_node("c", mark)
        .add_edge("a", "wait")
        .add_edge("wait", "c")
        .set_entry_point("a")
        .add_exit_point("c");
    Ok(State::new())
}

/// Fails at `b` the first time it runs (step 2), passes when resumed.
pub(crate) async fn flaky(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("a", mark)
        .add_node("b", |state: State, ctx: NodeContext| async move {
            if ctx.iteration() == 2 {
                return Err("first attempt fails".into());
            }
            mark(state, ctx).await
        })
        .add_node("c", mark)
        .add_edge("a", "b")
        .add_edge("b", "c")
        .set_entry_point("a")
        .add_exit_point("c");
    Ok(State::new())
}
