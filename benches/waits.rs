//! Durable waits: how soon an idle worker continues a run once it is answered, and what
//! runs waiting for an answer cost the worker that ran them.
//!
//! Latency: runs of a two-node workflow (`ask` asks a question, `done` reads the answer) wait
//! for their answer with an idle worker running; each is answered in turn, 20 ms apart, and
//! the figure is the time from the answer's commit (`interrupts.answered_at`) to the start
//! of the next node's stage (`stages.created_at`), both read off the database's clock, so no
//! polling of this process's own takes part. Memory: the worker's resident memory with 1,000
//! runs waiting, minus before they were submitted.
//!
//! Prints `name<TAB>value` lines for `scripts/bench`; asserts only that every run completed.

use std::time::Duration;

use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde_json::json;
use workflows::db::run_pending_migrations;
use workflows::{
    BoxError, DbConfig, Executor, GraphBuilder, NodeContext, Params, Pool, Registry, RunId,
    RunStatus, Runtime, State, Worker, WorkerConfig, WorkflowDef,
};

mod support;

use support::proc_status_kib;

type Fail = Box<dyn std::error::Error + Send + Sync>;

async fn asking(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    let ask = g.node("ask", |s: State, ctx: NodeContext| async move {
        ctx.interrupt("go", json!({"go?": true}))?;
        Ok(s)
    });
    let done = g.node("done", |s: State, ctx: NodeContext| async move {
        let go: Option<bool> = ctx.answer("go")?;
        Ok(s.with("go", go))
    });
    g.edge(ask, done).start_at(ask).end_at(done);
    Ok(State::new())
}

fn executor(pool: &Pool) -> Result<Executor, Fail> {
    let mut registry = Registry::new();
    registry.register(WorkflowDef::new(
        "bench-asking",
        "ask, then done",
        |g, r, p| Box::pin(asking(g, r, p)),
    ))?;
    Ok(Executor::builder(pool.clone(), registry).build()?)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// How many runs of the bench's workflow are in `status`.
async fn count(pool: &Pool, status: RunStatus) -> Result<i64, Fail> {
    let mut conn = pool.get().await?;
    let row: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM runs WHERE workflow_name = 'bench-asking' AND status = $1",
    )
    .bind::<diesel::sql_types::Text, _>(status.as_str())
    .get_result(&mut conn)
    .await?;
    Ok(row.n)
}

async fn until(pool: &Pool, status: RunStatus, n: i64) -> Result<(), Fail> {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while count(pool, status).await? < n {
        if std::time::Instant::now() > deadline {
            return Err(format!("fewer than {n} runs became {status}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Latency {
    #[diesel(sql_type = diesel::sql_types::Double)]
    p50: f64,
    #[diesel(sql_type = diesel::sql_types::Double)]
    p99: f64,
}

#[tokio::main]
async fn main() -> Result<(), Fail> {
    let quick = std::env::args().any(|a| a == "--quick");
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL (./scripts/bench does)")?;
    let pool = DbConfig::new(url).max_connections(10).connect().await?;
    run_pending_migrations(&pool).await?;
    let submitter = executor(&pool)?;
    let worker = Worker::new(executor(&pool)?, WorkerConfig::default().concurrency(8));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let working = tokio::spawn(async move {
        worker
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });

    // Memory: 1,000 runs waiting for an answer.
    let waiting_runs: i64 = 1_000;
    let before = proc_status_kib("VmRSS:").unwrap_or(0);
    let mut ids: Vec<RunId> = Vec::new();
    for _ in 0..waiting_runs {
        ids.push(submitter.submit("bench-asking", json!({}), None).await?.id);
    }
    until(&pool, RunStatus::Waiting, waiting_runs).await?;
    let with = proc_status_kib("VmRSS:").unwrap_or(0);

    // Latency: answered one at a time, each picked up by an idle worker.
    let probes = if quick { 50 } else { 200 };
    for id in ids.iter().take(probes) {
        submitter.answer(*id, "go", json!(true)).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until(&pool, RunStatus::Completed, i64::try_from(probes)?).await?;
    for id in ids.iter().skip(probes) {
        submitter.cancel(*id).await?;
    }
    let _ = stop.send(());
    working.await??;

    let mut conn = pool.get().await?;
    let latency: Latency = diesel::sql_query(
        "SELECT 1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY s.created_at - i.answered_at))::float8 AS p50,
                1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY s.created_at - i.answered_at))::float8 AS p99
           FROM interrupts i JOIN stages s ON s.run_id = i.run_id AND s.node_name = 'done'
          WHERE i.answered_at IS NOT NULL",
    )
    .get_result(&mut conn)
    .await?;
    diesel::sql_query("DELETE FROM runs WHERE workflow_name = 'bench-asking'")
        .execute(&mut conn)
        .await?;

    println!(
        "waits: answer to continued, idle worker, p50 ms\t{:.2}",
        latency.p50
    );
    println!(
        "waits: answer to continued, idle worker, p99 ms\t{:.2}",
        latency.p99
    );
    println!(
        "waits: worker RSS before / with 1000 runs waiting for an answer, MiB\t{:.1} / {:.1}",
        before as f64 / 1024.0,
        with as f64 / 1024.0
    );
    Ok(())
}
