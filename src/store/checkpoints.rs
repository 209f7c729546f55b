//! Checkpoints: the state of a run after its last completed node, from which it resumes.
//!
//! The executor writes each checkpoint in the same statement as the node's stage and
//! decision, so the three always agree, and loads it through [`PgCheckpointStore`] when a run
//! resumes. From outside an execution, [`PgCheckpointStore`] reads them, and edits or removes
//! those of runs nothing executes: save (upsert by run id), load, delete and list.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use diesel::sql_types::{Jsonb, Text};

use crate::error::{Error, Result};
use crate::graph::State;
use crate::model::{JsonText, RunId, RunStatus};
use crate::store::atomic_statement::AtomicStatement;
use crate::store::db::Pool;
use crate::store::fence::{self, HELD_RUN, held_run};
use crate::store::runs::refusal;
use crate::store::schema::{checkpoints, runs};

/// What is known of a saved checkpoint without loading its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The run it belongs to.
    pub run_id: RunId,
    /// The node after which it was taken.
    pub checkpoint_node: String,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

/// The node a state to be saved was checkpointed after.
fn checkpoint_node(state: &State) -> Result<&str> {
    state.checkpoint_node().ok_or_else(|| Error::Value {
        container: "state",
        key: "checkpoint_node".to_owned(),
        reason: "a checkpoint needs the node it was taken after; the state has none".to_owned(),
    })
}

/// A state as stored in `checkpoints.state_data`: serialized straight to text, since it is
/// written at every node.
pub(crate) fn state_to_json(state: &State, capacity: usize) -> Result<JsonText> {
    state.to_json_text(capacity).map_err(|e| Error::Value {
        container: "state",
        key: String::new(),
        reason: format!("cannot be stored as JSON: {e}"),
    })
}

/// A state read back from `checkpoints.state_data`.
pub(crate) fn state_from_json(run_id: RunId, data: Value) -> Result<State> {
    serde_json::from_value(data).map_err(|e| Error::Value {
        container: "checkpoint",
        key: run_id.to_string(),
        reason: format!("is not a state this library wrote: {e}"),
    })
}

/// Checkpoints in the `checkpoints` table.
#[derive(Clone)]
pub struct PgCheckpointStore {
    pool: Pool,
}

impl PgCheckpointStore {
    /// A store using connections of `pool`.
    pub fn new(pool: Pool) -> Self {
        PgCheckpointStore { pool }
    }

    /// Saves `state` as the checkpoint of `run_id`, replacing any earlier one; see
    /// [`PgCheckpointStore::save_with`]. The state's
    /// [`checkpoint_node`](State::checkpoint_node) must be set (a state loaded from a
    /// checkpoint has it).
    pub async fn save(&self, run_id: RunId, state: &State) -> Result<()> {
        Self::save_with(&mut *self.pool.get().await?, run_id, state).await
    }

    /// The checkpoint of `run_id`, if any. (Not `load`: Diesel's `RunQueryDsl::load` applies
    /// to every type and would be called instead wherever it is imported.)
    pub async fn get(&self, run_id: RunId) -> Result<Option<State>> {
        Self::load_with(&mut *self.pool.get().await?, run_id).await
    }

    /// Removes the checkpoint of `run_id`; whether there was one. See
    /// [`PgCheckpointStore::delete_with`].
    pub async fn delete(&self, run_id: RunId) -> Result<bool> {
        Self::delete_with(&mut *self.pool.get().await?, run_id).await
    }

    /// Every checkpoint, most recently written first.
    pub async fn list(&self) -> Result<Vec<CheckpointInfo>> {
        let rows: Vec<(RunId, String, DateTime<Utc>)> = checkpoints::table
            .select((
                checkpoints::run_id,
                checkpoints::checkpoint_node,
                checkpoints::updated_at,
            ))
            .order_by((checkpoints::updated_at.desc(), checkpoints::run_id.asc()))
            .load(&mut *self.pool.get().await?)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(run_id, checkpoint_node, updated_at)| CheckpointInfo {
                run_id,
                checkpoint_node,
                updated_at,
            })
            .collect())
    }

    /// Saves on a given connection (inside a caller's transaction, say): to edit the state a
    /// `failed` or `cancelled` run will resume from. A run that executes (or waits to) is not
    /// refused: its executor alone writes its checkpoint, so this is
    /// [`Error::InvalidStatus`] (400) for a `pending` or `running` run, and for a
    /// `completed` one; [`Error::RunNotFound`] (404) for an unknown run.
    pub async fn save_with(
        conn: &mut AsyncPgConnection,
        run_id: RunId,
        state: &State,
    ) -> Result<()> {
        let node = checkpoint_node(state)?;
        let data = state_to_json(state, 0)?;
        let save = diesel::insert_into(checkpoints::table)
            .values(held_run::table.select((
                held_run::id,
                (&data).into_sql::<Jsonb>(),
                node.into_sql::<Text>(),
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
            ));
        let saved = AtomicStatement::new(save)
            .with_named(HELD_RUN, fence::resting(run_id))
            .execute(conn)
            .await?;
        if saved == 0 {
            return Err(refusal(
                conn,
                run_id,
                "save a checkpoint of (only a failed or cancelled run's can be saved)",
            )
            .await);
        }
        Ok(())
    }

    /// Loads on a given connection.
    pub async fn load_with(conn: &mut AsyncPgConnection, run_id: RunId) -> Result<Option<State>> {
        let data: Option<Value> = checkpoints::table
            .find(run_id)
            .select(checkpoints::state_data)
            .first(conn)
            .await
            .optional()?;
        data.map(|d| state_from_json(run_id, d)).transpose()
    }

    /// Deletes on a given connection; whether there was one. Like [`Self::save_with`], only
    /// for a run that does not execute (a `failed` or `cancelled` one, which can then no
    /// longer be resumed, or a `completed` one): [`Error::InvalidStatus`] otherwise.
    pub async fn delete_with(conn: &mut AsyncPgConnection, run_id: RunId) -> Result<bool> {
        let finished = runs::table
            .find(run_id)
            .filter(runs::status.eq_any([
                RunStatus::Completed,
                RunStatus::Failed,
                RunStatus::Cancelled,
            ]))
            .select(runs::id)
            .for_no_key_update();
        let delete = diesel::delete(
            checkpoints::table
                .filter(checkpoints::run_id.eq_any(held_run::table.select(held_run::id))),
        )
        .returning(checkpoints::run_id);
        let deleted: Vec<RunId> = AtomicStatement::new(delete)
            .with_named(HELD_RUN, finished)
            .get_results(conn)
            .await?;
        if !deleted.is_empty() {
            return Ok(true);
        }
        let running = runs::table
            .find(run_id)
            .filter(runs::status.eq_any([RunStatus::Pending, RunStatus::Running]))
            .count()
            .get_result::<i64>(conn)
            .await?;
        if running > 0 {
            return Err(refusal(conn, run_id, "delete the checkpoint of").await);
        }
        Ok(false)
    }
}
