//! Leases: which executor holds a running run, until when, and the statements that take,
//! renew and take over a lease.
//!
//! A running run carries an owner, a lease token and a lease expiry. Every write the owner
//! makes for the run is conditional on the token still being the run's (see the recorder),
//! so an executor that lost its lease (it paused, or lost the database, for longer than the
//! lease) writes nothing more. Expiry is reckoned by the database's clock, never a worker's.

use std::time::Duration;

use diesel::dsl::{case_when, exists};
use diesel::pg::data_types::PgInterval;
use diesel::prelude::*;
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::atomic_statement::AtomicStatement;
use crate::error::{Error, Result};
use crate::lifecycle::refusal;
use crate::model::{Run, RunId, RunStatus, StageStatus};
use crate::params::Params;
use crate::schema::{runs, stages};

use RunStatus::{Cancelled, Failed, Pending, Running};

diesel::define_sql_function! {
    /// The database's current time (the transaction's start), typed as a timestamp with
    /// time zone so that intervals can be added to it.
    #[sql_name = "now"]
    fn db_now() -> Timestamptz;
}

diesel::operator_allowed!(db_now, Add, add);
diesel::operator_allowed!(db_now, Sub, sub);

diesel::define_sql_function! {
    /// A random UUID, made by the database: a fresh lease token per row.
    fn gen_random_uuid() -> SqlUuid;
}

/// What a stage left `started` by a stopped attempt is marked with when its run resumes or
/// is taken over.
const INTERRUPTED: &str = "interrupted: the run stopped while this node was executing";

/// The run `seen` still as it was seen: running, its lease expired, taken over as often.
/// Of two workers acting on it at once, only one finds it so.
macro_rules! still_as_seen {
    ($seen:expr) => {
        runs::table
            .find($seen.run_id)
            .filter(runs::status.eq(Running))
            .filter(runs::lease_expires_at.lt(db_now().nullable()))
            .filter(runs::recoveries.eq($seen.recoveries))
    };
}

/// Marks the stages of run `$id` left `started` as `failed` (interrupted), if `$condition`
/// (a query on `runs`) finds a row: a part of the statement that resumes or ends the run.
macro_rules! close_interrupted {
    ($id:expr, $condition:expr) => {
        diesel::update(
            stages::table
                .filter(stages::run_id.eq($id))
                .filter(stages::status.eq(StageStatus::Started))
                .filter(exists($condition)),
        )
        .set((
            stages::status.eq(StageStatus::Failed),
            stages::error_message.eq(INTERRUPTED),
        ))
    };
}

/// The columns that give a run to `$owner` under a fresh lease lasting `$lease`: a new
/// token, a heartbeat now, an expiry by the database's clock.
macro_rules! new_lease {
    ($owner:expr, $lease:expr) => {
        (
            runs::owner.eq($owner),
            runs::lease_token.eq(gen_random_uuid().nullable()),
            runs::heartbeat_at.eq(db_now().nullable()),
            runs::lease_expires_at.eq((db_now() + interval($lease)).nullable()),
        )
    };
}

/// The hold an executor has on a running run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Lease {
    pub(crate) run_id: RunId,
    pub(crate) token: Uuid,
}

/// How long a lease lasts, as a PostgreSQL interval.
fn interval(lease: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX))
}

/// A run with the token its statement just gave it.
fn leased((run, token): (Run, Option<Uuid>)) -> Result<(Run, Lease)> {
    let token = token.ok_or_else(|| Error::Value {
        container: "run",
        key: run.id.to_string(),
        reason: "was leased without a token".to_owned(),
    })?;
    let lease = Lease {
        run_id: run.id,
        token,
    };
    Ok((run, lease))
}

/// Inserts a run to execute right here: `running`, leased to `owner`. It is never visible
/// as `pending`, so no worker can claim it first.
pub(crate) async fn insert_running(
    conn: &mut AsyncPgConnection,
    workflow: &str,
    params: &Params,
    owner: &str,
    lease: Duration,
) -> Result<(Run, Lease)> {
    let row = diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq(workflow),
            runs::status.eq(Running),
            runs::params.eq(params.to_value()),
            runs::started_at.eq(db_now().nullable()),
            new_lease!(owner, lease),
        ))
        .returning((Run::as_returning(), runs::lease_token))
        .get_result(conn)
        .await?;
    leased(row)
}

/// Inserts a `pending` run for a worker to claim. With an idempotency key, a second call
/// with the same key returns the first run instead of creating another; the same key with
/// another workflow or other params is [`Error::InvalidInput`].
pub(crate) async fn insert_pending(
    conn: &mut AsyncPgConnection,
    workflow: &str,
    params: &Params,
    key: Option<&str>,
) -> Result<Run> {
    let params = params.to_value();
    let inserted = diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq(workflow),
            runs::status.eq(Pending),
            runs::params.eq(&params),
            runs::idempotency_key.eq(key),
        ))
        .on_conflict(runs::idempotency_key)
        .do_nothing()
        .returning(Run::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    if let Some(run) = inserted {
        return Ok(run);
    }
    // Only a key can conflict: the run it names already exists.
    let key = key.unwrap_or_default();
    let existing = runs::table
        .filter(runs::idempotency_key.eq(key))
        .select(Run::as_select())
        .first(conn)
        .await?;
    if existing.workflow_name == workflow && existing.params.as_ref() == Some(&params) {
        Ok(existing)
    } else {
        Err(Error::invalid_input(
            "idempotency key",
            key,
            format_args!(
                "already used by run {} of workflow {:?} with other params; use a new key for a new run",
                existing.id, existing.workflow_name
            ),
        ))
    }
}

/// Claims up to `limit` pending runs of `workflows`, oldest first, for `owner`. Rows another
/// worker is claiming at the same moment are skipped, not waited for.
pub(crate) async fn claim_pending(
    conn: &mut AsyncPgConnection,
    workflows: &[String],
    owner: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<(Run, Lease)>> {
    let pending = diesel::alias!(runs as pending);
    let oldest = pending
        .select(pending.field(runs::id))
        .filter(pending.field(runs::status).eq(Pending))
        .filter(pending.field(runs::workflow_name).eq_any(workflows))
        .order_by(pending.field(runs::created_at).asc())
        .limit(limit)
        .for_update()
        .skip_locked();
    let rows: Vec<(Run, Option<Uuid>)> =
        diesel::update(runs::table.filter(runs::id.eq_any(oldest)))
            .set((
                runs::status.eq(Running),
                runs::started_at.eq(db_now().nullable()),
                new_lease!(owner, lease),
            ))
            .returning((Run::as_returning(), runs::lease_token))
            .get_results(conn)
            .await?;
    rows.into_iter().map(leased).collect()
}

/// A running run whose lease expired, and how often it was taken over already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expired {
    pub(crate) run_id: RunId,
    pub(crate) recoveries: i32,
    /// Handed back by a stopping worker ([`release`]) rather than lost: taking it over is
    /// not a recovery.
    pub(crate) released: bool,
}

/// Up to `limit` running runs of `workflows` whose lease expired, longest expired first.
pub(crate) async fn expired(
    conn: &mut AsyncPgConnection,
    workflows: &[String],
    limit: i64,
) -> Result<Vec<Expired>> {
    let rows: Vec<(RunId, i32, bool)> = runs::table
        .filter(runs::status.eq(Running))
        .filter(runs::workflow_name.eq_any(workflows))
        .filter(runs::lease_expires_at.lt(db_now().nullable()))
        .order_by(runs::lease_expires_at.asc())
        .select((runs::id, runs::recoveries, runs::owner.is_null()))
        .limit(limit)
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(run_id, recoveries, released)| Expired {
            run_id,
            recoveries,
            released,
        })
        .collect())
}

/// Takes over an expired run for `owner`: a new token and lease, one more recovery (unless
/// the run was released rather than lost), and the stages its former owner left `started`
/// marked `failed`. Conditional on the run being as
/// `seen` (still running, still expired, recovered as often): of two workers taking over at
/// once, one gets it and the other `None`.
pub(crate) async fn take_over(
    conn: &mut AsyncPgConnection,
    seen: Expired,
    owner: &str,
    lease: Duration,
) -> Result<Option<(Run, Lease)>> {
    let close_interrupted = close_interrupted!(seen.run_id, still_as_seen!(seen));
    let take = diesel::update(still_as_seen!(seen))
        .set((
            new_lease!(owner, lease),
            runs::recoveries.eq(runs::recoveries
                + case_when::<_, _, diesel::sql_types::Integer>(runs::owner.is_null(), 0)
                    .otherwise(1)),
        ))
        .returning((Run::as_returning(), runs::lease_token));
    let row = AtomicStatement::new(take)
        .with(close_interrupted)
        .get_result(conn)
        .await
        .optional()?;
    row.map(leased).transpose()
}

/// Fails an expired run that has been taken over too often, if it is still as `seen`.
pub(crate) async fn give_up(
    conn: &mut AsyncPgConnection,
    seen: Expired,
    message: &str,
) -> Result<bool> {
    let close_interrupted = close_interrupted!(seen.run_id, still_as_seen!(seen));
    let fail = diesel::update(still_as_seen!(seen)).set((
        runs::status.eq(Failed),
        runs::error_message.eq(message),
        runs::completed_at.eq(db_now().nullable()),
    ));
    let written = AtomicStatement::new(fail)
        .with(close_interrupted)
        .execute(conn)
        .await?;
    Ok(written == 1)
}

/// `failed` or `cancelled` → `running` again, leased to `owner`, clearing the error and end
/// time; stages the interrupted attempt left `started` are marked `failed`.
pub(crate) async fn reopen(
    conn: &mut AsyncPgConnection,
    id: RunId,
    owner: &str,
    lease: Duration,
) -> Result<(Run, Lease)> {
    let resumable = runs::table
        .find(id)
        .filter(runs::status.eq_any([Failed, Cancelled]));
    let close_interrupted = close_interrupted!(id, resumable.clone());
    let reopen = diesel::update(resumable)
        .set((
            runs::status.eq(Running),
            runs::error_message.eq(None::<String>),
            runs::completed_at.eq(None::<chrono::DateTime<chrono::Utc>>),
            new_lease!(owner, lease),
        ))
        .returning((Run::as_returning(), runs::lease_token));
    let row = AtomicStatement::new(reopen)
        .with(close_interrupted)
        .get_result(conn)
        .await
        .optional()?;
    match row {
        Some(row) => leased(row),
        None => Err(refusal(conn, id, "resume").await),
    }
}

/// Extends the leases whose tokens are given, for runs still running; returns the tokens
/// that are still held. A token missing from the answer lost its run: it was cancelled,
/// ended, or taken over by another worker.
pub(crate) async fn renew(
    conn: &mut AsyncPgConnection,
    tokens: &[Uuid],
    lease: Duration,
) -> Result<Vec<Uuid>> {
    let held: Vec<Option<Uuid>> = diesel::update(
        runs::table
            .filter(runs::lease_token.eq_any(tokens))
            .filter(runs::status.eq(Running)),
    )
    .set((
        runs::heartbeat_at.eq(db_now().nullable()),
        runs::lease_expires_at.eq((db_now() + interval(lease)).nullable()),
    ))
    .returning(runs::lease_token)
    .get_results(conn)
    .await?;
    Ok(held.into_iter().flatten().collect())
}

/// Ends the leases with these tokens now, for runs still running, so that another worker
/// takes them over at once (without counting a recovery: the owner is cleared); returns the
/// runs released.
pub(crate) async fn release(conn: &mut AsyncPgConnection, tokens: &[Uuid]) -> Result<Vec<RunId>> {
    Ok(diesel::update(
        runs::table
            .filter(runs::lease_token.eq_any(tokens))
            .filter(runs::status.eq(Running)),
    )
    .set((
        runs::lease_expires_at.eq(db_now().nullable()),
        runs::owner.eq(None::<String>),
    ))
    .returning(runs::id)
    .get_results(conn)
    .await?)
}
