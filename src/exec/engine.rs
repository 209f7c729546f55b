//! The state-graph engine: executes a run node by node, choosing edges, bounding cycles,
//! honouring cancellation, and handing each step to the [`Journal`] before telling observers.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::FutureExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::exec::events::Event;
use crate::exec::observer::Observer;
use crate::graph::State;
use crate::graph::erased::{AnyDeps, AnyGraph, DynState, NodeCall};
use crate::graph::routing::{Route, Step, panic_message};
use crate::model::{RunId, StateUpdate};
use crate::store::journal::{Journal, Next, NodeCommit, NodeFailure, Transition};

/// What the stage of a node interrupted by a cancel records.
const CANCELLED: &str = "cancelled while executing";

/// How an attempt at a run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// An exit point was reached; the run is `completed`.
    Completed,
    /// A node or the graph failed; the run is `failed` with this message.
    Failed(String),
    /// The run was cancelled while a node executed.
    Cancelled,
    /// Someone else changed the run's status (a cancel from another process, say); this
    /// attempt stopped without writing.
    Superseded,
}

fn millis(since: Instant) -> (u64, i32) {
    let ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
    (ms, i32::try_from(ms).unwrap_or(i32::MAX))
}

/// Executes one attempt of a run.
pub(crate) struct Engine<'a> {
    pub(crate) graph: &'a dyn AnyGraph,
    pub(crate) deps: &'a AnyDeps,
    /// The bound on completed nodes: the graph's, or the executor's default.
    pub(crate) max_iterations: u32,
    pub(crate) journal: &'a dyn Journal,
    pub(crate) observer: &'a dyn Observer,
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) run_id: RunId,
}

/// Where a run is, and its state: `position` holds the state's data as stored (and is what
/// the checkpoint saves), `state` the workflow's own value of it.
pub(crate) struct Cursor {
    pub(crate) position: State,
    pub(crate) state: Box<dyn DynState>,
}

impl Cursor {
    /// A new run's cursor, at its `initial` state.
    pub(crate) fn fresh(run_id: RunId, mut initial: Box<dyn DynState>) -> Result<Cursor> {
        let mut position = State::from_map(initial.to_data()?);
        position.set_run_id(run_id);
        initial.set_position(&position);
        Ok(Cursor {
            position,
            state: initial,
        })
    }

    /// A resumed run's cursor, at the state `saved` in its checkpoint, read as `graph`'s
    /// state type (an error naming the field that does not fit it).
    pub(crate) fn resumed(run_id: RunId, graph: &dyn AnyGraph, mut saved: State) -> Result<Cursor> {
        saved.set_run_id(run_id);
        let mut state = graph.state_from_data(saved.data().clone())?;
        state.set_position(&saved);
        Ok(Cursor {
            position: saved,
            state,
        })
    }
}

impl Engine<'_> {
    /// Runs from `node`, at step `iteration`, from `cursor`, until the run ends. An `Err` is
    /// a failed write: the journal could not record a step, and nothing after it ran.
    pub(crate) async fn run(
        &self,
        mut node: String,
        cursor: Cursor,
        mut iteration: u32,
    ) -> Result<Outcome> {
        let Cursor {
            mut position,
            mut state,
        } = cursor;
        let snapshots = self.graph.snapshots();
        // The first stage of an attempt stores the whole state it starts from: what the
        // updates after it apply to.
        let mut input = Value::Object(position.data().clone());
        if !self
            .journal
            .node_started(self.run_id, &node, iteration, &input)
            .await?
        {
            return Ok(Outcome::Superseded);
        }
        loop {
            self.observer.on_event(&Event::NodeStarted {
                run_id: self.run_id,
                node: node.clone(),
                iteration,
                input,
            });
            let call = NodeCall {
                run_id: self.run_id,
                node: &node,
                iteration,
                cancel: self.cancel.clone(),
                deps: self.deps,
            };
            let running = self
                .graph
                .run_node(&*state, call)
                .ok_or_else(|| Error::Value {
                    container: "graph",
                    key: node.clone(),
                    reason: "no such node".to_owned(),
                })?;
            let started = Instant::now();
            let execution = AssertUnwindSafe(running)
                .catch_unwind()
                .instrument(tracing::info_span!("node", node = %node, iteration));
            let result = tokio::select! {
                biased;
                () = self.cancel.cancelled() => None,
                result = execution => Some(result),
            };
            let duration = millis(started);

            let update = match result {
                None => {
                    self.close_cancelled(&node, iteration, duration.1).await?;
                    self.node_failed(&node, iteration, duration.0, CANCELLED);
                    return Ok(Outcome::Cancelled);
                }
                Some(Err(panic)) => {
                    let message =
                        format!("node {node} panicked: {}", panic_message(panic.as_ref()));
                    return self.fail(&node, iteration, duration, message).await;
                }
                Some(Ok(Err(e))) => {
                    let message = format!("node {node} failed: {e}");
                    return self.fail(&node, iteration, duration, message).await;
                }
                Some(Ok(Ok(update))) => update,
            };
            let applied = state
                .apply_update(update)
                .map_err(|e| e.to_string())
                .and_then(|()| state.to_data().map_err(|e| e.to_string()));
            let data = match applied {
                Ok(data) => data,
                Err(e) => {
                    let message =
                        format!("node {node}'s update could not be applied and stored: {e}");
                    return self.fail(&node, iteration, duration, message).await;
                }
            };
            let before = position.replace_data(data);
            let update = StateUpdate::between(&before, position.data());
            drop(before);
            position.set_checkpoint(&node, iteration);
            position.count_step();
            state.set_position(&position);
            let output = Value::Object(position.data().clone());
            let route = self
                .graph
                .route(&node, &*state, position.steps(), self.max_iterations);
            let next = match &route.step {
                Step::Continue => Next::Node {
                    node: route.to.as_deref().unwrap_or_default(),
                    iteration: iteration + 1,
                },
                Step::Complete => Next::Complete { result: &output },
                Step::Fail(message) | Step::CycleBound(message) => Next::Fail { message },
            };
            let update = serde_json::to_value(&update).map_err(|e| Error::Value {
                container: "state",
                key: String::new(),
                reason: format!("its update cannot be stored as JSON: {e}"),
            })?;
            let commit = NodeCommit {
                run_id: self.run_id,
                node: &node,
                iteration,
                duration_ms: duration.1,
                update: &update,
                output_snapshot: snapshots.keeps_output(position.steps()).then_some(&output),
                next_input: snapshots.keeps_every_input().then_some(&output),
                checkpoint: &position,
                transition: Transition {
                    to: route.to.as_deref(),
                    predicate: route.predicate.as_deref(),
                    result: route.result,
                    reason: &route.reason,
                },
                next,
            };
            if !self.journal.node_completed(&commit).await? {
                return self.superseded(&node, iteration, duration.1).await;
            }
            self.node_committed(&node, iteration, duration.0, &output, &route);

            match route.step {
                Step::Continue => {
                    node = route.to.unwrap_or_default();
                    iteration += 1;
                    input = output;
                }
                Step::Complete => return Ok(Outcome::Completed),
                Step::Fail(message) => return Ok(Outcome::Failed(message)),
                Step::CycleBound(message) => {
                    self.observer.on_event(&Event::CycleDetected {
                        run_id: self.run_id,
                        node: route.to.unwrap_or_default(),
                        iteration: iteration + 1,
                        max_iterations: self.max_iterations,
                    });
                    return Ok(Outcome::Failed(message));
                }
            }
        }
    }

    /// Records a node's failure, which fails the run.
    async fn fail(
        &self,
        node: &str,
        iteration: u32,
        (duration_ms, duration_db): (u64, i32),
        message: String,
    ) -> Result<Outcome> {
        let failure = NodeFailure {
            run_id: self.run_id,
            node,
            iteration,
            duration_ms: duration_db,
            error: &message,
            run_error: Some(&message),
        };
        if !self.journal.node_failed(&failure).await? {
            return self.superseded(node, iteration, duration_db).await;
        }
        self.node_failed(node, iteration, duration_ms, &message);
        Ok(Outcome::Failed(message))
    }

    /// The run's status changed under this attempt (a cancel from another process, say), so
    /// its last write was refused: if the run was cancelled, close the node's stage.
    async fn superseded(&self, node: &str, iteration: u32, duration_db: i32) -> Result<Outcome> {
        self.close_cancelled(node, iteration, duration_db).await?;
        Ok(Outcome::Superseded)
    }

    /// Marks the node's stage `failed` as cancelled, if the run was cancelled.
    async fn close_cancelled(&self, node: &str, iteration: u32, duration_db: i32) -> Result<()> {
        let failure = NodeFailure {
            run_id: self.run_id,
            node,
            iteration,
            duration_ms: duration_db,
            error: CANCELLED,
            run_error: None,
        };
        self.journal.node_failed(&failure).await?;
        Ok(())
    }

    fn node_failed(&self, node: &str, iteration: u32, duration_ms: u64, error: &str) {
        self.observer.on_event(&Event::NodeCompleted {
            run_id: self.run_id,
            node: node.to_owned(),
            iteration,
            duration_ms,
            output: None,
            error: Some(error.to_owned()),
        });
    }

    fn node_committed(
        &self,
        node: &str,
        iteration: u32,
        duration_ms: u64,
        output: &Value,
        route: &Route,
    ) {
        let run_id = self.run_id;
        self.observer.on_event(&Event::NodeCompleted {
            run_id,
            node: node.to_owned(),
            iteration,
            duration_ms,
            output: Some(output.clone()),
            error: None,
        });
        self.observer.on_event(&Event::EdgeTransition {
            run_id,
            from: node.to_owned(),
            to: route.to.clone(),
            predicate: route.predicate.clone(),
            result: route.result,
            reason: route.reason.clone(),
        });
        self.observer.on_event(&Event::CheckpointSaved {
            run_id,
            node: node.to_owned(),
            iteration,
        });
    }
}
