//! Workload W (`bench/WORKLOAD.md`) through the real executor
//! and PostgreSQL recorder: a linear graph of 10 nodes, node i setting `k{i}` to a
//! 100-character string and incrementing `counter`, a checkpoint after every node.
//!
//! Prints one line per figure, `name<TAB>value`, for `scripts/bench` to tabulate; asserts
//! only that every run completed. Run it with `./scripts/bench` (a scratch database).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;
use workflows::db::run_pending_migrations;
use workflows::{
    BoxError, DbConfig, Executor, GraphBuilder, NodeContext, Params, Registry, RunStatus, Runtime,
    State, WorkflowDef,
};

mod support;

use support::proc_status_kib;

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

async fn workload_w(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    for i in 0..NODES {
        g.add_node(format!("n{i}"), node);
        if i > 0 {
            g.add_edge(format!("n{}", i - 1), format!("n{i}"));
        }
    }
    g.set_entry_point("n0")
        .add_exit_point(format!("n{}", NODES - 1));
    Ok(State::new().with("counter", 0))
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
    let pool = DbConfig::new(url).max_connections(16).connect().await?;
    run_pending_migrations(&pool).await?;
    let mut registry = Registry::new();
    registry.register(WorkflowDef::new("w", "workload W", |g, r, p| {
        Box::pin(workload_w(g, r, p))
    }))?;
    let executor = Executor::builder(pool, registry).build()?;

    for i in 0..5 {
        one_run(&executor, i).await?; // warm-up: connections, prepared statements
    }
    let mut c1 = Vec::new();
    let mut c8 = Vec::new();
    for _ in 0..repetitions {
        c1.push(throughput(&executor, sequential, 1).await?);
        c8.push(throughput(&executor, concurrent, 8).await?);
    }
    let (c1, c8) = (median(c1), median(c8));
    println!("workload W runs/s c=1\t{c1:.1}");
    println!("workload W runs/s c=8\t{c8:.1}");
    println!("workload W node steps/s c=1\t{:.0}", c1 * NODES as f64);
    println!("workload W node steps/s c=8\t{:.0}", c8 * NODES as f64);
    if let Some(kib) = proc_status_kib("VmHWM:") {
        println!("workload W peak RSS MiB\t{:.1}", kib as f64 / 1024.0);
    }
    executor.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
