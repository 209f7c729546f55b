//! The state-graph engine: executes a run node by node, choosing edges, bounding cycles,
//! honouring cancellation, and handing each step to the [`Journal`] before telling observers.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::FutureExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::events::Event;
use crate::graph::{Graph, NodeContext, State};
use crate::journal::{Journal, Next, NodeCommit, NodeFailure, Transition};
use crate::model::RunId;
use crate::observer::Observer;

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

/// Where a completed node leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) to: Option<String>,
    pub(crate) predicate: Option<String>,
    pub(crate) result: Option<bool>,
    pub(crate) reason: String,
    pub(crate) step: Step,
}

/// What the run does after a completed node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Executes the node `Route::to`.
    Continue,
    /// Completes: the node was an exit point.
    Complete,
    /// Fails with this message (no edge holds, or the cycle bound is reached).
    Fail(String),
    /// Fails because `Route::to` would exceed `max_iterations`.
    CycleBound(String),
}

/// Chooses the edge taken after `node` produced `state`: the first edge (in the order
/// added) whose predicate holds; if none holds, the run completes when `node` is an exit
/// point and fails otherwise. The run may not complete more than `max_iterations` nodes on
/// its path.
pub(crate) fn route(graph: &Graph, node: &str, state: &State) -> Route {
    let mut rejected = Vec::new();
    for edge in graph.edges_from(node) {
        let (predicate, holds) = match edge.predicate() {
            None => (None, true),
            Some(p) => {
                let held = std::panic::catch_unwind(AssertUnwindSafe(|| p.test(state)));
                match held {
                    Ok(held) => (Some(p.name().to_owned()), held),
                    Err(panic) => {
                        let message = format!(
                            "predicate {} on the edge {node} -> {} panicked: {}",
                            p.name(),
                            edge.to(),
                            panic_message(panic.as_ref())
                        );
                        return Route {
                            to: None,
                            predicate: Some(p.name().to_owned()),
                            result: None,
                            reason: message.clone(),
                            step: Step::Fail(message),
                        };
                    }
                }
            }
        };
        if !holds {
            rejected.extend(predicate);
            continue;
        }
        let mut reason = match &predicate {
            Some(p) => format!("{p} held"),
            None => "unconditional edge".to_owned(),
        };
        if !rejected.is_empty() {
            reason.push_str(&format!("; {} did not", rejected.join(", ")));
        }
        let to = edge.to().to_owned();
        let max = graph.max_iterations();
        let step = if state.steps() >= max {
            Step::CycleBound(format!(
                "the run reached max_iterations ({max}) at node {node}: is there a cycle without an exit?"
            ))
        } else {
            Step::Continue
        };
        return Route {
            to: Some(to),
            result: predicate.as_ref().map(|_| true),
            predicate,
            reason,
            step,
        };
    }
    let (reason, step) = if graph.is_exit_point(node) {
        let reason = if rejected.is_empty() {
            "exit point reached".to_owned()
        } else {
            format!("exit point reached: {} did not hold", rejected.join(", "))
        };
        (reason, Step::Complete)
    } else {
        let reason = if rejected.is_empty() {
            format!("node {node} is not an exit point and has no outgoing edge")
        } else {
            format!(
                "no edge from node {node} holds: {} did not",
                rejected.join(", ")
            )
        };
        (reason.clone(), Step::Fail(reason))
    };
    Route {
        to: None,
        predicate: rejected.last().cloned(),
        result: (!rejected.is_empty()).then_some(false),
        reason,
        step,
    }
}

/// The text of a panic, for the error it becomes.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BoxError;
    use crate::graph::{GraphBuilder, Predicate};

    async fn pass(state: State, _ctx: NodeContext) -> std::result::Result<State, BoxError> {
        Ok(state)
    }

    fn graph(configure: impl FnOnce(&mut GraphBuilder)) -> Graph {
        let mut g = GraphBuilder::new();
        g.add_node("a", pass)
            .add_node("b", pass)
            .add_node("c", pass)
            .set_entry_point("a")
            .add_exit_point("c");
        configure(&mut g);
        g.build().unwrap()
    }

    #[test]
    fn an_exit_point_takes_an_edge_that_holds_and_completes_when_none_does() {
        let g = graph(|g| {
            g.add_conditional_edge("c", "a", Predicate::key_exists("again"));
        });
        let r = route(&g, "c", &State::new().with("again", true));
        assert_eq!((r.step, r.to.as_deref()), (Step::Continue, Some("a")));
        assert_eq!(r.reason, "key_exists(again) held");

        let r = route(&g, "c", &State::new());
        assert_eq!((r.step, r.to), (Step::Complete, None));
        assert_eq!(
            (r.predicate.as_deref(), r.result),
            (Some("key_exists(again)"), Some(false))
        );
        assert_eq!(
            r.reason,
            "exit point reached: key_exists(again) did not hold"
        );

        let r = route(&graph(|_| {}), "c", &State::new());
        assert_eq!(
            (r.step, r.reason.as_str()),
            (Step::Complete, "exit point reached")
        );
    }

    #[test]
    fn the_first_edge_that_holds_wins_and_earlier_ones_are_named() {
        let g = graph(|g| {
            g.add_conditional_edge("a", "b", Predicate::key_exists("x"))
                .add_conditional_edge("a", "c", Predicate::key_exists("y"))
                .add_edge("a", "b");
        });
        let r = route(&g, "a", &State::new().with("y", 1));
        assert_eq!(r.to.as_deref(), Some("c"));
        assert_eq!(
            (r.predicate.as_deref(), r.result),
            (Some("key_exists(y)"), Some(true))
        );
        assert_eq!(r.reason, "key_exists(y) held; key_exists(x) did not");

        let r = route(&g, "a", &State::new());
        assert_eq!(
            (r.to.as_deref(), r.predicate, r.result),
            (Some("b"), None, None)
        );
        assert_eq!(
            r.reason,
            "unconditional edge; key_exists(x), key_exists(y) did not"
        );
    }

    #[test]
    fn a_node_without_edges_that_is_not_an_exit_fails() {
        let g = graph(|_| {});
        let r = route(&g, "b", &State::new());
        assert_eq!(
            r.step,
            Step::Fail("node b is not an exit point and has no outgoing edge".into())
        );
    }

    #[test]
    fn the_cycle_bound_counts_completed_nodes_on_the_path() {
        let g = graph(|g| {
            g.add_edge("a", "a").set_max_iterations(3);
        });
        let mut state = State::new();
        for _ in 0..2 {
            state.count_step();
            assert_eq!(route(&g, "a", &state).step, Step::Continue);
        }
        state.count_step();
        assert!(matches!(route(&g, "a", &state).step, Step::CycleBound(_)));
    }

    #[test]
    fn a_panicking_predicate_fails_the_run_with_its_name() {
        let g = graph(|g| {
            g.add_conditional_edge(
                "a",
                "b",
                Predicate::new("explodes", |_| panic!("bad predicate")),
            );
        });
        let r = route(&g, "a", &State::new());
        let Step::Fail(message) = r.step else {
            panic!("{r:?}")
        };
        assert_eq!(
            message,
            "predicate explodes on the edge a -> b panicked: bad predicate"
        );
    }
}
