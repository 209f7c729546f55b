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
use crate::graph::routing::{Route, Step, panic_message, route};
use crate::graph::{Graph, NodeContext, State};
use crate::model::RunId;
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
    pub(crate) graph: &'a Graph,
    pub(crate) journal: &'a dyn Journal,
    pub(crate) observer: &'a dyn Observer,
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) run_id: RunId,
}

impl Engine<'_> {
    /// Runs from `node`, at step `iteration`, with `state`, until the run ends. An `Err` is a
    /// failed write: the journal could not record a step, and nothing after it ran.
    pub(crate) async fn run(
        &self,
        mut node: String,
        mut state: State,
        mut iteration: u32,
    ) -> Result<Outcome> {
        let mut input = state.data_value();
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
            let func = self.graph.node(&node).ok_or_else(|| Error::Value {
                container: "graph",
                key: node.clone(),
                reason: "no such node".to_owned(),
            })?;
            let ctx = NodeContext::new(self.run_id, &node, iteration, self.cancel.clone());
            let started = Instant::now();
            let execution = AssertUnwindSafe(func(state, ctx))
                .catch_unwind()
                .instrument(tracing::info_span!("node", node = %node, iteration));
            let result = tokio::select! {
                biased;
                () = self.cancel.cancelled() => None,
                result = execution => Some(result),
            };
            let (duration_ms, duration_db) = millis(started);

            state = match result {
                None => {
                    self.close_cancelled(&node, iteration, duration_db).await?;
                    self.node_failed(&node, iteration, duration_ms, CANCELLED);
                    return Ok(Outcome::Cancelled);
                }
                Some(Err(panic)) => {
                    let message =
                        format!("node {node} panicked: {}", panic_message(panic.as_ref()));
                    return self
                        .fail(&node, iteration, (duration_ms, duration_db), message)
                        .await;
                }
                Some(Ok(Err(e))) => {
                    let message = format!("node {node} failed: {e}");
                    return self
                        .fail(&node, iteration, (duration_ms, duration_db), message)
                        .await;
                }
                Some(Ok(Ok(output))) => output,
            };

            state.set_checkpoint(&node, iteration);
            state.count_step();
            let output = state.data_value();
            let route = route(self.graph, &node, &state);
            let next = match &route.step {
                Step::Continue => Next::Node {
                    node: route.to.as_deref().unwrap_or_default(),
                    iteration: iteration + 1,
                },
                Step::Complete => Next::Complete { result: &output },
                Step::Fail(message) | Step::CycleBound(message) => Next::Fail { message },
            };
            let commit = NodeCommit {
                run_id: self.run_id,
                node: &node,
                iteration,
                duration_ms: duration_db,
                output: &output,
                checkpoint: &state,
                transition: Transition {
                    to: route.to.as_deref(),
                    predicate: route.predicate.as_deref(),
                    result: route.result,
                    reason: &route.reason,
                },
                next,
            };
            if !self.journal.node_completed(&commit).await? {
                return self.superseded(&node, iteration, duration_db).await;
            }
            self.node_committed(&node, iteration, duration_ms, &output, &route);

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
                        max_iterations: self.graph.max_iterations(),
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
