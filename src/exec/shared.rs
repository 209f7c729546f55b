//! What the executor's handle, its attempts and its heartbeat share: the pool, the registry
//! and runtime, the configuration, and the table of attempts executing in this process.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ExecutorConfig;
use super::observer::Observers;
use crate::model::RunId;
use crate::store::db::Pool;
use crate::store::group_commit::GroupCommit;
use crate::store::lease::LeaseDeadline;
use crate::store::run_connections::RunConnections;
use crate::workflow::registry::Registry;
use crate::workflow::runtime::Runtime;

/// An executor's state, shared by its clones, its attempts and its heartbeat.
pub(super) struct Inner {
    pub(super) pool: Pool,
    /// The pool as the runs use it: all of it but one connection, kept for the heartbeat.
    pub(super) connections: RunConnections,
    /// Node commits batched across runs, when the configuration says so.
    pub(super) group_commit: Option<Arc<GroupCommit>>,
    pub(super) registry: Registry,
    pub(super) runtime: Runtime,
    pub(super) config: ExecutorConfig,
    /// Who it is, as recorded in `runs.owner`.
    pub(super) owner: String,
    pub(super) observers: Observers,
    /// The attempts executing in this process, by lease token: one run may have two for a
    /// moment (cancelled and resumed at once, or taken over from this very process after it
    /// stalled), and each must keep its own heartbeat and interrupt.
    pub(super) active: Mutex<HashMap<uuid::Uuid, Active>>,
    pub(super) tasks: TaskTracker,
    /// One permit per run `start` and `resume` may keep executing, when they are bounded.
    pub(super) run_permits: Option<Arc<tokio::sync::Semaphore>>,
    pub(super) closing: AtomicBool,
    /// Held (shared) from a start's check of `closing` until its task is spawned; shutdown
    /// takes it exclusively once `closing` is set, so that every run it must drain has been
    /// spawned.
    pub(super) starting: RwLock<()>,
    /// Starts the heartbeat task once, on the first run.
    pub(super) heartbeat: std::sync::Once,
    /// Stops the heartbeat task.
    pub(super) stopped: CancellationToken,
}

/// An attempt executing here.
pub(super) struct Active {
    pub(super) run_id: RunId,
    pub(super) cancel: CancellationToken,
    pub(super) deadline: LeaseDeadline,
}

impl Inner {
    pub(super) fn active(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, Active>> {
        // The map stays consistent even if a holder panicked: each operation is one call.
        self.active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
