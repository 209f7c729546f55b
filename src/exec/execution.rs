//! The handle of a run being executed: its record, its progress events, its end.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::events::Event;
use crate::error::{Error, Result};
use crate::model::{Run, RunId, RunStatus};
use crate::query::repository;
use crate::store::backoff::Backoff;
use crate::store::db::Pool;

/// A run started by [`Executor::start`](crate::Executor::start) or [`Executor::resume`](crate::Executor::resume): its record, its progress
/// events, and its end. Dropping it does not stop the run.
pub struct Execution {
    pub(super) run: Run,
    pub(super) events: mpsc::UnboundedReceiver<Event>,
    pub(super) task: JoinHandle<Result<Run>>,
    pub(super) pool: Pool,
    /// How long to wait for a database out of reach (a lease).
    pub(super) patience: Duration,
}

impl Execution {
    /// The run as it was when execution began: `running`.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// The run's id.
    pub fn run_id(&self) -> RunId {
        self.run.id
    }

    /// The next progress event; `None` after the last, which is [`Event::GraphCompleted`]
    /// (or [`Event::Handover`] if this executor stopped executing the run before its end).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Waits for the run to end and returns its record as stored: `completed`, `failed` or
    /// `cancelled`, with its result or error, or `waiting` (for an answer or a timer: a
    /// worker continues it; `wait` does not wait for people). Events not yet read are
    /// dropped.
    ///
    /// A run whose writes failed (an output PostgreSQL cannot store, say) is recorded
    /// `failed` saying so, and that record is what this returns. If this executor lost the
    /// run (it stalled, or lost the database, for longer than the run's lease, and a worker
    /// took the run over), this follows the run until whoever executes it now ends it.
    /// [`Error::Unavailable`] only if the database stays out of reach for longer than a
    /// lease lasts.
    pub async fn wait(self) -> Result<Run> {
        let (pool, patience) = (self.pool.clone(), self.patience);
        let run = self.ended().await?;
        if stops_waiting(run.status) {
            return Ok(run);
        }
        follow(&pool, run.id, patience).await
    }

    /// Waits for this executor's attempt at the run to end, and returns the run as it was
    /// then (still `running` if the attempt lost it).
    pub(crate) async fn ended(self) -> Result<Run> {
        drop(self.events);
        let id = self.run.id;
        self.task.await.unwrap_or_else(|e| {
            Err(Error::Value {
                container: "run",
                key: id.to_string(),
                reason: format!("its task ended abnormally: {e}"),
            })
        })
    }
}

/// Whether a run in `status` is as far as [`Execution::wait`] follows it: ended, or waiting
/// for an answer or a timer.
fn stops_waiting(status: RunStatus) -> bool {
    status.is_terminal() || status == RunStatus::Waiting
}

/// The run's record, once it has ended; read every so often.
async fn follow(pool: &Pool, run_id: RunId, patience: Duration) -> Result<Run> {
    let mut pauses = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(pauses.next_pause()).await;
        let run = read_run(pool, run_id, patience).await?;
        if stops_waiting(run.status) {
            return Ok(run);
        }
    }
}

/// The run's record, read again while the database is out of reach, for up to `patience`.
pub(super) async fn read_run(pool: &Pool, run_id: RunId, patience: Duration) -> Result<Run> {
    let give_up = Instant::now() + patience;
    let mut pauses = Backoff::for_writes();
    loop {
        let read = async {
            let mut conn = pool.get().await?;
            repository::find_run(&mut conn, run_id).await
        }
        .await;
        match read {
            Err(e) if e.is_connection_lost() && Instant::now() < give_up => {
                tokio::time::sleep(pauses.next_pause()).await;
            }
            other => return other,
        }
    }
}
