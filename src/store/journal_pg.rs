//! The PostgreSQL journal: each durable step of a run as one statement, fenced by the run's
//! lease and retried while the database is out of reach and the lease still holds.
//!
//! A completed node is one [`AtomicStatement`]: it locks the run under this journal's lease
//! (see [`fence`](crate::fence)), completes the node's stage (only from `started`), and, if
//! and only if that stage was completed, writes the decision, the checkpoint, and either the
//! next node's `started` stage or the run's final status. After any crash, the stages,
//! decisions and checkpoint of a run agree; a run cancelled or taken over elsewhere gets no
//! write from its former executor.
//!
//! **A database that goes away.** A statement that fails because the connection broke (the
//! server restarted, the network dropped) may or may not have committed. The recorder waits
//! (with backoff) and tries again while the run's [`LeaseDeadline`] holds: first it asks
//! whether the write already landed, and if not it sends the statement again, which is
//! idempotent (it completes a stage only from `started`, and everything else depends on
//! that). Past the deadline another worker may own the run, so it stops trying.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use diesel::data_types::PgInterval;
use diesel::dsl::{case_when, exists};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel::sql_types::{Bool, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::{Error, Result};
use crate::graph::BoxFuture;
use crate::graph::State;
use crate::graph::node_signals::{Delivered, Given};
use crate::model::{JsonText, RawJson, Run, RunId, RunStatus, StageStatus};
use crate::store::atomic_statement::{
    AtomicStatement, OfStaticShape, Part, Shape, StaticShape, static_shape,
};
use crate::store::backoff::Backoff;
use crate::store::batched_commit::{NodePart, Then};
use crate::store::checkpoints::PgCheckpointStore;
use crate::store::checkpoints::state_to_json;
use crate::store::fence::{
    self, ASKED, CHECKPOINTED, COMPLETED_STAGE, DECIDED, FAILED_STAGE, HELD_RUN, asked,
    checkpointed, completed_stage, decided, failed_stage, held_run,
};
use crate::store::group_commit::{GroupCommit, Grouped, Member};
use crate::store::journal::{
    AttemptFailure, End, Journal, Next, NodeCommit, NodeFailure, Question, Retry, WaitCommit,
};
use crate::store::lease::Lease;
use crate::store::lease::LeaseDeadline;
use crate::store::rows::RunRow;
use crate::store::run_connections::RunConnections;
use crate::store::schema::{checkpoints, decisions, interrupts, messages, runs, stages};
use crate::store::sql_functions::clock_timestamp;
use crate::store::sql_types::{FirstAttempt, StatusLiteral};

/// Writes one run's steps to the workflow tables, under its lease.
pub(crate) struct PgJournal {
    pool: RunConnections,
    /// Where node commits go when they are batched across runs.
    group_commit: Option<Member>,
    keep_checkpoints: bool,
    /// The largest state a node commit may store, serialized.
    max_state_bytes: usize,
    /// How long the run's state was when it was last serialized: the next one is written
    /// into a buffer about that size, so that it seldom has to grow.
    state_bytes: AtomicUsize,
    lease: Lease,
    deadline: LeaseDeadline,
    /// The run as the node commit that ended this attempt returned it.
    ended: Mutex<Option<Run>>,
}

/// Where a resumed or recovered run continues, as its new executor reads it.
#[derive(Debug)]
pub(crate) struct ResumePoint {
    /// The step number after every recorded one.
    pub(crate) next_iteration: u32,
    /// How many of its stages completed.
    pub(crate) completed: i64,
    /// Its checkpoint, if it has one.
    pub(crate) checkpoint: Option<State>,
}

/// Where a `waiting` run that came due continues: at the attempt after its last failed one
/// (`retry`), or after its last completed node, with the answers to the questions it asked.
#[derive(Debug)]
pub(crate) struct DuePoint {
    /// The node of its last stage.
    pub(crate) node: String,
    /// Its step number.
    pub(crate) iteration: u32,
    /// Its attempt.
    pub(crate) attempt: u32,
    /// Whether that stage failed (and is tried again), rather than completed.
    pub(crate) retry: bool,
    /// The run's checkpoint: the state that node starts from (none if it is the first).
    pub(crate) checkpoint: Option<State>,
}

/// What a write looks like once it has landed: how to tell, after a connection broke,
/// whether the statement it was sending had committed.
#[derive(Debug, Clone, Copy)]
enum Landed<'a> {
    /// The stage of `node` at step `iteration` has `status`.
    Stage {
        node: &'a str,
        iteration: u32,
        attempt: u32,
        status: StageStatus,
    },
    /// The run has `status` and this journal's token.
    Run(RunStatus),
}

impl PgJournal {
    /// A journal for the run `lease` holds, retrying writes while `deadline` holds. With
    /// `keep_checkpoints` false, a completed run's checkpoint is deleted in the statement
    /// that completes it.
    pub(crate) fn new(
        pool: RunConnections,
        group_commit: Option<Arc<GroupCommit>>,
        (keep_checkpoints, max_state_bytes): (bool, usize),
        lease: Lease,
        deadline: LeaseDeadline,
    ) -> Self {
        PgJournal {
            pool,
            group_commit: group_commit.as_ref().map(GroupCommit::join),
            keep_checkpoints,
            max_state_bytes,
            state_bytes: AtomicUsize::new(0),
            lease,
            deadline,
            ended: Mutex::new(None),
        }
    }

    /// Executes the statement `build` makes; whether its last part wrote a row. Retried, as
    /// the module explains, while the connection breaks and the lease holds.
    async fn write<S>(&self, build: impl Fn() -> S, landed: Landed<'_>) -> Result<bool>
    where
        S: QueryFragment<Pg> + QueryId + Send,
    {
        let first = self.send_alone(&build).await;
        self.retried(first, build, landed).await
    }

    /// Sends the statement `build` makes, once, on a connection of its own; whether its
    /// last part wrote a row.
    async fn send_alone<S>(&self, build: &impl Fn() -> S) -> Result<bool>
    where
        S: QueryFragment<Pg> + QueryId + Send,
    {
        let mut conn = self.pool.get().await?;
        Ok(build().execute(&mut *conn).await? > 0)
    }

    /// [`PgJournal::write`] of a statement that ends the attempt and returns the run as it
    /// recorded it: kept for [`PgJournal::take_ended`], so that nobody reads it again.
    async fn write_ending<S>(&self, build: impl Fn() -> S, landed: Landed<'_>) -> Result<bool>
    where
        S: ReturnsRun + QueryFragment<Pg> + QueryId + Send,
    {
        let first = async {
            let mut conn = self.pool.get().await?;
            let row = build().returned_run(&mut conn).await?;
            let written = row.is_some();
            *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = row.map(Run::from);
            Ok(written)
        }
        .await;
        self.retried(first, build, landed).await
    }

    /// What a write whose first try came to `first` comes to: that, unless the connection
    /// broke; then, as the module explains, it is checked and sent again (alone, not in a
    /// batch) while the connection breaks and the lease holds.
    async fn retried<S>(
        &self,
        first: Result<bool>,
        build: impl Fn() -> S,
        landed: Landed<'_>,
    ) -> Result<bool>
    where
        S: QueryFragment<Pg> + QueryId + Send,
    {
        let mut error = match first {
            Err(e) if e.is_connection_lost() => e,
            other => return other,
        };
        let mut backoff = Backoff::for_writes();
        let mut warned = false;
        loop {
            let left = self.deadline.remaining();
            if left.is_zero() {
                tracing::warn!(run_id = %self.lease.run_id, %error, "the database stayed out of reach until the run's lease ran out; leaving the run to be taken over");
                return Err(error);
            }
            if !std::mem::replace(&mut warned, true) {
                tracing::warn!(run_id = %self.lease.run_id, %error, "could not record a step; retrying while the run's lease holds");
            }
            tokio::time::sleep(backoff.next_pause().min(left)).await;
            let again = async {
                let mut conn = self.pool.get().await?;
                if self.has_landed(&mut conn, landed).await? {
                    return Ok(true);
                }
                // Sent again after a break, an idempotent statement writes nothing if the
                // first one committed meanwhile: tell that from a refusal.
                if build().execute(&mut *conn).await? > 0 {
                    return Ok(true);
                }
                self.has_landed(&mut conn, landed).await
            }
            .await;
            match again {
                Err(e) if e.is_connection_lost() => error = e,
                other => return other,
            }
        }
    }

    /// This run's next write is not a batched part: the group's next batch does not wait
    /// for it.
    fn not_batched(&self) {
        if let Some(group) = &self.group_commit {
            group.wrote_alone(self.lease.run_id);
        }
    }

    /// What this run's part of a group commit came to: whether it was written (the run it
    /// completed kept for [`PgJournal::take_ended`]), or `None` if it is to be sent alone.
    fn grouped(&self, grouped: Result<Grouped>) -> Option<Result<bool>> {
        match grouped {
            Ok(Grouped::Written(written)) => Some(Ok(written)),
            Ok(Grouped::Completed(run)) => {
                *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(*run);
                Some(Ok(true))
            }
            // A journal's parts are node commits, which a batch writes but never starts.
            Ok(Grouped::Started(..)) => Some(Ok(true)),
            Ok(Grouped::Alone) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// The run as the write that ended this attempt recorded it, if that write returned it
    /// (one sent alone or in a batch, on its first try); once.
    pub(crate) fn take_ended(&self) -> Option<Run> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Where the run continues, read under its lease (so nothing changes it meanwhile),
    /// retried like a write while the connection breaks and the lease holds.
    pub(crate) async fn resume_point(&self) -> Result<ResumePoint> {
        let mut backoff = Backoff::for_writes();
        loop {
            let read = async {
                let mut conn = self.pool.get().await?;
                let of_run = stages::table.filter(stages::run_id.eq(self.lease.run_id));
                let last: Option<i32> = of_run
                    .select(diesel::dsl::max(stages::iteration))
                    .first(&mut *conn)
                    .await?;
                let completed: i64 = of_run
                    .filter(stages::status.eq(StageStatus::Completed))
                    .count()
                    .get_result(&mut *conn)
                    .await?;
                let checkpoint = PgCheckpointStore::load_with(&mut conn, self.lease.run_id).await?;
                let next_iteration = u32::try_from(last.unwrap_or(0)).unwrap_or(0) + 1;
                Ok::<_, Error>(ResumePoint {
                    next_iteration,
                    completed,
                    checkpoint,
                })
            }
            .await;
            match read {
                Err(e) if e.is_connection_lost() && !self.deadline.remaining().is_zero() => {
                    tokio::time::sleep(backoff.next_pause().min(self.deadline.remaining())).await;
                }
                other => return other,
            }
        }
    }

    /// Where the run continues now that it is due, read under its lease.
    pub(crate) async fn due_point(&self) -> Result<DuePoint> {
        let mut conn = self.pool.get().await?;
        let last: Option<(String, i32, i32, StageStatus)> = stages::table
            .filter(stages::run_id.eq(self.lease.run_id))
            .order_by((stages::iteration.desc(), stages::attempt.desc()))
            .select((
                stages::node_name,
                stages::iteration,
                stages::attempt,
                stages::status,
            ))
            .first(&mut *conn)
            .await
            .optional()?;
        let Some((node, iteration, attempt, status)) = last else {
            return Err(Error::Value {
                container: "run",
                key: self.lease.run_id.to_string(),
                reason: "it was waiting, but it has no stage to continue after".to_owned(),
            });
        };
        let checkpoint = PgCheckpointStore::load_with(&mut conn, self.lease.run_id).await?;
        Ok(DuePoint {
            node,
            iteration: u32::try_from(iteration).unwrap_or(0),
            attempt: u32::try_from(attempt).unwrap_or(0),
            retry: status == StageStatus::Failed,
            checkpoint,
        })
    }

    /// What the node after step `step` is given: the answers to the questions asked there,
    /// and, if the run waited there for a message, the oldest one on its topic not received
    /// yet (`None` if the wait timed out without one).
    pub(crate) async fn given_after(&self, step: u32) -> Result<Given> {
        let mut conn = self.pool.get().await?;
        let run_id = self.lease.run_id;
        let asked: Vec<(String, Option<RawJson>)> = interrupts::table
            .filter(interrupts::run_id.eq(run_id))
            .filter(interrupts::iteration.eq(self::step(step)))
            .select((interrupts::key, interrupts::answer))
            .load(&mut *conn)
            .await?;
        let mut answers = HashMap::new();
        for (key, answer) in asked {
            answers.insert(key, answer.map(|a| raw_to_value(&a, "answer")).transpose()?);
        }
        let waited: (Option<String>, Option<i32>) = runs::table
            .find(run_id)
            .select((runs::wait_topic, runs::wait_step))
            .first(&mut *conn)
            .await?;
        let delivered = match waited {
            (Some(topic), Some(at)) if at == self::step(step) => {
                let oldest: Option<(i64, RawJson)> = messages::table
                    .filter(messages::run_id.eq(run_id))
                    .filter(messages::topic.eq(&topic))
                    .filter(messages::received_step.is_null())
                    .order_by(messages::id.asc())
                    .select((messages::id, messages::payload))
                    .first(&mut *conn)
                    .await
                    .optional()?;
                let message = match oldest {
                    Some((id, payload)) => Some((id, raw_to_value(&payload, "message")?)),
                    None => None,
                };
                Some(Delivered { topic, message })
            }
            _ => None,
        };
        Ok(Given { answers, delivered })
    }

    /// Whether the write described by `landed` is in the database.
    async fn has_landed(&self, conn: &mut AsyncPgConnection, landed: Landed<'_>) -> Result<bool> {
        Ok(match landed {
            Landed::Stage {
                node,
                iteration,
                attempt,
                status,
            } => {
                diesel::select(exists(
                    stages::table
                        .filter(stages::run_id.eq(self.lease.run_id))
                        .filter(stages::node_name.eq(node))
                        .filter(stages::iteration.eq(step(iteration)))
                        .filter(stages::attempt.eq(step(attempt)))
                        .filter(stages::status.eq(status)),
                ))
                .get_result(conn)
                .await?
            }
            Landed::Run(status) => {
                diesel::select(exists(
                    runs::table
                        .find(self.lease.run_id)
                        .filter(runs::status.eq(status))
                        .filter(runs::lease_token.eq(self.lease.token)),
                ))
                .get_result(conn)
                .await?
            }
        })
    }
}

/// The update that fails the `started` stage of attempt `$attempt` at `$node`, step
/// `$iteration`, of the run the statement locked (`held_run`), recording `$error`.
macro_rules! fail_started_stage {
    ($run_id:expr, ($node:expr, $iteration:expr, $attempt:expr), $duration_ms:expr, $error:expr) => {
        diesel::update(
            stages::table
                .filter(stages::run_id.eq($run_id))
                .filter(stages::node_name.eq($node))
                .filter(stages::iteration.eq(step($iteration)))
                .filter(stages::attempt.eq(step($attempt)))
                .filter(stages::status.eq(StageStatus::Started))
                .filter(exists(held_run::table.select(held_run::id))),
        )
        .set((
            stages::status.eq(StageStatus::Failed),
            stages::duration_ms.eq($duration_ms),
            stages::error_message.eq($error),
        ))
    };
}

/// Inserts the `started` stage of `$node` at step `$iteration`, attempt `$attempt` (an SQL
/// expression), for the run found in `$source` (the locked run, or the stage a commit
/// completed).
macro_rules! start_stage {
    ($source:ident :: $run_id:ident, $node:expr, $iteration:expr, $attempt:expr, $input:expr) => {
        diesel::insert_into(stages::table)
            .values($source::table.select((
                $source::$run_id,
                $node.into_sql::<Text>(),
                step($iteration).into_sql::<Integer>(),
                $attempt,
                StatusLiteral(StageStatus::Started),
                $input.into_sql::<Nullable<Jsonb>>(),
            )))
            .into_columns((
                stages::run_id,
                stages::node_name,
                stages::iteration,
                stages::attempt,
                stages::status,
                stages::input_snapshot,
            ))
    };
}

/// When a waiting run is due, as an SQL expression of `runs`.
type DueTime = Box<
    dyn diesel::expression::BoxableExpression<runs::table, Pg, SqlType = Nullable<Timestamptz>>
        + Send
        + Sync,
>;

/// The run found in `$source` (the part before) → `waiting`, its lease given up, due after
/// the wait's `wake_after`, or only when answered (`None`); returning the run.
macro_rules! wait_after_node {
    ($source:ident :: $run_id:ident, $c:expr, $wait:expr) => {{
        let (c, wait): (&NodeCommit<'_>, WaitCommit<'_>) = ($c, $wait);
        let waiting = runs::table.filter(runs::id.eq_any($source::table.select($source::$run_id)));
        let released = (
            runs::status.eq(RunStatus::Waiting),
            runs::owner.eq(None::<String>),
            runs::lease_token.eq(None::<uuid::Uuid>),
            runs::heartbeat_at.eq(None::<chrono::DateTime<chrono::Utc>>),
            runs::lease_expires_at.eq(None::<chrono::DateTime<chrono::Utc>>),
            runs::wait_topic.eq(wait.topic.map(|(topic, _)| topic)),
            runs::wait_step.eq(wait.topic.map(|(_, at)| step(at))),
        );
        let later: DueTime = match wait.wake_after {
            Some(after) => Box::new((clock_timestamp() + interval(after)).nullable()),
            None => {
                Box::new(None::<chrono::DateTime<chrono::Utc>>.into_sql::<Nullable<Timestamptz>>())
            }
        };
        let part: Part<'_> = match wait.topic {
            // Due now if a message on the topic was sent before the run waited for it.
            Some((topic, _)) => {
                let sent_already = exists(
                    messages::table
                        .filter(messages::run_id.eq(c.run_id))
                        .filter(messages::topic.eq(topic))
                        .filter(messages::received_step.is_null()),
                );
                Box::new(
                    diesel::update(waiting)
                        .set((
                            released,
                            runs::wake_at.eq(case_when::<_, _, Nullable<Timestamptz>>(
                                sent_already,
                                clock_timestamp().nullable(),
                            )
                            .otherwise(later)),
                        ))
                        .returning(RunRow::as_returning()),
                )
            }
            None => Box::new(
                diesel::update(waiting)
                    .set((released, runs::wake_at.eq(later)))
                    .returning(RunRow::as_returning()),
            ),
        };
        part
    }};
}

/// The run found in `$source` (the part before) → `$status`, with the result or the error.
macro_rules! end_run {
    ($source:ident :: $run_id:ident, $status:expr, $result:expr, $error:expr) => {
        diesel::update(runs::table.filter(runs::id.eq_any($source::table.select($source::$run_id))))
            .set((
                runs::status.eq($status),
                runs::result.eq($result),
                runs::error_message.eq($error),
                runs::completed_at.eq(clock_timestamp().nullable()),
            ))
    };
}

/// A stored JSON value, read.
fn raw_to_value(raw: &RawJson, what: &'static str) -> Result<serde_json::Value> {
    raw.to_value().map_err(|e| Error::Value {
        container: what,
        key: String::new(),
        reason: format!("as stored, cannot be read: {e}"),
    })
}

/// `d` as a PostgreSQL interval.
fn interval(d: std::time::Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn step(i: u32) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

impl Journal for PgJournal {
    fn node_started<'a>(
        &'a self,
        run_id: RunId,
        (node, iteration, attempt): (&'a str, u32, u32),
        input: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<bool>> {
        debug_assert_eq!(run_id, self.lease.run_id);
        let lease = self.lease;
        Box::pin(self.write(
            move || {
                AtomicStatement::new(start_stage!(
                    held_run::id,
                    node,
                    iteration,
                    step(attempt).into_sql::<Integer>(),
                    Some(input)
                ))
                .with_named(HELD_RUN, fence::running_under(lease))
            },
            Landed::Stage {
                node,
                iteration,
                attempt,
                status: StageStatus::Started,
            },
        ))
    }

    fn attempt_failed<'a>(&'a self, f: &'a AttemptFailure<'a>) -> BoxFuture<'a, Result<bool>> {
        self.not_batched();
        let lease = self.lease;
        let landed = Landed::Stage {
            node: f.node,
            iteration: f.iteration,
            attempt: f.attempt,
            status: StageStatus::Failed,
        };
        Box::pin(async move {
            match f.retry {
                Retry::Here => {
                    self.write(
                        || {
                            AtomicStatement::new(start_stage!(
                                failed_stage::run_id,
                                f.node,
                                f.iteration,
                                step(f.attempt + 1).into_sql::<Integer>(),
                                None::<&serde_json::Value>
                            ))
                            .with_named(HELD_RUN, fence::running_under(lease))
                            .with_named(FAILED_STAGE, fail_attempt(f))
                        },
                        landed,
                    )
                    .await
                }
                Retry::Later { wait } => {
                    self.write(
                        || {
                            AtomicStatement::new(wait_until_due(wait))
                                .with_named(HELD_RUN, fence::running_under(lease))
                                .with_named(FAILED_STAGE, fail_attempt(f))
                        },
                        landed,
                    )
                    .await
                }
            }
        })
    }

    fn node_completed<'a>(&'a self, c: &'a NodeCommit<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let json = CommitJson::of(c, AtomicUsize::load(&self.state_bytes, Ordering::Relaxed))?;
            let bytes = json.state.as_str().len();
            self.state_bytes.store(bytes, Ordering::Relaxed);
            if bytes > self.max_state_bytes {
                return Err(Error::StateTooLarge {
                    node: c.node.to_owned(),
                    bytes,
                    limit: self.max_state_bytes,
                });
            }
            let (keep, lease) = (self.keep_checkpoints, self.lease);
            let landed = Landed::Stage {
                node: c.node,
                iteration: c.iteration,
                attempt: c.attempt,
                status: StageStatus::Completed,
            };
            let group = self
                .group_commit
                .as_deref()
                .filter(|group| group.batches_for(lease.run_id));
            match (c.next, group, &json.result) {
                // The commit of almost every node: prepared under its own type, and batched
                // with other runs' commits when group commit is on.
                (Next::Node { node, iteration }, group, _) if c.received.is_none() => {
                    let alone = || {
                        commit(c, lease, &json, keep, next_stage(c, node, iteration))
                            .of_static_shape::<NodeCommitToNext>()
                    };
                    let first = match group {
                        Some(group) => {
                            let then = Then::Node {
                                node: node.to_owned(),
                                iteration: step(iteration),
                                input: c.next_input.map(RawJson::from_value),
                            };
                            match self.grouped(group.commit(node_part(c, lease, &json, then)).await)
                            {
                                Some(first) => first,
                                None => self.send_alone(&alone).await,
                            }
                        }
                        None => self.send_alone(&alone).await,
                    };
                    self.retried(first, alone, landed).await
                }
                // A run's completion, batched too: the batch returns the run as recorded.
                (Next::End(end @ End::Complete { .. }), Some(group), Some(result))
                    if c.received.is_none() && saves_checkpoint(c, keep) =>
                {
                    let alone = || {
                        commit(c, lease, &json, keep, run_end(c, end, &json, true))
                            .of_static_shape::<NodeCommitCompleting>()
                    };
                    let then = Then::Complete {
                        result: result.clone(),
                    };
                    match self.grouped(group.commit(node_part(c, lease, &json, then)).await) {
                        Some(first) => self.retried(first, alone, landed).await,
                        None => self.write_ending(alone, landed).await,
                    }
                }
                (Next::Node { node, iteration }, _, _) => {
                    self.not_batched();
                    let next = || next_stage(c, node, iteration);
                    self.write(|| commit(c, lease, &json, keep, next()), landed)
                        .await
                }
                // A run's completion sent alone, prepared under its own type too.
                (Next::End(end @ End::Complete { .. }), _, _) if c.received.is_none() => {
                    self.not_batched();
                    let completing =
                        |saves| commit(c, lease, &json, keep, run_end(c, end, &json, saves));
                    if saves_checkpoint(c, keep) {
                        let build = || completing(true).of_static_shape::<NodeCommitCompleting>();
                        self.write_ending(build, landed).await
                    } else {
                        let build = || {
                            completing(false)
                                .of_static_shape::<NodeCommitCompletingWithoutCheckpoint>()
                        };
                        self.write_ending(build, landed).await
                    }
                }
                (Next::End(end), _, _) => {
                    self.not_batched();
                    let end = || run_end(c, end, &json, saves_checkpoint(c, keep));
                    self.write_ending(|| commit(c, lease, &json, keep, end()), landed)
                        .await
                }
            }
        })
    }

    fn node_failed<'a>(&'a self, f: &'a NodeFailure<'a>) -> BoxFuture<'a, Result<bool>> {
        self.not_batched();
        let lease = self.lease;
        let fail_stage = move || {
            fail_started_stage!(
                f.run_id,
                (f.node, f.iteration, f.attempt),
                f.duration_ms,
                f.error
            )
        };
        let landed = Landed::Stage {
            node: f.node,
            iteration: f.iteration,
            attempt: f.attempt,
            status: StageStatus::Failed,
        };
        Box::pin(async move {
            match f.run_error {
                Some(message) => {
                    self.write(
                        || {
                            AtomicStatement::new(end_held_run(
                                RunStatus::Failed,
                                None,
                                Some(message),
                            ))
                            .with_named(HELD_RUN, fence::running_under(lease))
                            .with(fail_stage())
                        },
                        landed,
                    )
                    .await
                }
                // Cancelled: close the stage of a run that is cancelled under this lease (and
                // only then: a run taken over by another worker is not ours to touch).
                None => {
                    self.write(
                        || {
                            AtomicStatement::new(fail_stage())
                                .with_named(HELD_RUN, fence::cancelled_under(lease))
                        },
                        landed,
                    )
                    .await
                }
            }
        })
    }

    fn run_failed<'a>(&'a self, run_id: RunId, message: &'a str) -> BoxFuture<'a, Result<bool>> {
        debug_assert_eq!(run_id, self.lease.run_id);
        let lease = self.lease;
        Box::pin(self.write(
            move || {
                AtomicStatement::new(end_held_run(
                    RunStatus::Failed,
                    None::<&serde_json::Value>,
                    Some(message),
                ))
                .with_named(HELD_RUN, fence::running_under(lease))
            },
            Landed::Run(RunStatus::Failed),
        ))
    }

    fn run_completed<'a>(
        &'a self,
        run_id: RunId,
        result: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<bool>> {
        debug_assert_eq!(run_id, self.lease.run_id);
        let lease = self.lease;
        Box::pin(self.write(
            move || {
                AtomicStatement::new(end_held_run(
                    RunStatus::Completed,
                    Some(result),
                    None::<&str>,
                ))
                .with_named(HELD_RUN, fence::running_under(lease))
            },
            Landed::Run(RunStatus::Completed),
        ))
    }
}

/// A node commit's JSON, serialized once however often its statement is built: the
/// checkpoint's state and the run's result if it completes (the stage's update comes
/// written, in the commit).
struct CommitJson {
    state: JsonText,
    result: Option<JsonText>,
}

impl CommitJson {
    /// `c`'s JSON, its state written into a buffer a quarter larger than `state_bytes` (the
    /// run's state, last time), since a state tends to grow.
    fn of(c: &NodeCommit<'_>, state_bytes: usize) -> Result<Self> {
        let result = match c.next {
            Next::End(End::Complete { result }) => {
                Some(JsonText::of(result).map_err(|e| Error::Value {
                    container: "result",
                    key: String::new(),
                    reason: format!("cannot be stored as JSON: {e}"),
                })?)
            }
            _ => None,
        };
        Ok(CommitJson {
            state: state_to_json(c.checkpoint, state_bytes + state_bytes / 4)?,
            result,
        })
    }
}

/// A node's commit, one part after another, each written only if the one before was: the
/// lock, the stage completion (from `started` only), the decision, the checkpoint (deleted
/// instead, when the run completes and `keep` is false), then what follows (the next stage,
/// or the run's end).
fn commit<'a, L>(
    c: &'a NodeCommit<'a>,
    lease: Lease,
    json: &'a CommitJson,
    keep: bool,
    last: L,
) -> AtomicStatement<'a, L> {
    // The run's id is read from the lock, not bound again: no lock, no stage.
    let complete_stage = diesel::update(
        stages::table
            .filter(stages::run_id.eq_any(held_run::table.select(held_run::id)))
            .filter(stages::node_name.eq(c.node))
            .filter(stages::iteration.eq(step(c.iteration)))
            .filter(stages::attempt.eq(step(c.attempt)))
            .filter(stages::status.eq(StatusLiteral(StageStatus::Started))),
    )
    .set((
        stages::status.eq(StatusLiteral(StageStatus::Completed)),
        stages::duration_ms.eq(c.duration_ms),
        stages::state_update.eq(c.update),
        stages::output_snapshot.eq(c.output_snapshot),
    ))
    // The node's name is bound once, and read back by the parts that record it again.
    .returning((stages::run_id, stages::node_name));
    let t = c.transition;
    let decide = diesel::insert_into(decisions::table)
        .values(completed_stage::table.select((
            completed_stage::run_id,
            completed_stage::node_name,
            t.to.into_sql::<Nullable<Text>>(),
            t.predicate.into_sql::<Nullable<Text>>(),
            t.result.into_sql::<Nullable<Bool>>(),
            Some(t.reason).into_sql::<Nullable<Text>>(),
        )))
        .into_columns((
            decisions::run_id,
            decisions::from_node,
            decisions::to_node,
            decisions::predicate_name,
            decisions::predicate_result,
            decisions::reason,
        ))
        .returning((decisions::run_id, decisions::from_node));
    let saves_checkpoint = saves_checkpoint(c, keep);
    let statement = AtomicStatement::new(last)
        .of_shape(commit_shape(c, saves_checkpoint))
        .with_named(HELD_RUN, fence::running_under(lease))
        .with_named(COMPLETED_STAGE, complete_stage)
        .with_named(DECIDED, decide);
    // The message delivered to the node is received by it, with its completion.
    let statement = match c.received {
        Some(id) => statement.with(
            diesel::update(
                messages::table
                    .filter(messages::id.eq(id))
                    .filter(messages::received_step.is_null())
                    .filter(
                        messages::run_id
                            .eq_any(completed_stage::table.select(completed_stage::run_id)),
                    ),
            )
            .set(messages::received_step.eq(step(c.iteration))),
        ),
        None => statement,
    };
    if saves_checkpoint {
        let statement = statement.with_named(CHECKPOINTED, save_checkpoint(&json.state));
        match c.next {
            Next::End(End::Wait(WaitCommit {
                question: Some(question),
                ..
            })) => statement.with_named(ASKED, ask(c, question)),
            _ => statement,
        }
    } else {
        statement.with(diesel::delete(checkpoints::table.filter(
            checkpoints::run_id.eq_any(decided::table.select(decided::run_id)),
        )))
    }
}

/// Whether a node commit saves the checkpoint (rather than deleting it, when the run
/// completes and checkpoints are not kept).
fn saves_checkpoint(c: &NodeCommit<'_>, keep: bool) -> bool {
    keep || !matches!(c.next, Next::End(End::Complete { .. }))
}

/// The last part of a node commit that goes on to another node: that node's `started` stage.
fn next_stage<'a>(c: &'a NodeCommit<'a>, node: &'a str, iteration: u32) -> Part<'a> {
    Box::new(start_stage!(
        completed_stage::run_id,
        node,
        iteration,
        FirstAttempt,
        c.next_input
    ))
}

/// Commit `c` (under `lease`, saving `state`, then writing `then`) as its run's part of a
/// group commit's batch: the values [`commit`] binds, owned.
fn node_part(c: &NodeCommit<'_>, lease: Lease, json: &CommitJson, then: Then) -> NodePart {
    NodePart {
        run_id: lease.run_id,
        lease_token: lease.token,
        node: c.node.to_owned(),
        iteration: step(c.iteration),
        attempt: step(c.attempt),
        duration_ms: c.duration_ms,
        state_update: c.update.clone(),
        output_snapshot: c.output_snapshot.map(RawJson::from_value),
        to_node: c.transition.to.map(str::to_owned),
        predicate_name: c.transition.predicate.map(str::to_owned),
        predicate_result: c.transition.result,
        reason: c.transition.reason.to_owned(),
        state: json.state.clone(),
        then,
    }
}

/// The last part of a node commit that ends the attempt (the run completes, fails or
/// waits), returning the run as it recorded it.
fn run_end<'a>(
    c: &'a NodeCommit<'a>,
    end: End<'a>,
    json: &'a CommitJson,
    saves_checkpoint: bool,
) -> RunReturned<'a> {
    let returning = RunRow::as_returning();
    RunReturned(match (end, saves_checkpoint) {
        (End::Complete { .. }, true) => Box::new(
            end_run!(
                checkpointed::run_id,
                RunStatus::Completed,
                json.result.as_ref(),
                None::<&str>
            )
            .returning(returning),
        ),
        (End::Complete { .. }, false) => Box::new(
            end_run!(
                decided::run_id,
                RunStatus::Completed,
                json.result.as_ref(),
                None::<&str>
            )
            .returning(returning),
        ),
        (End::Fail { message }, _) => Box::new(
            end_run!(
                checkpointed::run_id,
                RunStatus::Failed,
                None::<&serde_json::Value>,
                Some(message)
            )
            .returning(returning),
        ),
        (End::Wait(wait), _) => match wait.question {
            Some(_) => wait_after_node!(asked::run_id, c, wait),
            None => wait_after_node!(checkpointed::run_id, c, wait),
        },
    })
}

/// The last part of a statement, returning the rows of `runs` it wrote.
struct RunReturned<'a>(Part<'a>);

impl QueryFragment<Pg> for RunReturned<'_> {
    fn walk_ast<'b>(&'b self, out: diesel::query_builder::AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }
}

impl diesel::query_builder::Query for RunReturned<'_> {
    type SqlType = diesel::dsl::AsSelect<RunRow, Pg>;
}

/// A statement whose last part is a [`RunReturned`]: sent, it returns the run as it recorded
/// it, if it wrote it. (A trait of its own, implemented per type, because
/// [`PgJournal::write_ending`] bounded by Diesel's `LoadQuery` makes a node commit's future one
/// that the compiler cannot prove `Send`.)
trait ReturnsRun {
    fn returned_run<'c>(
        self,
        conn: &'c mut AsyncPgConnection,
    ) -> BoxFuture<'c, diesel::QueryResult<Option<RunRow>>>
    where
        Self: 'c;
}

impl ReturnsRun for AtomicStatement<'_, RunReturned<'_>> {
    fn returned_run<'c>(
        self,
        conn: &'c mut AsyncPgConnection,
    ) -> BoxFuture<'c, diesel::QueryResult<Option<RunRow>>>
    where
        Self: 'c,
    {
        Box::pin(async move { self.get_result(conn).await.optional() })
    }
}

impl<K: StaticShape> ReturnsRun for OfStaticShape<'_, RunReturned<'_>, K> {
    fn returned_run<'c>(
        self,
        conn: &'c mut AsyncPgConnection,
    ) -> BoxFuture<'c, diesel::QueryResult<Option<RunRow>>>
    where
        Self: 'c,
    {
        Box::pin(async move { self.get_result(conn).await.optional() })
    }
}

static_shape!(
    /// The shape of a node commit that goes on to the next node and received no message:
    /// [`commit_shape`]'s variant 0. It binds the lease (2), the stage completed (6), the
    /// decision (4), the checkpoint and the next stage (3).
    NodeCommitToNext = (NODE_COMMIT, 0), binds 16
);

static_shape!(
    /// The shape of a node commit that completes its run, keeping its checkpoint, and
    /// received no message: [`commit_shape`]'s variant 1. It binds the lease (2), the stage
    /// completed (6), the decision (4), the checkpoint (1) and the run's end (3).
    NodeCommitCompleting = (NODE_COMMIT, 1), binds 16
);

static_shape!(
    /// The shape of a node commit that completes its run, deleting its checkpoint, and
    /// received no message: [`commit_shape`]'s variant 2. It binds what
    /// [`NodeCommitCompleting`] binds but the checkpoint.
    NodeCommitCompletingWithoutCheckpoint = (NODE_COMMIT, 2), binds 15
);

/// The name of [`commit`]'s statement, in its shapes.
const NODE_COMMIT: &str = "node commit";

/// Which of [`commit`]'s variable parts a commit has: what its SQL text depends on.
fn commit_shape(c: &NodeCommit<'_>, saves_checkpoint: bool) -> Shape {
    let next = match (c.next, saves_checkpoint) {
        (Next::Node { .. }, _) => 0,
        (Next::End(End::Complete { .. }), true) => 1,
        (Next::End(End::Complete { .. }), false) => 2,
        (Next::End(End::Fail { .. }), _) => 3,
        (Next::End(End::Wait(_)), _) => 4,
    };
    let wait = match c.next {
        Next::End(End::Wait(wait)) => {
            u32::from(wait.question.is_some()) << 3
                | u32::from(wait.topic.is_some()) << 4
                | u32::from(wait.wake_after.is_some()) << 5
        }
        _ => 0,
    };
    Shape {
        statement: NODE_COMMIT,
        variant: next | wait | u32::from(c.received.is_some()) << 6,
    }
}

/// Records the question a node asked, for the run whose checkpoint the commit saved.
fn ask<'a>(
    c: &'a NodeCommit<'a>,
    question: Question<'a>,
) -> impl QueryFragment<Pg> + Send + Sync + 'a {
    diesel::insert_into(interrupts::table)
        .values(checkpointed::table.select((
            checkpointed::run_id,
            question.key.into_sql::<Text>(),
            c.node.into_sql::<Text>(),
            step(c.iteration).into_sql::<Integer>(),
            question.payload.into_sql::<Jsonb>(),
            question.answer_schema.into_sql::<Nullable<Jsonb>>(),
        )))
        .into_columns((
            interrupts::run_id,
            interrupts::key,
            interrupts::node_name,
            interrupts::iteration,
            interrupts::payload,
            interrupts::answer_schema,
        ))
        .returning(interrupts::run_id)
}

/// Upserts the checkpoint of the run whose decision the commit recorded, at the node the
/// decision was made after.
fn save_checkpoint(state: &JsonText) -> impl QueryFragment<Pg> + Send + Sync + '_ {
    diesel::insert_into(checkpoints::table)
        .values(decided::table.select((
            decided::run_id,
            state.into_sql::<Jsonb>(),
            decided::from_node,
        )))
        .into_columns((
            checkpoints::run_id,
            checkpoints::state_data,
            checkpoints::checkpoint_node,
        ))
        .on_conflict(checkpoints::run_id)
        .do_update()
        .set((
            checkpoints::state_data.eq(excluded(checkpoints::state_data)),
            checkpoints::checkpoint_node.eq(excluded(checkpoints::checkpoint_node)),
        ))
        .returning(checkpoints::run_id)
}

/// The locked run → `status`, with the result or the error.
fn end_held_run<'a>(
    status: RunStatus,
    result: Option<&'a serde_json::Value>,
    error: Option<&'a str>,
) -> impl QueryFragment<Pg> + QueryId + Send + Sync + 'a {
    diesel::update(runs::table.filter(runs::id.eq_any(held_run::table.select(held_run::id)))).set((
        runs::status.eq(status),
        runs::result.eq(result),
        runs::error_message.eq(error),
        runs::completed_at.eq(clock_timestamp().nullable()),
    ))
}

/// Fails the `started` stage of a failed attempt, returning its run: the part a retry
/// depends on.
fn fail_attempt<'a>(
    f: &'a AttemptFailure<'a>,
) -> impl QueryFragment<Pg> + QueryId + Send + Sync + 'a {
    fail_started_stage!(
        f.run_id,
        (f.node, f.iteration, f.attempt),
        f.duration_ms,
        f.error
    )
    .returning(stages::run_id)
}

/// The run whose attempt failed → `waiting`, due after `wait`, its lease given up.
fn wait_until_due(wait: std::time::Duration) -> impl QueryFragment<Pg> + QueryId + Send + Sync {
    let wait = interval(wait);
    diesel::update(
        runs::table.filter(runs::id.eq_any(failed_stage::table.select(failed_stage::run_id))),
    )
    .set((
        runs::status.eq(RunStatus::Waiting),
        runs::wake_at.eq((clock_timestamp() + wait).nullable()),
        runs::owner.eq(None::<String>),
        runs::lease_token.eq(None::<uuid::Uuid>),
        runs::heartbeat_at.eq(None::<chrono::DateTime<chrono::Utc>>),
        runs::lease_expires_at.eq(None::<chrono::DateTime<chrono::Utc>>),
    ))
}
