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

/// A worker executing on a task of its own until [`Running::stop`].
pub(crate) struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<workflows::Result<workflows::ShutdownReport>>,
}

impl Running {
    /// Starts `worker`.
    pub(crate) fn start(worker: workflows::Worker) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            worker
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        });
        Running { stop, task }
    }

    /// Stops the worker, and returns its report.
    pub(crate) async fn stop(self) -> workflows::ShutdownReport {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap()
    }
}

/// The run's owner and lease token: both `None` when nobody holds it.
pub(crate) async fn owner_and_token(
    pool: &workflows::Pool,
    id: RunId,
) -> (Option<String>, Option<uuid::Uuid>) {
    let mut conn = pool.get().await.unwrap();
    runs::table
        .find(id)
        .select((runs::owner, runs::lease_token))
        .first(&mut conn)
        .await
        .unwrap()
}

/// The run as recorded now.
pub(crate) async fn run_of(pool: &workflows::Pool, id: RunId) -> workflows::Run {
    workflows::repository::find_run(&mut pool.get().await.unwrap(), id)
        .await
        .unwrap()
}

/// Waits until the run is in `status`.
pub(crate) async fn until_status(
    pool: &workflows::Pool,
    id: RunId,
    status: workflows::RunStatus,
) -> workflows::Run {
    tokio::time::timeout(HANG, async {
        loop {
            let run = run_of(pool, id).await;
            if run.status == status {
                return run;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("run {id} never became {status}"))
}

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

/// `ask` asks `ok` (the question `{"sure?": true}`), then `done` records the answer as
/// `answer`.
pub(crate) async fn asking(
    g: &mut GraphBuilder,
    _: &Runtime,
    _: Params,
) -> Result<State, BoxError> {
    let ask = g.node("ask", |s: State, ctx: NodeContext| async move {
        ctx.interrupt("ok", serde_json::json!({"sure?": true}))?;
        Ok(s)
    });
    let done = g.node("done", |s: State, ctx: NodeContext| async move {
        let answer: Option<serde_json::Value> = ctx.answer("ok")?;
        Ok(s.with("answer", answer))
    });
    g.edge(ask, done).start_at(ask).end_at(done);
    Ok(State::new())
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

/// `wait` blocks on the runtime's [`Gate`] (and ignores cancellation unless `polite`); with
/// `gate_c`, `c` waits for the gate too (after `wait`'s opening), before it marks the state.
pub(crate) async fn gated(
    g: &mut GraphBuilder,
    rt: &Runtime,
    p: Params,
) -> Result<State, BoxError> {
    let gate = rt.get::<Gate>()?;
    let polite: bool = p.get("polite")?.unwrap_or(false);
    let gate_c = p
        .get::<bool>("gate_c")?
        .unwrap_or(false)
        .then(|| Arc::clone(&gate));
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
        .add_node("c", move |state: State, ctx: NodeContext| {
            let gate = gate_c.clone();
            async move {
                if let Some(gate) = gate {
                    gate.0.notified().await;
                }
                mark(state, ctx).await
            }
        })
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

// A typed test workflow: `tally` counts to `to`, appending each count to `seen` and merging
// a word per count into `words`; its dependency, `Tally`'s `Ledger`, records the state each
// node saw and makes `add` fail once at `fail_at`.

/// The params of `tally`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct TallyParams {
    /// How far to count.
    pub(crate) to: u32,
    /// The count at which `add` fails, the first time it gets there.
    #[serde(default)]
    pub(crate) fail_at: Option<u32>,
}

/// The state of `tally`.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, workflows::WorkflowState,
)]
#[state(derive(Debug, PartialEq))]
pub(crate) struct Tally {
    pub(crate) to: u32,
    pub(crate) count: u32,
    #[state(append)]
    pub(crate) seen: Vec<u32>,
    #[state(merge)]
    pub(crate) words: std::collections::BTreeMap<String, u32>,
    pub(crate) fail_at: Option<u32>,
}

impl From<TallyParams> for Tally {
    fn from(params: TallyParams) -> Self {
        Tally {
            to: params.to,
            fail_at: params.fail_at,
            ..Tally::default()
        }
    }
}

/// What `tally`'s nodes reach: the states they saw, by step, and the failures they made;
/// and, if it holds, the count at which `add` waits for `gate` before counting.
#[derive(Default)]
pub(crate) struct Ledger {
    pub(crate) seen: std::sync::Mutex<Vec<(Option<RunId>, u32, Tally)>>,
    failed: std::sync::Mutex<std::collections::HashSet<(Option<RunId>, u32)>>,
    hold_at: Option<u32>,
    pub(crate) gate: Notify,
}

impl Ledger {
    /// A ledger whose `add` waits for its gate before counting to `count`.
    pub(crate) fn holding_at(count: u32) -> Self {
        Ledger {
            hold_at: Some(count),
            ..Ledger::default()
        }
    }

    /// The states `run`'s nodes saw, by step.
    pub(crate) fn seen_by(&self, run: RunId) -> Vec<(u32, Tally)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _, _)| *r == Some(run))
            .map(|(_, step, t)| (*step, t.clone()))
            .collect()
    }
}

async fn tally_add(tally: Tally, ctx: NodeContext<Ledger>) -> Result<TallyUpdate, BoxError> {
    let ledger = ctx.deps();
    ledger
        .seen
        .lock()
        .unwrap()
        .push((ctx.run_id(), ctx.iteration(), tally.clone()));
    let next = tally.count + 1;
    if ledger.hold_at == Some(next) {
        ledger.gate.notified().await;
    }
    if tally.fail_at == Some(next) && ledger.failed.lock().unwrap().insert((ctx.run_id(), next)) {
        return Err(format!("add fails once at {next}").into());
    }
    Ok(TallyUpdate::default()
        .count(next)
        .seen(vec![next])
        .words([(format!("w{next}"), next)].into()))
}

async fn tally_check(tally: Tally, ctx: NodeContext<Ledger>) -> Result<TallyUpdate, BoxError> {
    ctx.deps()
        .seen
        .lock()
        .unwrap()
        .push((ctx.run_id(), ctx.iteration(), tally));
    Ok(TallyUpdate::default())
}

/// Declares `tally`'s graph, storing `snapshots`.
pub(crate) fn tally_graph(
    g: &mut GraphBuilder<Tally, Ledger>,
    snapshots: workflows::SnapshotPolicy,
) -> Result<(), BoxError> {
    let add = g.node("add", tally_add);
    let check = g.node("check", tally_check);
    g.start_at(add)
        .edge(add, check)
        .edge_if(
            check,
            add,
            Predicate::new("more", |t: &Tally| t.count < t.to),
        )
        .end_at(check)
        .snapshots(snapshots);
    Ok(())
}

/// `tally`, built once, storing updates only.
pub(crate) fn tally() -> workflows::WorkflowDef {
    workflows::WorkflowDef::built_once(
        "tally",
        "counts to `to`",
        |g| tally_graph(g, workflows::SnapshotPolicy::Updates),
        <Tally as From<TallyParams>>::from,
    )
}

/// `tally` storing whole snapshots by `snapshots`, under another name.
pub(crate) fn tally_with(
    name: &'static str,
    declare: workflows::GraphFn<Tally, Ledger>,
) -> workflows::WorkflowDef {
    workflows::WorkflowDef::built_once(
        name,
        "counts to `to`",
        declare,
        <Tally as From<TallyParams>>::from,
    )
}
