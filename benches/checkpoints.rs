//! Checkpoints of 1 KB, 100 KB and 1 MB states through [`PgCheckpointStore`]: p50 of a save
//! and of a load, and how much the `checkpoints` table (with its TOAST table and index) grows
//! per run that keeps one.
//!
//! The state is one string of pseudo-random letters and digits: text that compresses about as
//! badly as model output does, so TOAST compression does not flatter the figures. Prints
//! `name<TAB>value` lines for `scripts/bench`; asserts only that a load returns what was saved.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use workflows::db::Migrator;
use workflows::{DbConfig, PgCheckpointStore, RunId, State};

type Fail = Box<dyn std::error::Error>;

/// `len` pseudo-random letters and digits (a fixed-seed xorshift: the same text every time).
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

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
}

#[derive(QueryableByName)]
struct Size {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    bytes: i64,
}

async fn new_runs(conn: &mut AsyncPgConnection, n: usize) -> Result<Vec<RunId>, Fail> {
    let rows: Vec<Row> = diesel::sql_query(format!(
        "INSERT INTO runs (workflow_name, status) SELECT 'bench', 'failed' FROM generate_series(1, {n}) RETURNING id"
    ))
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| RunId::from_uuid(r.id)).collect())
}

async fn checkpoints_size(conn: &mut AsyncPgConnection) -> Result<i64, Fail> {
    // (Failed runs: the store saves the checkpoints of runs nobody executes.)
    // Freshly written pages are counted once they are flushed to the relation's files.
    conn.batch_execute("CHECKPOINT").await?;
    let size: Size = diesel::sql_query("SELECT pg_total_relation_size('checkpoints') AS bytes")
        .get_result(conn)
        .await?;
    Ok(size.bytes)
}

fn p50_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Fail> {
    let quick = std::env::args().any(|a| a == "--quick");
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL (./scripts/bench does)")?;
    Migrator::new(AsyncPgConnection::establish(&url).await?)
        .run_pending()
        .await?;
    let pool = DbConfig::new(url.clone()).connect().await?;
    let store = PgCheckpointStore::new(pool);
    let mut conn = AsyncPgConnection::establish(&url).await?;

    for (label, bytes, runs) in [
        ("1 KB", 1_000, if quick { 100 } else { 400 }),
        ("100 KB", 100_000, if quick { 30 } else { 100 }),
        ("1 MB", 1_000_000, if quick { 10 } else { 30 }),
    ] {
        let ids = new_runs(&mut conn, runs).await?;
        let before = checkpoints_size(&mut conn).await?;
        let (mut saves, mut loads) = (Vec::new(), Vec::new());
        for (i, &id) in ids.iter().enumerate() {
            let mut state = State::new().with("document", text(bytes, i as u64 + 1));
            state.set_checkpoint("write", 1);
            let started = Instant::now();
            store.save(id, &state).await?;
            saves.push(started.elapsed());
            let started = Instant::now();
            let loaded = store.get(id).await?;
            loads.push(started.elapsed());
            if loaded.as_ref() != Some(&state) {
                return Err(format!("the {label} checkpoint of {id} did not round-trip").into());
            }
        }
        let growth = (checkpoints_size(&mut conn).await? - before) as f64 / runs as f64;
        println!(
            "checkpoint save, {label} state, p50 ms\t{:.2}",
            p50_ms(saves)
        );
        println!(
            "checkpoint load, {label} state, p50 ms\t{:.2}",
            p50_ms(loads)
        );
        println!(
            "checkpoints table growth per run, {label} state, KB\t{:.1}",
            growth / 1000.0
        );
    }
    Ok(())
}
