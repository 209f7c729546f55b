//! Memory of runs in flight: 1,000 runs started through the executor, all waiting inside
//! their one node at once (as runs waiting on a model call do). Reports the resident memory
//! each adds (VmRSS while they wait, minus before they started, over 1,000), beside the
//! size of the state each carries.
//!
//! Prints `name<TAB>value` lines for `scripts/bench`; asserts only that every run completed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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

const RUNS: usize = 1_000;

/// Runs inside the node, and the gate that holds them there.
static INSIDE: AtomicUsize = AtomicUsize::new(0);
static GATE: Semaphore = Semaphore::const_new(0);

async fn wait(state: State, _: NodeContext) -> Result<State, BoxError> {
    INSIDE.fetch_add(1, Ordering::SeqCst);
    GATE.acquire().await?.forget();
    Ok(state)
}

async fn waiting(g: &mut GraphBuilder, _: &Runtime, p: Params) -> Result<State, BoxError> {
    g.add_node("wait", wait)
        .set_entry_point("wait")
        .add_exit_point("wait");
    let topic: String = p.require("topic")?;
    Ok(State::new().with("topic", topic))
}

#[tokio::main]
async fn main() -> Result<(), Fail> {
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL (./scripts/bench does)")?;
    let pool = DbConfig::new(url).max_connections(10).connect().await?;
    run_pending_migrations(&pool).await?;
    let mut registry = Registry::new();
    registry.register(WorkflowDef::new(
        "waiting",
        "one node that waits",
        |g, r, p| Box::pin(waiting(g, r, p)),
    ))?;
    let executor = Executor::builder(pool, registry).build()?;

    // Warm-up: connections opened, statements prepared, runtime threads started.
    GATE.add_permits(20);
    for i in 0..20 {
        executor
            .run("waiting", json!({"topic": format!("warm-up {i}")}))
            .await?;
    }
    INSIDE.store(0, Ordering::SeqCst);
    let before = proc_status_kib("VmRSS:").ok_or("no VmRSS in /proc/self/status")?;

    let mut tasks = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let executor = executor.clone();
        tasks.push(tokio::spawn(async move {
            executor
                .run("waiting", json!({"topic": format!("topic {i}")}))
                .await
        }));
    }
    while INSIDE.load(Ordering::SeqCst) < RUNS {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // let in-flight writes settle
    let during = proc_status_kib("VmRSS:").ok_or("no VmRSS")?;
    GATE.add_permits(RUNS);
    for task in tasks {
        let run = task.await??;
        if run.status != RunStatus::Completed {
            return Err(format!("run {} ended {}", run.id, run.status).into());
        }
    }
    let state_bytes = serde_json::to_vec(&State::new().with("topic", "topic 999"))?.len();
    println!(
        "in-flight memory per waiting run, KB (state {state_bytes} B)\t{:.1}\t50",
        during.saturating_sub(before) as f64 * 1.024 / RUNS as f64
    );
    println!(
        "in-flight RSS before / with {RUNS} waiting, MiB\t{:.1} / {:.1}",
        before as f64 / 1024.0,
        during as f64 / 1024.0
    );
    executor.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
