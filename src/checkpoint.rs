//! Checkpoints: the state of a run after its last completed node, from which it resumes.
//!
//! [`CheckpointStore`] is the interface of a checkpoint store: save (upsert by run id),
//! load, delete and list. [`PgCheckpointStore`] keeps checkpoints in the `checkpoints` table;
//! [`MemoryCheckpointStore`] keeps them in memory, for tests and for code that runs graphs
//! itself.
//!
//! The executor writes each checkpoint in the same statement as the node's stage and
//! decision, so the three always agree, and loads it through [`PgCheckpointStore`] when a run
//! resumes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use diesel::sql_types::{Jsonb, Text};

use crate::atomic_statement::AtomicStatement;
use crate::db::Pool;
use crate::error::{Error, Result};
use crate::fence::{self, HELD_RUN, held_run};
use crate::graph::State;
use crate::lifecycle::refusal;
use crate::model::{RunId, RunStatus};
use crate::registry::BoxFuture;
use crate::schema::{checkpoints, runs};

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

/// Where checkpoints are kept.
pub trait CheckpointStore: Send + Sync {
    /// Saves `state` as the checkpoint of `run_id`, replacing any earlier one. The state's
    /// [`checkpoint_node`](State::checkpoint_node) must be set.
    fn save<'a>(&'a self, run_id: RunId, state: &'a State) -> BoxFuture<'a, Result<()>>;
    /// The checkpoint of `run_id`, if any.
    fn load(&self, run_id: RunId) -> BoxFuture<'_, Result<Option<State>>>;
    /// Removes the checkpoint of `run_id`; whether there was one.
    fn delete(&self, run_id: RunId) -> BoxFuture<'_, Result<bool>>;
    /// Every checkpoint, most recently written first.
    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointInfo>>>;
}

/// The node a state to be saved was checkpointed after.
fn checkpoint_node(state: &State) -> Result<&str> {
    state.checkpoint_node().ok_or_else(|| Error::Value {
        container: "state",
        key: "checkpoint_node".to_owned(),
        reason: "a checkpoint needs the node it was taken after; the state has none".to_owned(),
    })
}

/// A state as stored in `checkpoints.state_data`.
pub(crate) fn state_to_json(state: &State) -> Result<Value> {
    serde_json::to_value(state).map_err(|e| Error::Value {
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
        let data = state_to_json(state)?;
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

impl CheckpointStore for PgCheckpointStore {
    fn save<'a>(&'a self, run_id: RunId, state: &'a State) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await?;
            Self::save_with(&mut conn, run_id, state).await
        })
    }

    fn load(&self, run_id: RunId) -> BoxFuture<'_, Result<Option<State>>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await?;
            Self::load_with(&mut conn, run_id).await
        })
    }

    fn delete(&self, run_id: RunId) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await?;
            Self::delete_with(&mut conn, run_id).await
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointInfo>>> {
        Box::pin(async move {
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
        })
    }
}

/// A saved state and when it was saved.
type Saved = (State, DateTime<Utc>);

/// Checkpoints in memory: for graphs run without a database, and for tests.
#[derive(Clone, Default)]
pub struct MemoryCheckpointStore {
    saved: Arc<Mutex<HashMap<RunId, Saved>>>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryCheckpointStore::default()
    }

    fn saved(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Saved>> {
        // A panic while holding the lock cannot leave the map half-written: recover it.
        self.saved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn save<'a>(&'a self, run_id: RunId, state: &'a State) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            checkpoint_node(state)?;
            self.saved().insert(run_id, (state.clone(), Utc::now()));
            Ok(())
        })
    }

    fn load(&self, run_id: RunId) -> BoxFuture<'_, Result<Option<State>>> {
        Box::pin(async move { Ok(self.saved().get(&run_id).map(|(s, _)| s.clone())) })
    }

    fn delete(&self, run_id: RunId) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move { Ok(self.saved().remove(&run_id).is_some()) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CheckpointInfo>>> {
        Box::pin(async move {
            let mut list: Vec<CheckpointInfo> = self
                .saved()
                .iter()
                .map(|(run_id, (state, at))| CheckpointInfo {
                    run_id: *run_id,
                    checkpoint_node: state.checkpoint_node().unwrap_or_default().to_owned(),
                    updated_at: *at,
                })
                .collect();
            list.sort_by(|a, b| {
                b.updated_at
                    .cmp(&a.updated_at)
                    .then(a.run_id.cmp(&b.run_id))
            });
            Ok(list)
        })
    }
}
