//! Claiming, recovery checks, pruning and listing with a million runs in the table, each
//! measured with and without the index that serves it. Prints figures; asserts nothing.
//!
//! Run it with `./scripts/measure-indexes` (a scratch database; `--quick` seeds 100,000 runs).

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use workflows::db::Migrator;
use workflows::{
    BoxError, DbConfig, Executor, GraphBuilder, PageConfig, PageRequest, Params, Registry,
    Retention, RunFilters, Runtime, State, Worker, WorkerConfig, WorkflowDef, repository,
    retention,
};

type Fail = Box<dyn std::error::Error>;

async fn one_node(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    g.add_node("only", |s: State, _| async move { Ok(s) })
        .set_entry_point("only")
        .add_exit_point("only");
    Ok(State::new())
}

/// p50 and p99 of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.50), at(0.99))
}

async fn seed(conn: &mut AsyncPgConnection, runs: u32) -> Result<(), Fail> {
    conn.batch_execute("TRUNCATE runs CASCADE").await?;
    // Finished runs spread over the past month, mixed workflows and statuses.
    conn.batch_execute(&format!(
        "INSERT INTO runs (workflow_name, status, params, started_at, completed_at, created_at, updated_at)
         SELECT (ARRAY['summarize','reasoning','classify','chain'])[1 + i % 4],
                (ARRAY['completed','completed','completed','failed','cancelled'])[1 + i % 5],
                '{{}}'::jsonb, ts, ts + interval '2 seconds', ts, ts + interval '2 seconds'
           FROM (SELECT i, now() - (i * interval '2592000 seconds' / {runs}) AS ts
                   FROM generate_series(1, {runs}) AS i) AS s"
    ))
    .await?;
    // A live queue: runs other workers hold, with unexpired leases, and a backlog of pending
    // runs of the benchmark's workflow (one in twenty), oldest first.
    conn.batch_execute(&format!(
        "INSERT INTO runs (workflow_name, status, started_at, owner, lease_token, lease_expires_at, submitted_by_library)
         SELECT 'chain', 'running', now(), 'elsewhere', gen_random_uuid(), now() + interval '1 hour', true
           FROM generate_series(1, 200);
         INSERT INTO runs (workflow_name, status, created_at, submitted_by_library)
         SELECT 'bench-one', 'pending', now() - interval '1 hour' + i * interval '1 millisecond', true
           FROM generate_series(1, {backlog}) AS i;
         ANALYZE runs;",
        backlog = runs / 20
    ))
    .await?;
    Ok(())
}

struct Figures {
    rows: Vec<(String, f64, f64)>,
}

impl Figures {
    fn add(&mut self, name: &str, samples: Vec<Duration>) {
        let (p50, p99) = percentiles(samples);
        println!("{name:<58} p50 {p50:>8.2} ms   p99 {p99:>8.2} ms");
        self.rows.push((name.to_owned(), p50, p99));
    }
}

/// Claims the oldest pending run, one at a time (each then runs to its end, untimed).
async fn claims(worker: &Worker, n: usize) -> Result<Vec<Duration>, Fail> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let claimed = worker.fill().await?;
        samples.push(started.elapsed());
        assert_eq!(claimed, 1, "a pending run was claimed");
        while worker.free_slots() == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(samples)
}

async fn prunes(conn: &mut AsyncPgConnection, n: usize) -> Result<Vec<Duration>, Fail> {
    // Nothing is older than a year: the common case, a prune with nothing to do.
    let year = Retention::default()
        .runs_after(Duration::from_secs(365 * 86_400))
        .checkpoints_after(Duration::from_secs(365 * 86_400));
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        retention::prune_batch(conn, &year).await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

async fn lists(conn: &mut AsyncPgConnection, query: &str, n: usize) -> Result<Vec<Duration>, Fail> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        repository::list_runs(
            conn,
            &PageConfig::default(),
            PageRequest::from_query(query)?,
            &RunFilters::from_query(query)?,
        )
        .await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

#[tokio::main]
async fn main() -> Result<(), Fail> {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs: u32 = if quick { 100_000 } else { 1_000_000 };
    let n = if quick { 30 } else { 100 };
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL (./scripts/measure-indexes does)")?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    Migrator::new(AsyncPgConnection::establish(&url).await?)
        .run_pending()
        .await?;
    println!(
        "seeding {runs} finished runs, 200 leased running ones and a backlog of {} pending...",
        runs / 20
    );
    let seeding = Instant::now();
    seed(&mut conn, runs).await?;
    println!("seeded in {:.1} s\n", seeding.elapsed().as_secs_f64());

    let pool = DbConfig::new(url.clone()).connect().await?;
    let mut registry = Registry::new();
    registry.register(WorkflowDef::new("bench-one", "one node", |g, r, p| {
        Box::pin(one_node(g, r, p))
    }))?;
    let executor = Executor::builder(pool, registry).build()?;
    let worker = Worker::new(
        executor.clone(),
        WorkerConfig::default().concurrency(1).listen(false),
    );
    let mut figures = Figures { rows: Vec::new() };

    figures.add(
        "claim one pending run (worker fill: recovery check + claim)",
        claims(&worker, n).await?,
    );
    figures.add("prune batch, nothing due", prunes(&mut conn, n).await?);
    figures.add(
        "list runs, first page, newest first, exact total",
        lists(&mut conn, "", n.min(20)).await?,
    );
    figures.add(
        "list runs, first page, status=failed",
        lists(&mut conn, "status=failed", n.min(20)).await?,
    );

    // The same operations without the indexes that serve them: dropped (their definitions
    // kept from the catalog), measured, and created again.
    let indexes = ["idx_runs_pending", "idx_runs_lease", "idx_runs_finished"];
    let mut definitions = Vec::new();
    for index in indexes {
        definitions.push(index_definition(&mut conn, index).await?);
        conn.batch_execute(&format!("DROP INDEX {index}")).await?;
    }
    println!("\nwithout {}:", indexes.join(", "));
    figures.add(
        "claim one pending run, without the indexes",
        claims(&worker, n).await?,
    );
    figures.add(
        "prune batch, nothing due, without the indexes",
        prunes(&mut conn, n).await?,
    );
    for definition in definitions {
        conn.batch_execute(&definition).await?;
    }
    Ok(())
}

/// `CREATE INDEX ...` for an existing index, from the catalog.
async fn index_definition(conn: &mut AsyncPgConnection, index: &str) -> Result<String, Fail> {
    #[derive(diesel::QueryableByName)]
    struct Definition {
        #[diesel(sql_type = diesel::sql_types::Text)]
        definition: String,
    }
    use diesel_async::RunQueryDsl;
    let found: Definition =
        diesel::sql_query("SELECT pg_get_indexdef(to_regclass($1)) AS definition")
            .bind::<diesel::sql_types::Text, _>(index)
            .get_result(conn)
            .await?;
    Ok(found.definition)
}
