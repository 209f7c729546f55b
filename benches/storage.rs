//! What a run costs in storage: WAL bytes written, and how much the `stages` table grows, per
//! run, for workload W (`bench/WORKLOAD.md`) and for a 50-step run whose state grows by 2 KB
//! a step (a conversation), each stored two ways: whole snapshots in every stage (as this
//! library stored them before stages kept updates, and as the Go service does:
//! `SnapshotPolicy::Full`) and updates only (the default). Also W's runs/s both ways, one
//! run at a time, and the ratio.
//!
//! WAL is measured with `pg_current_wal_lsn()` around the runs, so it counts everything the
//! cluster wrote meanwhile: run it on a server nothing else is writing to. The `stages`
//! figures are the stored (compressed) size of the runs' stage rows (`pg_column_size`), and
//! of the relation with its TOAST table and indexes (`pg_total_relation_size`, dead tuples
//! of the `started` rows included). Prints `name<TAB>value` lines for `scripts/bench`;
//! asserts only that every run completed.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::json;
use workflows::db::run_pending_migrations;
use workflows::{
    BoxError, DbConfig, Executor, GraphBuilder, NodeContext, Registry, RunId, RunStatus,
    SnapshotPolicy, State, WorkflowDef,
};

type Fail = Box<dyn std::error::Error + Send + Sync>;

/// Workload W's node: sets `k{i}` to 100 characters and increments `counter`.
async fn w_node(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    let i = ctx.node().trim_start_matches('n').to_owned();
    let value: String = format!("v{i}-")
        .chars()
        .chain(std::iter::repeat('x'))
        .take(100)
        .collect();
    state.set(format!("k{i}"), value);
    let counter: u64 = state.require("counter")?;
    state.set("counter", counter + 1);
    Ok(state)
}

/// `len` pseudo-random letters and digits: text that compresses about as badly as model
/// output, so TOAST compression does not flatter the figures.
fn text(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(ALPHABET[(x % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

/// The growing run's node: appends a 2 KB message to `messages`.
async fn grow_node(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    let mut messages: Vec<String> = state.require("messages")?;
    messages.push(text(2048, u64::from(ctx.iteration())));
    state.set("messages", messages);
    Ok(state)
}

/// A chain of `nodes` nodes of `node`, storing `policy`.
fn chain(
    g: &mut GraphBuilder,
    nodes: usize,
    policy: SnapshotPolicy,
    node: fn(State, NodeContext) -> workflows::BoxFuture<'static, Result<State, BoxError>>,
) {
    for i in 0..nodes {
        g.add_node(format!("n{i}"), node);
        if i > 0 {
            g.add_edge(format!("n{}", i - 1), format!("n{i}"));
        }
    }
    g.set_entry_point("n0")
        .add_exit_point(format!("n{}", nodes - 1))
        .snapshots(policy);
}

fn w(state: State, ctx: NodeContext) -> workflows::BoxFuture<'static, Result<State, BoxError>> {
    Box::pin(w_node(state, ctx))
}

fn grow(state: State, ctx: NodeContext) -> workflows::BoxFuture<'static, Result<State, BoxError>> {
    Box::pin(grow_node(state, ctx))
}

fn registry() -> Result<Registry, Fail> {
    let mut registry = Registry::new();
    let defs = [
        WorkflowDef::new("w-full", "W, whole snapshots", |g, _, _| {
            Box::pin(async move {
                chain(g, 10, SnapshotPolicy::Full, w);
                Ok(State::new().with("counter", 0))
            })
        }),
        WorkflowDef::new("w-updates", "W, updates", |g, _, _| {
            Box::pin(async move {
                chain(g, 10, SnapshotPolicy::Updates, w);
                Ok(State::new().with("counter", 0))
            })
        }),
        WorkflowDef::new("grow-full", "growing, whole snapshots", |g, _, _| {
            Box::pin(async move {
                chain(g, 50, SnapshotPolicy::Full, grow);
                Ok(State::new().with("messages", json!([])))
            })
        }),
        WorkflowDef::new("grow-updates", "growing, updates", |g, _, _| {
            Box::pin(async move {
                chain(g, 50, SnapshotPolicy::Updates, grow);
                Ok(State::new().with("messages", json!([])))
            })
        }),
    ];
    for def in defs {
        registry.register(def)?;
    }
    Ok(registry)
}

#[derive(QueryableByName)]
struct Bytes {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    bytes: i64,
}

#[derive(QueryableByName)]
struct Lsn {
    #[diesel(sql_type = diesel::sql_types::Text)]
    lsn: String,
}

async fn bytes(conn: &mut AsyncPgConnection, query: String) -> Result<i64, Fail> {
    let row: Bytes = diesel::sql_query(query).get_result(conn).await?;
    Ok(row.bytes)
}

async fn wal_lsn(conn: &mut AsyncPgConnection) -> Result<String, Fail> {
    let row: Lsn = diesel::sql_query("SELECT pg_current_wal_lsn()::text AS lsn")
        .get_result(conn)
        .await?;
    Ok(row.lsn)
}

/// Per run: WAL bytes, the stage rows' stored bytes, the `stages` relation's growth, and the
/// seconds the runs took.
struct Cost {
    wal: f64,
    rows: f64,
    relation: f64,
    seconds: f64,
}

async fn measure(
    executor: &Executor,
    conn: &mut AsyncPgConnection,
    workflow: &str,
    runs: usize,
) -> Result<Cost, Fail> {
    conn.batch_execute("CHECKPOINT").await?;
    let relation_before = bytes(
        conn,
        "SELECT pg_total_relation_size('stages') AS bytes".into(),
    )
    .await?;
    let lsn_before = wal_lsn(conn).await?;
    let started = Instant::now();
    let mut ids: Vec<RunId> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let run = executor.run(workflow, json!({})).await?;
        if run.status != RunStatus::Completed {
            return Err(format!(
                "run {} ended {}: {:?}",
                run.id, run.status, run.error_message
            )
            .into());
        }
        ids.push(run.id);
    }
    let seconds = started.elapsed().as_secs_f64();
    let wal = bytes(
        conn,
        format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn_before}')::bigint AS bytes"),
    )
    .await?;
    conn.batch_execute("CHECKPOINT").await?;
    let relation_after = bytes(
        conn,
        "SELECT pg_total_relation_size('stages') AS bytes".into(),
    )
    .await?;
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let rows = bytes(
        conn,
        format!("SELECT coalesce(sum(pg_column_size(s.*)), 0)::bigint AS bytes FROM stages s WHERE run_id IN ({list})"),
    )
    .await?;
    let n = runs as f64;
    Ok(Cost {
        wal: wal as f64 / n,
        rows: rows as f64 / n,
        relation: (relation_after - relation_before) as f64 / n,
        seconds,
    })
}

#[tokio::main]
async fn main() -> Result<(), Fail> {
    let quick = std::env::args().any(|a| a == "--quick");
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL (./scripts/bench does)")?;
    let pool = DbConfig::new(url.clone())
        .max_connections(4)
        .connect()
        .await?;
    run_pending_migrations(&pool).await?;
    let executor = Executor::builder(pool, registry()?).build()?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    let (w_runs, grow_runs) = if quick { (100, 5) } else { (400, 20) };

    let mut w_rate = Vec::new();
    for (label, workflow, runs) in [
        ("workload W", "w", w_runs),
        ("50 steps growing 2 KB each", "grow", grow_runs),
    ] {
        // A warm-up run of each, then both storages measured back to back.
        for policy in ["full", "updates"] {
            executor
                .run(&format!("{workflow}-{policy}"), json!({}))
                .await?;
        }
        let mut costs = Vec::new();
        for policy in ["full", "updates"] {
            let cost = measure(&executor, &mut conn, &format!("{workflow}-{policy}"), runs).await?;
            costs.push(cost);
        }
        let (full, updates) = (&costs[0], &costs[1]);
        for (what, before, after) in [
            ("WAL bytes/run", full.wal, updates.wal),
            ("stages row bytes/run", full.rows, updates.rows),
            (
                "stages relation growth bytes/run",
                full.relation,
                updates.relation,
            ),
        ] {
            println!("storage: {label}, {what}, whole snapshots (before)\t{before:.0}");
            println!("storage: {label}, {what}, updates (now)\t{after:.0}");
            if before > 0.0 {
                println!(
                    "storage: {label}, {what}, now ÷ before\t{:.3}",
                    after / before
                );
            }
        }
        if workflow == "w" {
            w_rate = costs.iter().map(|c| runs as f64 / c.seconds).collect();
        }
    }
    println!(
        "storage: workload W runs/s c=1, whole snapshots (before)\t{:.1}",
        w_rate[0]
    );
    println!(
        "storage: workload W runs/s c=1, updates (now)\t{:.1}",
        w_rate[1]
    );
    println!(
        "storage: workload W runs/s c=1, now ÷ before\t{:.3}",
        w_rate[1] / w_rate[0]
    );
    executor.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
