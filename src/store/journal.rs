//! What the engine writes durably while a run executes, in the units that must commit
//! together.

use serde_json::Value;

use crate::error::Result;
use crate::graph::BoxFuture;
use crate::graph::State;
use crate::model::{JsonText, RunId};

/// The edge a completed node is followed by, or why there is none: a decision row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition<'a> {
    /// The next node; `None` when the run ends here.
    pub(crate) to: Option<&'a str>,
    /// The predicate of the edge taken.
    pub(crate) predicate: Option<&'a str>,
    /// What the predicate returned.
    pub(crate) result: Option<bool>,
    /// Why, in words.
    pub(crate) reason: &'a str,
}

/// What follows a completed node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Next<'a> {
    /// The run goes on at `node`, whose stage starts now.
    Node { node: &'a str, iteration: u32 },
    /// This attempt ends here.
    End(End<'a>),
}

/// How an attempt ends after a completed node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum End<'a> {
    /// The node was an exit point: the run completes with `result`.
    Complete { result: &'a Value },
    /// The run cannot go on: it fails with `message`.
    Fail { message: &'a str },
    /// The run waits before its next node (whose stage starts when it continues), holding
    /// no lease: see [`WaitCommit`].
    Wait(WaitCommit<'a>),
}

/// What a run waits for after a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WaitCommit<'a> {
    /// The question asked, recorded as an interrupt.
    pub(crate) question: Option<Question<'a>>,
    /// The topic of the message waited for, and the step of the node that waits.
    pub(crate) topic: Option<(&'a str, u32)>,
    /// When it is due regardless (a timer, or a question's timeout); `None`: only when
    /// answered.
    pub(crate) wake_after: Option<std::time::Duration>,
}

/// A question a node asked: what the answer is for, what a person needs to answer it, and
/// the JSON Schema the answer must fit, if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Question<'a> {
    pub(crate) key: &'a str,
    pub(crate) payload: &'a Value,
    pub(crate) answer_schema: Option<&'a Value>,
}

/// A node that returned its update: its stage, its checkpoint, its decision and what
/// follows, recorded all together or not at all.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeCommit<'a> {
    pub(crate) run_id: RunId,
    pub(crate) node: &'a str,
    pub(crate) iteration: u32,
    /// The attempt that completed, from 1.
    pub(crate) attempt: u32,
    pub(crate) duration_ms: i32,
    /// What the node changed, as its stage stores it: a
    /// [`StateUpdate`](crate::StateUpdate)'s JSON text.
    pub(crate) update: &'a JsonText,
    /// The whole state's data after the node, when the snapshot policy keeps it.
    pub(crate) output_snapshot: Option<&'a Value>,
    /// The whole state the next node starts from, when the snapshot policy keeps it.
    pub(crate) next_input: Option<&'a Value>,
    /// The whole state, saved as the run's checkpoint.
    pub(crate) checkpoint: &'a State,
    /// The message delivered to the node, now received by it (its id).
    pub(crate) received: Option<i64>,
    pub(crate) transition: Transition<'a>,
    pub(crate) next: Next<'a>,
}

/// A node that returned an error, panicked or was interrupted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeFailure<'a> {
    pub(crate) run_id: RunId,
    pub(crate) node: &'a str,
    pub(crate) iteration: u32,
    /// The attempt that failed, from 1.
    pub(crate) attempt: u32,
    pub(crate) duration_ms: i32,
    /// What the stage records.
    pub(crate) error: &'a str,
    /// What the run fails with; `None` when the run was cancelled: then only the stage is
    /// closed, and only if the run's status is `cancelled`.
    pub(crate) run_error: Option<&'a str>,
}

/// When a failed attempt is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// After a short wait in this process: the next attempt's stage starts now.
    Here,
    /// After `wait`: the run gives up its lease and worker, `waiting` until it is due.
    Later { wait: std::time::Duration },
}

/// An attempt that failed and will be tried again: its stage fails, and the next attempt
/// follows as `retry` says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptFailure<'a> {
    pub(crate) run_id: RunId,
    pub(crate) node: &'a str,
    pub(crate) iteration: u32,
    pub(crate) attempt: u32,
    pub(crate) duration_ms: i32,
    /// What the failed attempt's stage records.
    pub(crate) error: &'a str,
    pub(crate) retry: Retry,
}

/// Durable writes of an executing run. Each returns whether the run was still running under
/// this attempt's lease when the write was made: `false` means someone else changed it (a
/// cancel, or a takeover after this attempt lost its lease) and nothing was written, so the
/// attempt must stop. An `Err` is a write that failed: the database refused it, or stayed
/// out of reach for as long as the lease surely held.
pub(crate) trait Journal: Send + Sync {
    /// The stage of attempt `attempt` at `node`, step `iteration` (`step`), starts (the
    /// first node of an attempt, from the whole state
    /// `input`; later ones start in [`Journal::node_completed`]).
    fn node_started<'a>(
        &'a self,
        run_id: RunId,
        step: (&'a str, u32, u32),
        input: &'a Value,
    ) -> BoxFuture<'a, Result<bool>>;

    /// A node completed: see [`NodeCommit`].
    fn node_completed<'a>(&'a self, commit: &'a NodeCommit<'a>) -> BoxFuture<'a, Result<bool>>;

    /// An attempt at a node failed and will be tried again: see [`AttemptFailure`].
    fn attempt_failed<'a>(&'a self, failure: &'a AttemptFailure<'a>)
    -> BoxFuture<'a, Result<bool>>;

    /// A node failed: its stage fails, and the run with it unless it was cancelled.
    fn node_failed<'a>(&'a self, failure: &'a NodeFailure<'a>) -> BoxFuture<'a, Result<bool>>;

    /// The run fails before or between nodes (its factory failed, say).
    fn run_failed<'a>(&'a self, run_id: RunId, message: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// The run completes between nodes with `result` (a resumed run whose checkpoint was
    /// taken at an exit point).
    fn run_completed<'a>(&'a self, run_id: RunId, result: &'a Value)
    -> BoxFuture<'a, Result<bool>>;
}
