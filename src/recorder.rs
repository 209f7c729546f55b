//! The PostgreSQL journal: each durable step of a run as one statement.
//!
//! A completed node is one [`AtomicStatement`]: its stage completion, its checkpoint, its
//! decision and either the next node's `started` stage or the run's final status. After any
//! crash, the stages, decisions and checkpoint of a run agree. Every part is conditional on
//! the run still being `running`, so a run cancelled from elsewhere stops writing at once.

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
use crate::model::{RunId, RunStatus, StageStatus};
use crate::registry::BoxFuture;
use crate::schema::{checkpoints, decisions, runs, stages};

/// The run is still `running`: the condition of every write an executor makes.
macro_rules! live {
    ($run_id:expr) => {
        exists(
            runs::table
                .find($run_id)
                .filter(runs::status.eq(RunStatus::Running)),
        )
    };
}

/// Writes a run's steps to the workflow tables.
pub(crate) struct PgRecorder {
    pool: Pool,
    keep_checkpoints: bool,
}

impl PgRecorder {
    /// A recorder using `pool`. With `keep_checkpoints` false, a completed run's checkpoint
    /// is deleted in the statement that completes it.
    pub(crate) fn new(pool: Pool, keep_checkpoints: bool) -> Self {
        PgRecorder {
            pool,
            keep_checkpoints,
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
            let inserted = start_stage(run_id, node, step, input)
                .execute(&mut conn)
                .await?;
            Ok(inserted == 1)
        })
    }

    fn node_completed<'a>(&'a self, c: &'a NodeCommit<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let state = state_to_json(c.checkpoint)?;
            let keep = self.keep_checkpoints;
            let mut conn = self.pool.get().await?;
            let written = match c.next {
                Next::Node { node, iteration } => {
                    commit(
                        c,
                        &state,
                        keep,
                        start_stage(c.run_id, node, iteration, c.output),
                    )
                    .execute(&mut conn)
                    .await?
                }
                Next::Complete { result } => {
                    let end = end_run(c.run_id, RunStatus::Completed, Some(result), None);
                    commit(c, &state, keep, end).execute(&mut conn).await?
                }
                Next::Fail { message } => {
                    let end = end_run(c.run_id, RunStatus::Failed, None, Some(message));
                    commit(c, &state, keep, end).execute(&mut conn).await?
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
                    AtomicStatement::new(end_run(f.run_id, RunStatus::Failed, None, Some(message)))
                        .with(diesel::update(stage.filter(live!(f.run_id))).set(fail_stage))
                        .execute(&mut conn)
                        .await?
                }
                // Cancelled: close the stage of a run that is cancelled (and only then).
                None => {
                    let cancelled = exists(
                        runs::table
                            .find(f.run_id)
                            .filter(runs::status.eq(RunStatus::Cancelled)),
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
            let written = end_run(run_id, RunStatus::Failed, None, Some(message))
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
    state: &'a serde_json::Value,
    keep: bool,
    last: L,
) -> AtomicStatement<'a, L> {
    let complete_stage = diesel::update(
        stages::table
            .filter(stages::run_id.eq(c.run_id))
            .filter(stages::node_name.eq(c.node))
            .filter(stages::iteration.eq(iteration(c.iteration)))
            .filter(live!(c.run_id)),
    )
    .set((
        stages::status.eq(StageStatus::Completed),
        stages::duration_ms.eq(c.duration_ms),
        stages::output_snapshot.eq(c.output),
    ));
    let t = c.transition;
    let decide = diesel::insert_into(decisions::table)
        .values(
            runs::table
                .find(c.run_id)
                .filter(runs::status.eq(RunStatus::Running))
                .select((
                    runs::id,
                    c.node.into_sql::<Text>(),
                    t.to.into_sql::<Nullable<Text>>(),
                    t.predicate.into_sql::<Nullable<Text>>(),
                    t.result.into_sql::<Nullable<Bool>>(),
                    Some(t.reason).into_sql::<Nullable<Text>>(),
                )),
        )
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
            checkpoints::table.find(c.run_id).filter(live!(c.run_id)),
        ))
    } else {
        statement.with(save_checkpoint(c.run_id, c.node, state))
    }
}

/// Inserts the `started` stage of `node`, if the run is running.
fn start_stage<'a>(
    run_id: RunId,
    node: &'a str,
    step: u32,
    input: &'a serde_json::Value,
) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg>
+ diesel::query_builder::QueryId
+ Send
+ Sync
+ 'a {
    diesel::insert_into(stages::table)
        .values(
            runs::table
                .find(run_id)
                .filter(runs::status.eq(RunStatus::Running))
                .select((
                    runs::id,
                    node.into_sql::<Text>(),
                    iteration(step).into_sql::<Integer>(),
                    StageStatus::Started.into_sql::<Text>(),
                    Some(input).into_sql::<Nullable<Jsonb>>(),
                )),
        )
        .into_columns((
            stages::run_id,
            stages::node_name,
            stages::iteration,
            stages::status,
            stages::input_snapshot,
        ))
}

/// Upserts the checkpoint of a running run.
fn save_checkpoint<'a>(
    run_id: RunId,
    node: &'a str,
    state: &'a serde_json::Value,
) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg> + Send + Sync + 'a {
    diesel::insert_into(checkpoints::table)
        .values(
            runs::table
                .find(run_id)
                .filter(runs::status.eq(RunStatus::Running))
                .select((runs::id, state.into_sql::<Jsonb>(), node.into_sql::<Text>())),
        )
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

/// `running` → `status` (completed or failed), with the result or the error.
fn end_run<'a>(
    run_id: RunId,
    status: RunStatus,
    result: Option<&'a serde_json::Value>,
    error: Option<&'a str>,
) -> impl diesel::query_builder::QueryFragment<diesel::pg::Pg>
+ diesel::query_builder::QueryId
+ Send
+ Sync
+ 'a {
    diesel::update(
        runs::table
            .find(run_id)
            .filter(runs::status.eq(RunStatus::Running)),
    )
    .set((
        runs::status.eq(status),
        runs::result.eq(result),
        runs::error_message.eq(error),
        runs::completed_at.eq(now),
    ))
}
