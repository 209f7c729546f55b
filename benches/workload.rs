//! Workload W (`bench/WORKLOAD.md`) through the real executor
//! and PostgreSQL recorder: a linear graph of 10 nodes, node i setting `k{i}` to a
//! 100-character string and incrementing `counter`, a checkpoint after every node.
//!
//! Prints one line per figure, `name<TAB>value`, for `scripts/bench` to tabulate; asserts
//! only that every run completed. Run it with `./scripts/bench` (a scratch database).
//!
//! Beside runs/s it reports, per run, what each one cost: statements sent (counted by a
//! Diesel instrumentation on every connection), commits (write transactions: the server's
//! next transaction id, before and after), WAL bytes (`pg_current_wal_lsn()`), and this
//! process's CPU time per node step (`getrusage`): the same figures `scripts/bench` takes
//! of pgbench running f4.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};
use diesel::sql_types::{BigInt, Double};
use diesel_async::RunQueryDsl;

use serde_json::json;
use tokio::sync::Semaphore;
use workflows::db::run_pending_migrations;
use workflows::{
    BoxError, DbConfig, Executor, ExecutorConfig, GraphBuilder, NodeContext, Registry, RunStatus,
    State, WorkflowDef,
};

mod support;

use support::{proc_status_kib, server_cpu_micros};

type Fail = Box<dyn std::error::Error + Send + Sync>;

const NODES: usize = 10;

async fn node(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    let i = ctx.node().trim_start_matches('n');
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

/// W's graph, which does not depend on a run's params: built once, when it is registered,
/// as a user would register a graph like it (`WorkflowDef::built_once`).
fn workload_w(g: &mut GraphBuilder) -> Result<(), BoxError> {
    for i in 0..NODES {
        g.add_node(format!("n{i}"), node);
        if i > 0 {
            g.add_edge(format!("n{}", i - 1), format!("n{i}"));
        }
    }
    g.set_entry_point("n0")
        .add_exit_point(format!("n{}", NODES - 1));
    Ok(())
}

/// Every run of W starts from the same state, whatever its params.
fn initial_state(_: serde_json::Value) -> State {
    State::new().with("counter", 0)
}

async fn one_run(executor: &Executor, i: usize) -> Result<(), Fail> {
    let run = executor.run("w", json!({"run": i})).await?;
    if run.status != RunStatus::Completed {
        return Err(format!(
            "run {} ended {}: {:?}",
            run.id, run.status, run.error_message
        )
        .into());
    }
    Ok(())
}

/// Statements sent on every connection of this process.
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

struct StatementCounter;

impl Instrumentation for StatementCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            STATEMENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The CPU time this process's threads have run, in microseconds: the sum of their
/// `/proc/self/task/*/schedstat` (nanoseconds, unlike the 10 ms ticks of `/proc/self/stat`);
/// 0 off Linux.
fn cpu_micros() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    nanos as f64 / 1e3
}

#[derive(diesel::QueryableByName)]
struct ServerMark {
    /// The next transaction id the server will assign: how many write transactions have
    /// committed (or aborted) so far.
    #[diesel(sql_type = BigInt)]
    next_xid: i64,
    /// The WAL position, in bytes.
    #[diesel(sql_type = Double)]
    wal: f64,
}

/// What a phase cost, read before and after it.
#[derive(Clone, Copy)]
struct Mark {
    statements: u64,
    next_xid: i64,
    wal: f64,
    cpu_micros: f64,
    server_cpu_micros: Option<f64>,
}

async fn mark(pool: &workflows::Pool) -> Result<Mark, Fail> {
    let mut conn = pool.get().await?;
    let server: ServerMark = diesel::sql_query(
        "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid,
                pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS wal",
    )
    .get_result(&mut conn)
    .await?;
    // Counted after the query, so that it is not counted in the phase.
    Ok(Mark {
        statements: AtomicU64::load(&STATEMENTS, Ordering::Relaxed),
        next_xid: server.next_xid,
        wal: server.wal,
        cpu_micros: cpu_micros(),
        server_cpu_micros: server_cpu_micros(),
    })
}

/// Per run: statements, commits, WAL bytes; and the client's and the server's CPU per node step,
/// between two marks.
fn print_costs(label: &str, before: Mark, after: Mark, runs: usize) {
    let n = runs as f64;
    // The mark's own query is one statement, counted in `after`.
    let statements = (after.statements - before.statements - 1) as f64;
    println!("workload W statements/run {label}\t{:.1}", statements / n);
    println!(
        "workload W commits/run {label}\t{:.1}",
        (after.next_xid - before.next_xid) as f64 / n
    );
    println!(
        "workload W WAL bytes/run {label}\t{:.0}",
        (after.wal - before.wal) / n
    );
    println!(
        "workload W client CPU µs/node step {label}\t{:.1}",
        (after.cpu_micros - before.cpu_micros) / (n * NODES as f64)
    );
    if let (Some(before), Some(after)) = (before.server_cpu_micros, after.server_cpu_micros) {
        println!(
            "workload W server CPU µs/node step {label}\t{:.1}",
            (after - before) / (n * NODES as f64)
        );
    }
}

/// Runs per second, `runs` runs with at most `concurrency` in flight.
async fn throughput(executor: &Executor, runs: usize, concurrency: usize) -> Result<f64, Fail> {
    let slots = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(runs);
    for i in 0..runs {
        let permit = Arc::clone(&slots).acquire_owned().await?;
        let executor = executor.clone();
        tasks.push(tokio::spawn(async move {
            let result = one_run(&executor, i).await;
            drop(permit);
            result
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(runs as f64 / started.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Fail> {
    // `--server-cpu`: print the server's CPU time so far and stop, for `scripts/bench` to
    // measure the floor's phases as this measures the library's.
    if std::env::args().any(|a| a == "--server-cpu") {
        if let Some(micros) = server_cpu_micros() {
            println!("{micros:.0}");
        }
        return Ok(());
    }
    let quick = std::env::args().any(|a| a == "--quick");
    // `--once`: one repetition at full size, for `scripts/bench` to interleave with the floor's.
    let once = std::env::args().any(|a| a == "--once");
    let (sequential, concurrent, repetitions) = match (quick, once) {
        (true, _) => (40, 80, 1),
        (false, true) => (200, 400, 1),
        (false, false) => (200, 400, 3),
    };
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL (./scripts/bench does)")?;
    set_default_instrumentation(|| Some(Box::new(StatementCounter)))?;
    let pool = DbConfig::new(url).max_connections(16).connect().await?;
    run_pending_migrations(&pool).await?;
    let mut registry = Registry::new();
    registry.register(WorkflowDef::built_once(
        "w",
        "workload W",
        workload_w,
        initial_state,
    ))?;
    // Every node commit sent alone: the figures "c=1" and "c=8".
    let executor = Executor::builder(pool.clone(), registry.clone())
        .config(ExecutorConfig::default().group_commit(false))
        .build()?;
    // As configured by default, node commits of concurrent runs committed together: the
    // figures "c=8, group commit".
    let grouped = Executor::builder(pool.clone(), registry).build()?;

    for i in 0..5 {
        one_run(&executor, i).await?; // warm-up: connections, prepared statements
    }
    let mut c1 = Vec::new();
    let mut c8 = Vec::new();
    let mut c8_grouped = Vec::new();
    let mut costs = Vec::new();
    let mut grouped_costs = Vec::new();
    for _ in 0..repetitions {
        let start = mark(&pool).await?;
        c1.push(throughput(&executor, sequential, 1).await?);
        let between = mark(&pool).await?;
        c8.push(throughput(&executor, concurrent, 8).await?);
        costs.push((start, between, mark(&pool).await?));
        let before_grouped = mark(&pool).await?;
        c8_grouped.push(throughput(&grouped, concurrent, 8).await?);
        grouped_costs.push((before_grouped, mark(&pool).await?));
    }
    let (c1, c8, c8_grouped) = (median(c1), median(c8), median(c8_grouped));
    println!("workload W runs/s c=1\t{c1:.1}");
    println!("workload W runs/s c=8\t{c8:.1}");
    println!("workload W runs/s c=8, group commit\t{c8_grouped:.1}");
    // The costs of the last repetition: per run they hardly vary, unlike time.
    if let Some(&(start, between, end)) = costs.last() {
        print_costs("c=1", start, between, sequential);
        print_costs("c=8", between, end, concurrent);
    }
    if let Some(&(before, after)) = grouped_costs.last() {
        print_costs("c=8, group commit", before, after, concurrent);
    }
    println!("workload W node steps/s c=1\t{:.0}", c1 * NODES as f64);
    println!("workload W node steps/s c=8\t{:.0}", c8 * NODES as f64);
    if let Some(kib) = proc_status_kib("VmHWM:") {
        println!("workload W peak RSS MiB\t{:.1}", kib as f64 / 1024.0);
    }
    executor.shutdown(Duration::from_secs(5)).await;
    grouped.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
