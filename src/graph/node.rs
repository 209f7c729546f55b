//! Nodes: the async functions a graph is made of, and what they are told when they run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::State;
use crate::model::RunId;

/// Any error a workflow factory or node may return: whatever implements
/// [`std::error::Error`], and plain strings (`Err("no input".into())`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed, sendable future: what nodes and factories return once wrapped.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A node's function, shared: takes the state and its context, returns the next state.
pub type Node =
    Arc<dyn Fn(State, NodeContext) -> BoxFuture<'static, Result<State, BoxError>> + Send + Sync>;

/// Wraps a closure returning a future into a [`Node`].
pub(crate) fn node_from_fn<F, Fut>(f: F) -> Node
where
    F: Fn(State, NodeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<State, BoxError>> + Send + 'static,
{
    Arc::new(move |state, ctx| Box::pin(f(state, ctx)))
}

/// What a node knows about the execution it is part of.
#[derive(Debug, Clone)]
pub struct NodeContext {
    run_id: Option<RunId>,
    node: Arc<str>,
    iteration: u32,
    cancel: CancellationToken,
}

impl NodeContext {
    /// A context for running a node outside an executor (in a unit test, say): no run, and
    /// never cancelled.
    pub fn detached(node: &str, iteration: u32) -> Self {
        NodeContext {
            run_id: None,
            node: node.into(),
            iteration,
            cancel: CancellationToken::new(),
        }
    }

    /// The context of `node` at step `iteration` of run `run_id`, stopped by `cancel`.
    pub(crate) fn new(
        run_id: RunId,
        node: &str,
        iteration: u32,
        cancel: CancellationToken,
    ) -> Self {
        NodeContext {
            run_id: Some(run_id),
            node: node.into(),
            iteration,
            cancel,
        }
    }

    /// The run executing, if any.
    pub fn run_id(&self) -> Option<RunId> {
        self.run_id
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The run's step number for this execution of the node, from 1.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// Whether the run has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the run is asked to stop. A node that waits on something slow should
    /// race it against this (`tokio::select!`) so that a cancel takes effect at once.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}
