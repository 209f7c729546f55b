//! What happens during a run, as typed events: for progress streams, logs and metrics.
//!
//! Events are emitted after the fact they report has been recorded: a `NodeCompleted` event
//! means the stage, its decision and the checkpoint are in the database.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::model::{RunId, RunStatus};

/// One thing that happened during a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub enum Event {
    /// The run started executing its graph (or resumed it).
    GraphStarted {
        /// The run.
        run_id: RunId,
        /// Its workflow.
        workflow: String,
        /// The first node to execute.
        node: String,
        /// That node's step number.
        iteration: u32,
        /// Whether this continues an earlier attempt.
        resumed: bool,
    },
    /// A node started.
    NodeStarted {
        /// The run.
        run_id: RunId,
        /// The node.
        node: String,
        /// Its step number.
        iteration: u32,
        /// Which attempt at the step, from 1.
        attempt: u32,
        /// The state's data it received (shared, not copied, by every observer).
        #[cfg_attr(feature = "http", schema(value_type = Object))]
        input: Arc<Value>,
    },
    /// A node finished, successfully or not.
    NodeCompleted {
        /// The run.
        run_id: RunId,
        /// The node.
        node: String,
        /// Its step number.
        iteration: u32,
        /// Which attempt at the step, from 1.
        attempt: u32,
        /// How long it took.
        duration_ms: u64,
        /// The state's data it returned, if it succeeded (shared, not copied, by every
        /// observer).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "http", schema(value_type = Option<Object>))]
        output: Option<Arc<Value>>,
        /// Its error, if it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An attempt at a node failed and will be tried again (after `NodeCompleted` with its
    /// error).
    NodeRetrying {
        /// The run.
        run_id: RunId,
        /// The node.
        node: String,
        /// Its step number.
        iteration: u32,
        /// The attempt to come, from 2.
        attempt: u32,
        /// The most attempts its retry policy allows.
        max_attempts: u32,
        /// How long until that attempt, in milliseconds.
        retry_in_ms: u64,
        /// Whether the run gives up its lease and worker meanwhile (a long wait): it is
        /// `waiting`, and any worker continues it when it is due.
        released: bool,
        /// The failed attempt's error.
        error: String,
    },
    /// The run moved along an edge, or ended at a node.
    EdgeTransition {
        /// The run.
        run_id: RunId,
        /// The node that completed.
        from: String,
        /// The next node; absent when the run ended at `from`.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// The predicate of the edge taken.
        #[serde(skip_serializing_if = "Option::is_none")]
        predicate: Option<String>,
        /// What it returned.
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<bool>,
        /// Why, in words.
        reason: String,
    },
    /// The state after a node was saved.
    CheckpointSaved {
        /// The run.
        run_id: RunId,
        /// The node it was taken after.
        node: String,
        /// That node's step number.
        iteration: u32,
    },
    /// A resumed run loaded its checkpoint.
    CheckpointLoaded {
        /// The run.
        run_id: RunId,
        /// The node it was taken after.
        node: String,
        /// That node's step number.
        iteration: u32,
    },
    /// A run resumed: where it continues.
    Resumed {
        /// The run.
        run_id: RunId,
        /// The node it continues at.
        node: String,
        /// That node's step number: after every earlier one.
        iteration: u32,
    },
    /// The run would exceed its graph's `max_iterations`: a runaway cycle.
    CycleDetected {
        /// The run.
        run_id: RunId,
        /// The node it was about to execute.
        node: String,
        /// The step it would have been.
        iteration: u32,
        /// The bound.
        max_iterations: u32,
    },
    /// This executor stopped executing the run before the run ended: it lost the run's lease
    /// (it stalled, or lost the database, for longer than the lease, and a worker took the
    /// run over) or handed the run back while shutting down. The run goes on wherever it is
    /// taken over; this is the last event this executor sends for it.
    Handover {
        /// The run.
        run_id: RunId,
        /// What happened.
        reason: String,
    },
    /// A node asked a question and completed: the run waits for the answer to `key`.
    Interrupted {
        /// The run.
        run_id: RunId,
        /// The node that asked.
        node: String,
        /// Its step number.
        iteration: u32,
        /// What to answer.
        key: String,
        /// The question.
        question: Value,
        /// How long the run waits for an answer, in milliseconds, if not for ever.
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// A node completed waiting for a message on `topic`: the run waits for it.
    AwaitingMessage {
        /// The run.
        run_id: RunId,
        /// The node that waits.
        node: String,
        /// Its step number.
        iteration: u32,
        /// The topic.
        topic: String,
        /// How long the run waits for it, in milliseconds, if not for ever.
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// A node completed asking the run to sleep: it waits `for_ms`, holding no worker.
    Sleeping {
        /// The run.
        run_id: RunId,
        /// The node.
        node: String,
        /// Its step number.
        iteration: u32,
        /// How long, in milliseconds.
        for_ms: u64,
    },
    /// The run is `waiting`, with no lease and no worker: this executor's last event for
    /// it. A worker continues it when it is due (`wake_at`) or answered.
    Waiting {
        /// The run.
        run_id: RunId,
        /// When it is due; absent while it waits for an answer with no timeout.
        #[serde(skip_serializing_if = "Option::is_none")]
        wake_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The run stopped.
    GraphCompleted {
        /// The run.
        run_id: RunId,
        /// How it ended: completed, failed or cancelled.
        status: RunStatus,
        /// What it produced, if it completed (shared, not copied, by every observer).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "http", schema(value_type = Option<Object>))]
        result: Option<Arc<Value>>,
        /// Why it failed, if it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl Event {
    /// The run the event belongs to.
    pub fn run_id(&self) -> RunId {
        match self {
            Event::GraphStarted { run_id, .. }
            | Event::NodeStarted { run_id, .. }
            | Event::NodeCompleted { run_id, .. }
            | Event::NodeRetrying { run_id, .. }
            | Event::Waiting { run_id, .. }
            | Event::Interrupted { run_id, .. }
            | Event::Sleeping { run_id, .. }
            | Event::AwaitingMessage { run_id, .. }
            | Event::EdgeTransition { run_id, .. }
            | Event::CheckpointSaved { run_id, .. }
            | Event::CheckpointLoaded { run_id, .. }
            | Event::Resumed { run_id, .. }
            | Event::CycleDetected { run_id, .. }
            | Event::Handover { run_id, .. }
            | Event::GraphCompleted { run_id, .. } => *run_id,
        }
    }

    /// Whether this is one of the events every node step makes (`NodeStarted`,
    /// `NodeCompleted`, `EdgeTransition`, `CheckpointSaved`): those that an executor does not
    /// make when no observer wants them ([`Observer::observes_steps`]).
    ///
    /// [`Observer::observes_steps`]: crate::Observer::observes_steps
    pub fn is_step(&self) -> bool {
        matches!(
            self,
            Event::NodeStarted { .. }
                | Event::NodeCompleted { .. }
                | Event::EdgeTransition { .. }
                | Event::CheckpointSaved { .. }
        )
    }

    /// Whether this is the last event of a run's execution here.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Event::GraphCompleted { .. } | Event::Handover { .. } | Event::Waiting { .. }
        )
    }
}
