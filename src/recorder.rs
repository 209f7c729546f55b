//! The PostgreSQL journal: each durable step of a run as one statement.
//!
//! A completed node is one [`AtomicStatement`]: its stage completion, its checkpoint, its
//! decision and either the next node's `started` stage or the run's final status. After any
//! crash, the stages, decisions and checkpoint of a run agree. Every part is conditional on
//! the run still being `running` under this recorder's lease: a run cancelled or taken over
//! elsewhere stops writing at once (fencing).

use diesel::dsl::{exists, now};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Jsonb, Nullable, Text};
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use crate::atomic_statement::AtomicStatement;
use crate::checkpoint::state_to_json;
use crate::db::Pool;
use crate::error::Result;
use crate::journal::{Journal, Next, NodeCommit, NodeFailure};
use crate::lease::Lease;
use crate::model::{RunId, RunStatus, StageStatus};
use crate::registry::BoxFuture;
use crate::schema::{checkpoints, decisions, runs, stages};

/// The run, `running` under this lease: the condition of every write an executor makes.
macro_rules! held {
    ($lease:expr) => {
        runs::table
            .find($lease.run_id)
            .filter(runs::status.eq(RunStatus::Running))
            .filter(runs::lease_token.eq($lease.token))
    };
}

/// Writes one run's steps to the workflow tables, under its lease.
pub(crate) struct PgRecorder {
    pool: Pool,
    keep_checkpoints: bool,
    lease: Lease,
}

impl PgRecorder {
    /// A recorder for the run `lease` holds. With `keep_checkpoints` false, a completed run's
    /// checkpoint is deleted in the statement that completes it.
    pub(crate) fn new(pool: Pool, keep_checkpoints: bool, lease: Lease) -> Self {
        PgRecorder {
            pool,
            keep_checkpoints,
            lease,
        }
    }
}

fn iteration(i: u32) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

impl Journal for PgRecorder {
    fn node_started<'a>(
        &'a self,
        run_id: RunId,
        node: &'a str,
        step: u32,
        input: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await?;
            debug_assert_eq!(run_id, self.lease.run_id);
            let inserted = start_stage(self.lease, node, step, input)
                .execute(&mut conn)
                .await?;
            Ok(inserted == 1)
        })
    }

    fn node_completed<'a>(&'a self, c: &'a NodeCommit<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let state = state_to_json(c.checkpoint)?;
            let (keep, lease) = (self.keep_checkpoints, self.lease);
            let mut conn = self.pool.get().await?;
            let written = match c.next {
                Next::Node { node, iteration } => {
                    commit(
                        c,
                        lease,
                        &state,
                        keep,
                        start_stage(lease, node, iteration, c.output),
                    )
                    .execute(&mut conn)
                    .await?
                }
                Next::Complete { result } => {
                    let end = end_run(lease, RunStatus::Completed, Some(result), None);
                    commit(c, lease, &state, keep, end)
                        .execute(&mut conn)
                        .await?
                }
                Next::Fail { message } => {
                    let end = end_run(lease, RunStatus::Failed, None, Some(message));
                    commit(c, lease, &state, keep, end)
                        .execute(&mut conn)
                        .await?
                }
            };
            Ok(written == 1)
        })
    }

    fn node_failed<'a>(&'a self, f: &'a NodeFailure<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let stage = stages::table
                .filter(stages::run_id.eq(f.run_id))
                .filter(stages::node_name.eq(f.node))
                .filter(stages::iteration.eq(iteration(f.iteration)))
                .filter(stages::status.eq(StageStatus::Started));
            let fail_stage = (
                stages::status.eq(StageStatus::Failed),
                stages::duration_ms.eq(f.duration_ms),
                stages::error_message.eq(f.error),
            );
            let mut conn = self.pool.get().await?;
            let written = match f.run_error {
                Some(message) => {
                    AtomicStatement::new(end_run(
                        self.lease,
                        RunStatus::Failed,
                        None,
                        Some(message),
                    ))
                    .with(diesel::update(stage.filter(exists(held!(self.lease)))).set(fail_stage))
                    .execute(&mut conn)
                    .await?
                }
                // Cancelled: close the stage of a run that is cancelled under this lease (and
                // only then: a run taken over by another worker is not ours to touch).
                None => {
                    let cancelled = exists(
                        runs::table
                            .find(self.lease.run_id)
                            .filter(runs::status.eq(RunStatus::Cancelled))
                            .filter(runs::lease_token.eq(self.lease.token)),
                    );
                    diesel::update(stage.filter(cancelled))
                        .set(fail_stage)
                        .execute(&mut conn)
                        .await?
                }
            };
            Ok(written == 1)
        })
    }

    fn run_failed<'a>(&'a self, run_id: RunId, message: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await?;
            debug_assert_eq!(run_id, self.lease.run_id);
            let written = end_run(self.lease, RunStatus::Failed, None, Some(message))
                .execute(&mut conn)
                .await?;
            Ok(written == 1)
        })
    }
}

/// A node's commit: stage completion, decision and checkpoint, then `last` (the next stage, or
/// the run's end). A completing run's checkpoint is deleted instead of saved unless `keep`.
fn commit<'a, L>(
    c: &'a NodeCommit<'a>,
    lease: Lease,
    state: &'a serde_json::Value,
    keep: bool,
    last: L,
) -> AtomicStatement<'a, L> {
    let complete_stage = diesel::update(
        stages::table
            .filter(stages::run_id.eq(c.run_id))
            .filter(stages::node_name.eq(c.node))
            .filter(stages::iteration.eq(iteration(c.iteration)))
            .filter(exists(held!(lease))),
    )
    .set((
        stages::status.eq(StageStatus::Completed),
        stages::duration_ms.eq(c.duration_ms),
        stages::output_snapshot.eq(c.output),
    ));
    let t = c.transition;
    let decide = diesel::insert_into(decisions::table)
        .values(held!(lease).select((
            runs::id,
            c.node.into_sql::<Text>(),
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
        ));
    let statement = AtomicStatement::new(last).with(complete_stage).with(decide);
    if matches!(c.next, Next::Complete { .. }) && !keep {
        statement.with(diesel::delete(
            checkpoints::table
                .find(c.run_id)
                .filter(exists(held!(lease))),
        ))
    } else {
        statement.with(save_checkpoint(lease, c.node, state))
    }
}

/// Inserts the `started` stage of `node`, if the run is held under `lease`.
fn start_stage<'a>(
    lease: Lease,
    node: &'a str,
    step: u32,
    input: &'a serde_json::Value,
) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg>
+ diesel::query_builder::QueryId
+ Send
+ Sync
+ 'a {
    diesel::insert_into(stages::table)
        .values(held!(lease).select((
            runs::id,
            node.into_sql::<Text>(),
            iteration(step).into_sql::<Integer>(),
            StageStatus::Started.into_sql::<Text>(),
            Some(input).into_sql::<Nullable<Jsonb>>(),
        )))
        .into_columns((
            stages::run_id,
            stages::node_name,
            stages::iteration,
            stages::status,
            stages::input_snapshot,
        ))
}

/// Upserts the checkpoint of a run held under `lease`.
fn save_checkpoint<'a>(
    lease: Lease,
    node: &'a str,
    state: &'a serde_json::Value,
) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg> + Send + Sync + 'a {
    diesel::insert_into(checkpoints::table)
        .values(held!(lease).select((runs::id, state.into_sql::<Jsonb>(), node.into_sql::<Text>())))
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
}

/// `running` under `lease` → `status` (completed or failed), with the result or the error.
fn end_run<'a>(
    lease: Lease,
    status: RunStatus,
    result: Option<&'a serde_json::Value>,
    error: Option<&'a str>,
) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg>
+ diesel::query_builder::QueryId
+ Send
+ Sync
+ 'a {
    diesel::update(held!(lease)).set((
        runs::status.eq(status),
        runs::result.eq(result),
        runs::error_message.eq(error),
        runs::completed_at.eq(now),
    ))
}
