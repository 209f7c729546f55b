//! Every change of a run's status, and the leases that go with them: the one module that
//! writes `runs.status` (the journal's node commits take their run's end from here too).
//!
//! Every transition names the statuses it may start from in its `WHERE` clause, so the check
//! and the change are one atomic step: of two writers racing to change one run, exactly one
//! wins, and the other gets [`Error::InvalidStatus`] (400) naming the status it found.
//!
//! ```text
//! pending ──claim──▶ running ──complete──▶ completed
//!    │                 │  └──────fail────▶ failed ────┐
//!    └─────cancel──────┴──────cancel─────▶ cancelled ─┴─resume─▶ running
//! ```
//!
//! **Leases.** A running run carries an owner, a lease token and a lease expiry. Every write
//! the owner makes for the run starts by locking the run's row under its token (see
//! [`fence`](super::fence)), so an executor that lost its lease (it paused, or lost the
//! database, for longer than the lease) writes nothing more. Expiry is reckoned by the
//! database's clock, never a worker's. The statements that give a run to a new owner (a
//! takeover, a resume, giving up on a run) are rare, and each is a short transaction that
//! first locks the run's row: a node commit in flight finishes before them, and they then
//! see everything it wrote.
//!
//! The transitions into `running` and the ends of a running run belong to the executor
//! holding its lease; anyone may cancel a run ([`cancel_run`]) or delete a finished one
//! ([`delete_run`]), each one statement that locks the run's row: a node commit in flight
//! finishes first, and its executor's next write is refused.

use std::time::Duration;

use diesel::dsl::{case_when, exists};
use diesel::pg::data_types::PgInterval;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::atomic_statement::{AtomicStatement, StaticShape, static_shape};
use super::fence::{ANSWERED, HELD_RUN, answered, held_run};
use super::lease::Lease;
use super::rows::RunRow;
use super::schema::{checkpoints, interrupts, messages, runs, stages};
use super::sql_functions::{clock_timestamp, db_now, gen_random_uuid, statement_timestamp};
use crate::error::{Error, Result};
use crate::model::{AnswerSchema, RawJson, Run, RunId, RunStatus, StageStatus};
use crate::store::batched_commit::StartPart;

use RunStatus::{Cancelled, Completed, Failed, Pending, Running, Waiting};

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

/// The columns that give a run to `$owner` under a fresh lease lasting `$lease`: a new
/// token, a heartbeat now, an expiry by the database's clock.
macro_rules! new_lease {
    ($owner:expr, $lease:expr) => {
        (
            runs::owner.eq($owner),
            runs::lease_token.eq(gen_random_uuid().nullable()),
            runs::heartbeat_at.eq(clock_timestamp().nullable()),
            runs::lease_expires_at.eq((clock_timestamp() + interval($lease)).nullable()),
        )
    };
}

/// How long a lease lasts, as a PostgreSQL interval.
fn interval(lease: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX))
}

/// A run with the token its statement just gave it.
fn leased((run, token): (RunRow, Option<Uuid>)) -> Result<(Run, Lease)> {
    let run = Run::from(run);
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

/// A run about to be inserted by the executor that runs it: its id is chosen here (a random
/// UUID, as the database would choose), so that its state knows it before it is inserted.
#[derive(Debug)]
pub(crate) struct NewRun<'a> {
    pub(crate) id: RunId,
    pub(crate) workflow: &'a str,
    pub(crate) params: &'a serde_json::Value,
}

impl<'a> NewRun<'a> {
    pub(crate) fn random(workflow: &'a str, params: &'a serde_json::Value) -> Self {
        NewRun {
            id: RunId::from_uuid(Uuid::new_v4()),
            workflow,
            params,
        }
    }
}

/// `new`, with its first node's `started` stage, as its part of a group commit's batch: what
/// [`insert_running`] writes, owned.
pub(crate) fn start_part(
    new: &NewRun<'_>,
    (owner, lease): (&str, Duration),
    (node, input): (&str, &serde_json::Value),
) -> StartPart {
    StartPart {
        run_id: new.id,
        workflow: new.workflow.to_owned(),
        params: RawJson::from_value(new.params),
        owner: owner.to_owned(),
        lease_us: i64::try_from(lease.as_micros()).unwrap_or(i64::MAX),
        node: node.to_owned(),
        input: RawJson::from_value(input),
    }
}

/// Inserts a run to execute right here: `running`, leased to `owner` for `lease`. It is
/// never visible as `pending`, so no worker can claim it first. With `first_stage` (a node
/// and the state it starts from), that node's `started` stage is inserted by the same
/// statement.
pub(crate) async fn insert_running(
    conn: &mut AsyncPgConnection,
    new: &NewRun<'_>,
    (owner, lease): (&str, Duration),
    first_stage: Option<(&str, &serde_json::Value)>,
) -> Result<(Run, Lease)> {
    let run = diesel::insert_into(runs::table)
        .values((
            runs::id.eq(new.id),
            runs::workflow_name.eq(new.workflow),
            runs::status.eq(Running),
            runs::params.eq(new.params),
            runs::created_at.eq(statement_timestamp()),
            runs::started_at.eq(statement_timestamp().nullable()),
            runs::submitted_by_library.eq(true),
            new_lease!(owner, lease),
        ))
        .returning((RunRow::as_returning(), runs::lease_token));
    let row = match first_stage {
        None => run.get_result(conn).await?,
        // The stage is written first, but its foreign key is checked at the end of the
        // statement, when its run exists.
        Some((node, input)) => {
            let stage = diesel::insert_into(stages::table).values((
                stages::run_id.eq(new.id),
                stages::node_name.eq(node),
                stages::iteration.eq(1),
                stages::attempt.eq(1),
                stages::status.eq(StageStatus::Started),
                stages::input_snapshot.eq(input),
            ));
            AtomicStatement::new(run)
                .with(stage)
                .of_shape(RunWithFirstStage::SHAPE)
                .of_static_shape::<RunWithFirstStage>()
                .get_result(conn)
                .await?
        }
    };
    leased(row)
}

static_shape!(
    /// The shape of [`insert_running`]'s statement with a first stage, which
    /// [`Executor::start`](crate::Executor::start) sends for every run: prepared under this
    /// type, not looked up by its SQL text. It binds the run (its id, workflow, status, params,
    /// origin, owner and lease) and its first stage (its run, node, iteration, attempt, status
    /// and input).
    RunWithFirstStage = ("run with its first stage", 0), binds 13
);

/// Inserts a `pending` run for a worker to claim. With an idempotency key, a second call
/// with the same key returns the first run instead of creating another; the same key with
/// another workflow or other params is [`Error::InvalidInput`].
pub(crate) async fn insert_pending(
    conn: &mut AsyncPgConnection,
    workflow: &str,
    params: &serde_json::Value,
    key: Option<&str>,
) -> Result<Run> {
    let inserted = diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq(workflow),
            runs::status.eq(Pending),
            runs::params.eq(params),
            runs::idempotency_key.eq(key),
            runs::submitted_by_library.eq(true),
        ))
        .on_conflict(runs::idempotency_key)
        .do_nothing()
        .returning(RunRow::as_returning())
        .get_result::<RunRow>(conn)
        .await
        .optional()?;
    if let Some(run) = inserted {
        return Ok(run.into());
    }
    // Only a key can conflict: the run it names already exists.
    let key = key.unwrap_or_default();
    let existing: Run = runs::table
        .filter(runs::idempotency_key.eq(key))
        .select(RunRow::as_select())
        .first::<RunRow>(conn)
        .await?
        .into();
    let same_params = existing.params.as_ref().is_some_and(|p| p == params);
    if existing.workflow_name == workflow && same_params {
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

/// Claims up to `limit` pending runs of `workflows` that this library submitted (never one
/// the Go service inserted into a shared database), oldest first, for `owner`. Rows another
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
        .filter(pending.field(runs::submitted_by_library))
        .filter(pending.field(runs::workflow_name).eq_any(workflows))
        .order_by(pending.field(runs::created_at).asc())
        .limit(limit)
        .for_update()
        .skip_locked();
    let rows: Vec<(RunRow, Option<Uuid>)> =
        diesel::update(runs::table.filter(runs::id.eq_any(oldest)))
            .set((
                runs::status.eq(Running),
                runs::started_at.eq(clock_timestamp().nullable()),
                new_lease!(owner, lease),
            ))
            .returning((RunRow::as_returning(), runs::lease_token))
            .get_results(conn)
            .await?;
    rows.into_iter().map(leased).collect()
}

/// Claims up to `limit` `waiting` runs of `workflows` that are due (or were sent the message
/// they wait for), longest due first, for
/// `owner`: they go on where they waited. Rows another worker is claiming at the same moment
/// are skipped, not waited for.
pub(crate) async fn claim_due(
    conn: &mut AsyncPgConnection,
    workflows: &[String],
    owner: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<(Run, Lease)>> {
    let waiting = diesel::alias!(runs as waiting);
    let due = waiting
        .select(waiting.field(runs::id))
        .filter(waiting.field(runs::status).eq(Waiting))
        .filter(waiting.field(runs::submitted_by_library))
        .filter(
            waiting
                .field(runs::wake_at)
                .le(clock_timestamp().nullable())
                .or(waiting.field(runs::wait_topic).is_not_null().and(exists(
                    // Sent while the run was starting to wait: the statement that made it wait
                    // could not see it yet (it read the messages before the sender committed).
                    messages::table
                        .filter(messages::run_id.eq(waiting.field(runs::id)))
                        .filter(
                            messages::topic
                                .nullable()
                                .eq(waiting.field(runs::wait_topic)),
                        )
                        .filter(messages::received_step.is_null()),
                ))),
        )
        .filter(waiting.field(runs::workflow_name).eq_any(workflows))
        .order_by(waiting.field(runs::wake_at).asc())
        .limit(limit)
        .for_update()
        .skip_locked();
    let rows: Vec<(RunRow, Option<Uuid>)> =
        diesel::update(runs::table.filter(runs::id.eq_any(due)))
            .set((
                runs::status.eq(Running),
                runs::wake_at.eq(None::<chrono::DateTime<chrono::Utc>>),
                new_lease!(owner, lease),
            ))
            .returning((RunRow::as_returning(), runs::lease_token))
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

/// Up to `limit` running runs of `workflows` whose lease expired, longest expired first:
/// only runs this library submitted (a `running` run of the Go service's has no lease, and is
/// never taken over).
pub(crate) async fn expired(
    conn: &mut AsyncPgConnection,
    workflows: &[String],
    limit: i64,
) -> Result<Vec<Expired>> {
    let rows: Vec<(RunId, i32, bool)> = runs::table
        .filter(runs::status.eq(Running))
        .filter(runs::submitted_by_library)
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

/// Marks the stages of `run_id` left `started` as `failed` (interrupted). Called inside a
/// transaction that holds the run's row lock, after any node commit in flight, so it sees
/// every stage that commit started.
async fn close_interrupted(conn: &mut AsyncPgConnection, run_id: RunId) -> Result<usize> {
    Ok(diesel::update(
        stages::table
            .filter(stages::run_id.eq(run_id))
            .filter(stages::status.eq(StageStatus::Started)),
    )
    .set((
        stages::status.eq(StageStatus::Failed),
        stages::error_message.eq(INTERRUPTED),
    ))
    .execute(conn)
    .await?)
}

/// Takes over an expired run for `owner`: a new token and lease, one more recovery (unless
/// the run was released rather than lost), and the stages its former owner left `started`
/// marked `failed`. Conditional on the run being as `seen` (still running, still expired,
/// recovered as often): of two workers taking over at once, one gets it and the other
/// `None`.
pub(crate) async fn take_over(
    conn: &mut AsyncPgConnection,
    seen: Expired,
    owner: &str,
    lease: Duration,
) -> Result<Option<(Run, Lease)>> {
    conn.transaction::<_, Error, _>(async |conn| {
        let locked: Option<RunId> = still_as_seen!(seen)
            .select(runs::id)
            .for_no_key_update()
            .first(conn)
            .await
            .optional()?;
        if locked.is_none() {
            return Ok(None);
        }
        close_interrupted(conn, seen.run_id).await?;
        let row = diesel::update(runs::table.find(seen.run_id))
            .set((
                new_lease!(owner, lease),
                runs::recoveries.eq(runs::recoveries
                    + case_when::<_, _, diesel::sql_types::Integer>(runs::owner.is_null(), 0)
                        .otherwise(1)),
            ))
            .returning((RunRow::as_returning(), runs::lease_token))
            .get_result(conn)
            .await?;
        leased(row).map(Some)
    })
    .await
}

/// Fails an expired run that has been taken over too often, if it is still as `seen`.
pub(crate) async fn give_up(
    conn: &mut AsyncPgConnection,
    seen: Expired,
    message: &str,
) -> Result<bool> {
    conn.transaction::<_, Error, _>(async |conn| {
        let locked: Option<RunId> = still_as_seen!(seen)
            .select(runs::id)
            .for_no_key_update()
            .first(conn)
            .await
            .optional()?;
        if locked.is_none() {
            return Ok(false);
        }
        close_interrupted(conn, seen.run_id).await?;
        diesel::update(runs::table.find(seen.run_id))
            .set((
                runs::status.eq(Failed),
                runs::error_message.eq(message),
                runs::completed_at.eq(clock_timestamp().nullable()),
            ))
            .execute(conn)
            .await?;
        Ok(true)
    })
    .await
}

/// A run reopened for a resume: its record, its new lease, and the error it had failed
/// with before (kept for the message if the resume fails too).
pub(crate) struct Reopened {
    pub(crate) run: Run,
    pub(crate) lease: Lease,
    pub(crate) previous_error: Option<String>,
}

/// `failed` or `cancelled` → `running` again, leased to `owner`, clearing the error and end
/// time (a run the Go service made becomes this library's to execute from now on); stages the interrupted attempt left `started` are marked `failed`. Refused with
/// [`Error::NotResumable`] (and nothing changed) when nodes of the run completed but its
/// checkpoint is gone: resuming would run them all again.
pub(crate) async fn reopen(
    conn: &mut AsyncPgConnection,
    id: RunId,
    owner: &str,
    lease: Duration,
) -> Result<Reopened> {
    let reopened = conn
        .transaction::<_, Error, _>(async |conn| {
            let locked: Option<Option<String>> = runs::table
                .find(id)
                .filter(runs::status.eq_any([Failed, Cancelled]))
                .select(runs::error_message)
                .for_no_key_update()
                .first(conn)
                .await
                .optional()?;
            let Some(previous_error) = locked else {
                return Ok(None);
            };
            refuse_without_checkpoint(conn, id).await?;
            close_interrupted(conn, id).await?;
            let row = diesel::update(runs::table.find(id))
                .set((
                    runs::status.eq(Running),
                    runs::error_message.eq(None::<String>),
                    runs::completed_at.eq(None::<chrono::DateTime<chrono::Utc>>),
                    runs::submitted_by_library.eq(true),
                    new_lease!(owner, lease),
                ))
                .returning((RunRow::as_returning(), runs::lease_token))
                .get_result(conn)
                .await?;
            let (run, lease) = leased(row)?;
            Ok(Some(Reopened {
                run,
                lease,
                previous_error,
            }))
        })
        .await?;
    match reopened {
        Some(reopened) => Ok(reopened),
        None => Err(refusal(conn, id, "resume").await),
    }
}

/// [`Error::NotResumable`] if nodes of the run completed but it has no checkpoint to resume
/// after (retention pruned it, or someone deleted it).
pub(crate) async fn refuse_without_checkpoint(
    conn: &mut AsyncPgConnection,
    id: RunId,
) -> Result<()> {
    let (completed, has_checkpoint): (i64, bool) = diesel::select((
        stages::table
            .filter(stages::run_id.eq(id))
            .filter(stages::status.eq(StageStatus::Completed))
            .count()
            .single_value()
            .assume_not_null(),
        exists(checkpoints::table.find(id)),
    ))
    .get_result(conn)
    .await?;
    if completed > 0 && !has_checkpoint {
        return Err(Error::NotResumable {
            run_id: id,
            reason: format!(
                "{completed} of its nodes completed, but its checkpoint is gone (pruned by \
                 retention, or deleted), so it would start again at the entry point and run \
                 them all again; start a new run instead"
            ),
        });
    }
    Ok(())
}

/// What a heartbeat found of the leases it renewed.
#[derive(Debug, Default)]
pub(crate) struct Renewal {
    /// Leases extended from now.
    pub(crate) renewed: Vec<Uuid>,
    /// Leases still held but not extended: their run's row was locked by a write in flight
    /// (its own executor's node commit, whose lock no takeover can pass meanwhile).
    pub(crate) busy: Vec<Uuid>,
}

impl Renewal {
    /// Whether the lease with `token` is still held.
    pub(crate) fn holds(&self, token: &Uuid) -> bool {
        self.renewed.contains(token) || self.busy.contains(token)
    }
}

/// Extends the leases whose tokens are given, for runs still running. A token in neither
/// list of the answer lost its run: it was cancelled, ended, or taken over by another
/// worker. Rows locked by a write in flight are skipped rather than waited for, so that one
/// slow node commit does not hold up the renewal of every other run.
pub(crate) async fn renew(
    conn: &mut AsyncPgConnection,
    tokens: &[Uuid],
    lease: Duration,
) -> Result<Renewal> {
    let free = diesel::alias!(runs as free);
    let lockable = free
        .select(free.field(runs::id))
        .filter(free.field(runs::lease_token).eq_any(tokens))
        .filter(free.field(runs::status).eq(Running))
        .for_no_key_update()
        .skip_locked();
    let renewed: Vec<Option<Uuid>> = diesel::update(runs::table.filter(runs::id.eq_any(lockable)))
        .set((
            runs::heartbeat_at.eq(clock_timestamp().nullable()),
            runs::lease_expires_at.eq((clock_timestamp() + interval(lease)).nullable()),
        ))
        .returning(runs::lease_token)
        .get_results(conn)
        .await?;
    let renewed: Vec<Uuid> = renewed.into_iter().flatten().collect();
    let skipped: Vec<Uuid> = tokens
        .iter()
        .filter(|t| !renewed.contains(t))
        .copied()
        .collect();
    let busy = if skipped.is_empty() {
        Vec::new()
    } else {
        let busy: Vec<Option<Uuid>> = runs::table
            .filter(runs::lease_token.eq_any(&skipped))
            .filter(runs::status.eq(Running))
            .select(runs::lease_token)
            .load(conn)
            .await?;
        busy.into_iter().flatten().collect()
    };
    Ok(Renewal { renewed, busy })
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

/// `pending`, `running` or `waiting` → `cancelled`. A running run's executor sees it at its
/// next write at the latest (the [`Executor`](crate::Executor) also interrupts it at once
/// when it runs in this process); a waiting run is never continued.
pub async fn cancel_run(conn: &mut AsyncPgConnection, id: RunId) -> Result<Run> {
    // Locked first, so that `completed_at` is read off the clock once a node commit in
    // flight has committed: the run ends after everything it recorded.
    let cancellable = runs::table
        .find(id)
        .filter(runs::status.eq_any([Pending, Running, Waiting]))
        .select(runs::id)
        .for_no_key_update();
    let cancel =
        diesel::update(runs::table.filter(runs::id.eq_any(held_run::table.select(held_run::id))))
            .set((
                runs::status.eq(Cancelled),
                runs::wake_at.eq(None::<chrono::DateTime<chrono::Utc>>),
                runs::completed_at.eq(clock_timestamp().nullable()),
            ))
            .returning(RunRow::as_returning());
    let run = AtomicStatement::new(cancel)
        .with_named(HELD_RUN, cancellable)
        .get_result::<RunRow>(conn)
        .await
        .optional()?
        .map(Run::from);
    accepted(conn, id, "cancel", run).await
}

/// Records `answer` to the question `key` that the `waiting` run `id` asked at the step it
/// waits after, and makes the run due now, in one statement that first locks the run: of two
/// racing answers exactly one is recorded. Returns the run, due.
///
/// Refused, changing nothing: [`Error::RunNotFound`]; [`Error::InvalidStatus`] if the run
/// is not waiting; [`Error::InvalidInput`] naming the key if the run did not ask it there,
/// or it was answered already.
pub(crate) async fn answer(
    conn: &mut AsyncPgConnection,
    id: RunId,
    key: &str,
    answer: &serde_json::Value,
) -> Result<Run> {
    check_against_schema(conn, id, key, answer).await?;
    let waiting = runs::table
        .find(id)
        .filter(runs::status.eq(Waiting))
        .select(runs::id)
        .for_no_key_update();
    let last_step = stages::table
        .filter(stages::run_id.eq(id))
        .select(diesel::dsl::max(stages::iteration))
        .single_value();
    let answered = diesel::update(
        interrupts::table
            .filter(interrupts::run_id.eq_any(held_run::table.select(held_run::id)))
            .filter(interrupts::iteration.nullable().eq(last_step))
            .filter(interrupts::key.eq(key))
            .filter(interrupts::answer.is_null()),
    )
    .set((
        interrupts::answer.eq(answer),
        interrupts::answered_at.eq(clock_timestamp().nullable()),
    ))
    .returning(interrupts::run_id);
    let due_now = diesel::update(
        runs::table.filter(runs::id.eq_any(answered::table.select(answered::run_id))),
    )
    .set(runs::wake_at.eq(clock_timestamp().nullable()))
    .returning(RunRow::as_returning());
    let run = AtomicStatement::new(due_now)
        .with_named(HELD_RUN, waiting)
        .with_named(ANSWERED, answered)
        .get_result::<RunRow>(conn)
        .await
        .optional()?;
    match run {
        Some(run) => Ok(Run::from(run)),
        None => Err(answer_refusal(conn, id, key).await),
    }
}

/// The questions run `id` asked at its last step: where it waits, if it waits for an answer.
fn asked_where_it_waits(id: RunId) -> interrupts::BoxedQuery<'static, diesel::pg::Pg> {
    let last_step = stages::table
        .filter(stages::run_id.eq(id))
        .select(diesel::dsl::max(stages::iteration))
        .single_value();
    interrupts::table
        .filter(interrupts::run_id.eq(id))
        .filter(interrupts::iteration.nullable().eq(last_step))
        .into_boxed()
}

/// Refuses `answer` if the open question `key` of run `id` gave a schema it does not fit.
/// The schema is written once, with the question, so reading it before the statement that
/// records the answer cannot see a different one; a question answered or gone meanwhile is
/// the statement's to refuse.
async fn check_against_schema(
    conn: &mut AsyncPgConnection,
    id: RunId,
    key: &str,
    answer: &serde_json::Value,
) -> Result<()> {
    let schema: Option<serde_json::Value> = asked_where_it_waits(id)
        .filter(interrupts::key.eq(key))
        .filter(interrupts::answer.is_null())
        .select(interrupts::answer_schema)
        .first::<Option<serde_json::Value>>(conn)
        .await
        .optional()?
        .flatten();
    let Some(schema) = schema else {
        return Ok(());
    };
    AnswerSchema::stored(schema)
        .check(answer)
        .map_err(|misfit| {
            Error::invalid_input(
                misfit.at,
                misfit.found.unwrap_or_else(|| answer.to_string()),
                format!(
                    "the answer to {key:?} does not fit its schema: {}",
                    misfit.why
                ),
            )
        })
}

/// Sends `payload` on `topic` to run `id` (not ended yet), in one statement that locks the
/// run first; a run waiting for that topic becomes due now. Returns the message's id.
pub(crate) async fn send(
    conn: &mut AsyncPgConnection,
    id: RunId,
    topic: &str,
    payload: &serde_json::Value,
) -> Result<i64> {
    let open = runs::table
        .find(id)
        .filter(runs::status.eq_any([Pending, Running, Waiting]))
        .select(runs::id)
        .for_no_key_update();
    let wake = diesel::update(
        runs::table
            .filter(runs::id.eq_any(held_run::table.select(held_run::id)))
            .filter(runs::status.eq(Waiting))
            .filter(runs::wait_topic.eq(topic)),
    )
    .set(runs::wake_at.eq(clock_timestamp().nullable()));
    let sent = diesel::insert_into(messages::table)
        .values(held_run::table.select((
            held_run::id,
            topic.into_sql::<diesel::sql_types::Text>(),
            payload.into_sql::<diesel::sql_types::Jsonb>(),
        )))
        .into_columns((messages::run_id, messages::topic, messages::payload))
        .returning(messages::id);
    let id_sent = AtomicStatement::new(sent)
        .with_named(HELD_RUN, open)
        .with(wake)
        .get_result::<i64>(conn)
        .await
        .optional()?;
    match id_sent {
        Some(sent) => Ok(sent),
        None => Err(refusal(conn, id, "send to").await),
    }
}

/// Why an answer to `key` for run `id` was refused.
async fn answer_refusal(conn: &mut AsyncPgConnection, id: RunId, key: &str) -> Error {
    let status = refusal(conn, id, "answer").await;
    if !matches!(
        status,
        Error::InvalidStatus {
            status: Waiting,
            ..
        }
    ) {
        return status;
    }
    let asked: std::result::Result<Vec<(String, bool)>, _> = asked_where_it_waits(id)
        .select((interrupts::key, interrupts::answer.is_not_null()))
        .load(conn)
        .await;
    let asked = match asked {
        Ok(asked) => asked,
        Err(e) => return Error::from(e),
    };
    let reason = match asked.iter().find(|(k, _)| k == key) {
        Some((_, true)) => format!("run {id} was answered {key:?} already"),
        Some((_, false)) => format!("run {id} stopped waiting for {key:?} meanwhile"),
        None if asked.is_empty() => {
            format!("run {id} waits for a timer or a retry, not for an answer")
        }
        None => format!(
            "run {id} did not ask {key:?}; it waits for an answer to {}",
            asked
                .iter()
                .filter(|(_, answered)| !answered)
                .map(|(k, _)| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Error::invalid_input("key", key, reason)
}

/// Deletes a finished run with its stages, decisions and checkpoint. A `pending` or
/// `running` run is refused: cancel it first.
pub async fn delete_run(conn: &mut AsyncPgConnection, id: RunId) -> Result<()> {
    let deleted = diesel::delete(
        runs::table
            .find(id)
            .filter(runs::status.eq_any([Completed, Failed, Cancelled])),
    )
    .returning(runs::id)
    .get_result::<RunId>(conn)
    .await
    .optional()?;
    if deleted.is_some() {
        Ok(())
    } else {
        Err(refusal(conn, id, "delete (cancel it first)").await)
    }
}

/// The run the transition returned, or the reason it was refused.
async fn accepted(
    conn: &mut AsyncPgConnection,
    id: RunId,
    action: &'static str,
    run: Option<Run>,
) -> Result<Run> {
    match run {
        Some(run) => Ok(run),
        None => Err(refusal(conn, id, action).await),
    }
}

/// Why a conditional change matched no row: the run does not exist, or is in another status.
pub(crate) async fn refusal(
    conn: &mut AsyncPgConnection,
    id: RunId,
    action: &'static str,
) -> Error {
    let status = runs::table
        .find(id)
        .select(runs::status)
        .first::<RunStatus>(conn)
        .await
        .optional();
    match status {
        Ok(Some(status)) => Error::InvalidStatus {
            run_id: id,
            status,
            action,
        },
        Ok(None) => Error::RunNotFound { id },
        Err(e) => Error::from(e),
    }
}
