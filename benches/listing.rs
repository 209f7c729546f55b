//! Reading runs with a million of them in the table: the first page with its exact total,
//! filtered and sorted; a deep page by number and by cursor; one run; its stages.
//!
//! Seeds the runs with SQL (`INSERT ... SELECT generate_series`), then `VACUUM ANALYZE`s and
//! checkpoints, as autovacuum and the checkpointer would have done on a table that grew over
//! a month. Prints one line per figure,
//! `name<TAB>p50 ms<TAB>target ms`, for `scripts/bench`, and writes the plan of every measured
//! query (`EXPLAIN (ANALYZE, BUFFERS)`, the SQL Diesel sends, written out by hand) to the file
//! named by `PLANS` (default `target/bench/plans.md`). Asserts nothing.
//!
//! Run it with `./scripts/bench` (a scratch database); `--quick` seeds 100,000 runs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use workflows::db::Migrator;
use workflows::{PageConfig, PageRequest, RunCursor, RunFilters, RunId, RunStatus, repository};

type Fail = Box<dyn std::error::Error>;

/// One stage-ful run in this many: runs executed by this library have 10 stages each;
/// the others were recorded without stages (imported, or pruned).
const STAGED_EVERY: u32 = 20;

async fn seed(conn: &mut AsyncPgConnection, runs: u32) -> Result<(), Fail> {
    // Seeding is not what is measured: no per-row triggers (wake-up notifications) while it runs.
    conn.batch_execute("ALTER TABLE runs DISABLE TRIGGER USER")
        .await?;
    // A month of runs, newest last as they were inserted, a few per millisecond sharing a
    // created_at; eight workflows, one much more common; mostly completed, some failed or
    // cancelled, a live queue of running and pending runs at the newest end.
    conn.batch_execute(&format!(
        "INSERT INTO runs (workflow_name, status, params, result, error_message, started_at,
                           completed_at, created_at, updated_at)
         SELECT (ARRAY['summarize','summarize','summarize','reasoning','classify','chain',
                       'extract','translate','review','route'])[1 + (i * 7) % 10],
                st,
                jsonb_build_object('topic', 'topic ' || i),
                CASE WHEN st = 'completed' THEN jsonb_build_object('answer', 'answer ' || i) END,
                CASE WHEN st = 'failed' THEN 'node call_model failed: upstream timeout' END,
                ts + interval '5 milliseconds',
                CASE WHEN st IN ('completed','failed','cancelled') THEN ts + interval '2 seconds' END,
                ts, ts + interval '2 seconds'
           FROM (SELECT i,
                        date_trunc('milliseconds',
                                   now() - ({runs} - i) * interval '2592000 seconds' / {runs}) AS ts,
                        CASE WHEN i > {runs} - 200 THEN 'running'
                             WHEN i > {runs} - 2000 THEN 'pending'
                             ELSE (ARRAY['completed','completed','completed','completed','completed',
                                         'completed','completed','failed','failed','cancelled'])[1 + (i * 3) % 10]
                        END AS st
                   FROM generate_series(1, {runs}) AS i) AS s"
    ))
    .await?;
    conn.batch_execute(&format!(
        "INSERT INTO stages (run_id, node_name, iteration, status, input_snapshot,
                             output_snapshot, duration_ms, created_at)
         SELECT r.id, 'node' || n, n, 'completed', '{{\"counter\": 1}}', '{{\"counter\": 2}}', 100,
                r.created_at + n * interval '100 milliseconds'
           FROM (SELECT id, created_at, row_number() OVER () AS k FROM runs) AS r,
                generate_series(1, 10) AS n
          WHERE r.k % {STAGED_EVERY} = 0"
    ))
    .await?;
    conn.batch_execute("ALTER TABLE runs ENABLE TRIGGER USER")
        .await?;
    conn.batch_execute("VACUUM ANALYZE runs").await?;
    conn.batch_execute("VACUUM ANALYZE stages").await?;
    // A month-old table has long been written out: flush the seeding's dirty pages now, so
    // that the checkpointer does not compete with what is measured.
    conn.batch_execute("CHECKPOINT").await?;
    Ok(())
}

fn p50(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

async fn time<F>(n: usize, mut op: F) -> Result<f64, Fail>
where
    F: AsyncFnMut() -> Result<(), Fail>,
{
    op().await?; // warm-up: prepares the statements, as a long-lived pool has
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        op().await?;
        samples.push(started.elapsed());
    }
    Ok(p50(samples))
}

/// The columns `Run::as_select()` reads.
const RUN_COLUMNS: &str = "id, workflow_name, status, params, result, error_message, \
                           started_at, completed_at, created_at, updated_at";

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
    line: String,
}

#[derive(QueryableByName)]
struct Key {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
}

async fn explain(
    conn: &mut AsyncPgConnection,
    plans: &mut String,
    title: &str,
    sql: &str,
) -> Result<(), Fail> {
    let lines: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"))
        .load(conn)
        .await?;
    writeln!(plans, "### {title}\n\n```sql\n{sql}\n```\n\n```")?;
    for l in lines {
        writeln!(plans, "{}", l.line)?;
    }
    writeln!(plans, "```\n")?;
    Ok(())
}

struct Bench<'a> {
    conn: &'a mut AsyncPgConnection,
    n: usize,
    label: String,
}

impl Bench<'_> {
    fn report(&self, name: &str, ms: f64, target: Option<f64>) {
        let target = target.map(|t| format!("{t}")).unwrap_or_default();
        println!("{} ({}) p50 ms\t{ms:.2}\t{target}", name, self.label);
    }

    async fn list(&mut self, name: &str, query: &str, target: Option<f64>) -> Result<(), Fail> {
        let request = PageRequest::from_query(query)?;
        let filters = RunFilters::from_query(query)?;
        let conn = &mut *self.conn;
        let ms = time(self.n, async || {
            repository::list_runs(conn, &PageConfig::default(), request.clone(), &filters).await?;
            Ok(())
        })
        .await?;
        self.report(name, ms, target);
        Ok(())
    }

    async fn keyset(
        &mut self,
        name: &str,
        query: &str,
        after: Option<RunCursor>,
    ) -> Result<(), Fail> {
        let request = PageRequest::from_query(query)?;
        let filters = RunFilters::from_query(query)?;
        let conn = &mut *self.conn;
        let ms = time(self.n, async || {
            repository::list_runs_keyset(
                conn,
                &PageConfig::default(),
                request.clone(),
                &filters,
                after.as_ref(),
            )
            .await?;
            Ok(())
        })
        .await?;
        self.report(name, ms, Some(5.0));
        Ok(())
    }

    /// The cursor a client paging through `query`'s order holds after its `position`-th
    /// run, made from that run (found with one offset read) instead of `position` reads.
    async fn cursor_at(&mut self, query: &str, position: i64) -> Result<RunCursor, Fail> {
        let request = PageRequest {
            page: position,
            page_size: 1,
            ..PageRequest::from_query(query)?
        };
        let filters = RunFilters::from_query(query)?;
        let page =
            repository::list_runs(self.conn, &PageConfig::default(), request, &filters).await?;
        let run = <[_]>::first(&page.data).ok_or("the table holds fewer runs")?;
        let text = if query.contains("sort=id") {
            format!("asc.id.{}", run.id)
        } else {
            let micros = run.created_at.timestamp_micros();
            format!("desc.created_at.{micros}.{}", run.id)
        };
        Ok(text.parse()?)
    }
}

#[tokio::main]
async fn main() -> Result<(), Fail> {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs: u32 = if quick { 100_000 } else { 1_000_000 };
    let n = if quick { 15 } else { 50 };
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL (./scripts/bench does)")?;
    let plans_path = std::env::var("PLANS").unwrap_or_else(|_| "target/bench/plans.md".to_owned());
    Migrator::new(AsyncPgConnection::establish(&url).await?)
        .run_pending()
        .await?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    eprintln!("listing: seeding {runs} runs, 1 in {STAGED_EVERY} with 10 stages");
    let seeding = Instant::now();
    seed(&mut conn, runs).await?;
    eprintln!(
        "listing: seeded and vacuumed in {:.0} s",
        seeding.elapsed().as_secs_f64()
    );
    // Read as an application would: on a connection of its own, not the one that seeded
    // (whose backend the bulk load left slower at counting).
    drop(conn);
    let mut conn = AsyncPgConnection::establish(&url).await?;

    let label = if quick { "100k runs" } else { "1M runs" };
    let mut b = Bench {
        conn: &mut conn,
        n,
        label: label.to_owned(),
    };
    b.list("first page + exact total, newest first", "", Some(50.0))
        .await?;
    b.list(
        "first page + exact total, status=failed",
        "status=failed",
        Some(50.0),
    )
    .await?;
    b.list(
        "first page + exact total, workflow_name=classify",
        "workflow_name=classify",
        Some(50.0),
    )
    .await?;
    b.list("first page + exact total, sort=id", "sort=id", Some(50.0))
        .await?;
    b.list("page 5000 by number + exact total", "page=5000", None)
        .await?;
    b.keyset("cursor page, first", "", None).await?;
    let deep = i64::from(runs) * 9 / 10;
    let cursor = b.cursor_at("", deep).await?;
    b.keyset("cursor page at 90%, newest first", "", Some(cursor))
        .await?;
    let failed_deep = b.cursor_at("status=failed", deep / 5).await?;
    b.keyset(
        "cursor page at 90%, status=failed",
        "status=failed",
        Some(failed_deep),
    )
    .await?;
    let id_deep = b.cursor_at("sort=id", deep).await?;
    b.keyset("cursor page at 90%, sort=id", "sort=id", Some(id_deep))
        .await?;

    // A run with stages, from the middle of the table.
    let staged: Key = diesel::sql_query(format!(
        "SELECT run_id AS id FROM stages ORDER BY run_id LIMIT 1 OFFSET {}",
        runs / STAGED_EVERY * 5
    ))
    .get_result(b.conn)
    .await?;
    let staged = RunId::from_uuid(staged.id);
    let conn = &mut *b.conn;
    let ms = time(n * 4, async || {
        repository::find_run(conn, staged).await?;
        Ok(())
    })
    .await?;
    b.report("find_run", ms, Some(2.0));
    let conn = &mut *b.conn;
    let ms = time(n * 4, async || {
        let stages = repository::stages(conn, staged).await?;
        assert_eq!(stages.len(), 10);
        Ok(())
    })
    .await?;
    b.report("get_stages (10 stages)", ms, Some(2.0));

    // The plans behind the figures.
    let mut plans = format!(
        "# Query plans at {label}\n\nWritten by `benches/listing.rs` (`./scripts/bench`), after \
         seeding and `VACUUM ANALYZE`. The SQL is what Diesel sends, with the parameters \
         written in.\n\n"
    );
    // The cursors' keys, as SQL literals.
    let key = |c: &RunCursor| -> Result<(String, String), Fail> {
        let text = c.to_string();
        let parts: Vec<&str> = text.split('.').collect();
        let id = parts.last().ok_or("cursor")?.to_string();
        let at = match parts.get(2).and_then(|m| m.parse().ok()) {
            Some(micros) if parts.len() == 4 => chrono::DateTime::from_timestamp_micros(micros)
                .ok_or("cursor")?
                .to_rfc3339(),
            _ => String::new(),
        };
        Ok((at, id))
    };
    let (ts, id) = key(&cursor)?;
    let (fts, fid) = key(&failed_deep)?;
    let (_, id_after) = key(&id_deep)?;
    let failed = RunStatus::Failed;
    for (title, sql) in [
        (
            "exact total, unfiltered",
            "SELECT COUNT(*) FROM runs".to_owned(),
        ),
        (
            "first page, newest first",
            format!(
                "SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET 0"
            ),
        ),
        (
            "exact total, status=failed",
            format!("SELECT COUNT(*) FROM runs WHERE status = '{failed}'"),
        ),
        (
            "first page, status=failed",
            format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE status = '{failed}' ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET 0"
            ),
        ),
        (
            "exact total, workflow_name=classify",
            "SELECT COUNT(*) FROM runs WHERE workflow_name = 'classify'".to_owned(),
        ),
        (
            "first page, sort=id",
            format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY id ASC LIMIT 20 OFFSET 0"),
        ),
        (
            "page 5000 by number",
            format!(
                "SELECT {RUN_COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET 99980"
            ),
        ),
        (
            "cursor page at 90%, newest first",
            format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE created_at <= '{ts}' AND (created_at < '{ts}' OR id < '{id}') ORDER BY created_at DESC, id DESC LIMIT 21"
            ),
        ),
        (
            "cursor page at 90%, status=failed",
            format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'failed' AND created_at <= '{fts}' AND (created_at < '{fts}' OR id < '{fid}') ORDER BY created_at DESC, id DESC LIMIT 21"
            ),
        ),
        (
            "cursor page at 90%, sort=id",
            format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE id > '{id_after}' ORDER BY id ASC LIMIT 21"
            ),
        ),
        (
            "find_run",
            format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = '{staged}' LIMIT 1"),
        ),
        (
            "get_stages",
            format!(
                "SELECT id, run_id, node_name, iteration, status, input_snapshot, output_snapshot, duration_ms, error_message, created_at FROM stages WHERE run_id = '{staged}' ORDER BY created_at ASC, iteration ASC, id ASC"
            ),
        ),
    ] {
        explain(b.conn, &mut plans, title, &sql).await?;
    }
    if let Some(dir) = std::path::Path::new(&plans_path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&plans_path, plans)?;
    eprintln!("listing: plans written to {plans_path}");
    Ok(())
}
