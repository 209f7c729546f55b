//! Nodes: the async functions a graph is made of, and what they are told when they run.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{State, WorkflowState};
use crate::model::RunId;

/// Any error a workflow factory or node may return: whatever implements
/// [`std::error::Error`], and plain strings (`Err("no input".into())`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed, sendable future: what nodes and factories return once wrapped.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A node's function, shared: takes the state and its context, returns its update (for the
/// JSON [`State`], the next state).
pub type Node<S = State, D = ()> = Arc<
    dyn Fn(S, NodeContext<D>) -> BoxFuture<'static, Result<<S as WorkflowState>::Update, BoxError>>
        + Send
        + Sync,
>;

/// Wraps a closure returning a future into a [`Node`].
pub(crate) fn node_from_fn<S, D, F, Fut>(f: F) -> Node<S, D>
where
    S: WorkflowState,
    F: Fn(S, NodeContext<D>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S::Update, BoxError>> + Send + 'static,
{
    Arc::new(move |state, ctx| Box::pin(f(state, ctx)))
}

/// What a node knows about the execution it is part of, and the dependencies its workflow
/// declared (`D`, reached with [`NodeContext::deps`]).
pub struct NodeContext<D = ()> {
    run_id: Option<RunId>,
    node: Arc<str>,
    iteration: u32,
    attempt: u32,
    cancel: CancellationToken,
    /// Told of each heartbeat: what an idle timeout waits on.
    beats: Arc<Notify>,
    deps: Arc<D>,
}

impl<D> Clone for NodeContext<D> {
    fn clone(&self) -> Self {
        NodeContext {
            run_id: self.run_id,
            node: Arc::clone(&self.node),
            iteration: self.iteration,
            attempt: self.attempt,
            cancel: self.cancel.clone(),
            beats: Arc::clone(&self.beats),
            deps: Arc::clone(&self.deps),
        }
    }
}

impl<D> fmt::Debug for NodeContext<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeContext")
            .field("run_id", &self.run_id)
            .field("node", &self.node)
            .field("iteration", &self.iteration)
            .field("attempt", &self.attempt)
            .field("deps", &std::any::type_name::<D>())
            .finish_non_exhaustive()
    }
}

impl NodeContext {
    /// A context for running a node outside an executor (in a unit test, say): no run, no
    /// dependencies (add them with [`NodeContext::with_deps`]), and never cancelled.
    ///
    /// ```
    /// use workflows::NodeContext;
    /// struct Llm;
    /// let ctx = NodeContext::detached("draft", 1).with_deps(Llm);
    /// assert_eq!(ctx.node(), "draft");
    /// let _llm: &Llm = ctx.deps();
    /// ```
    pub fn detached(node: &str, iteration: u32) -> Self {
        NodeContext {
            run_id: None,
            node: node.into(),
            iteration,
            attempt: 1,
            cancel: CancellationToken::new(),
            beats: Arc::new(Notify::new()),
            deps: Arc::new(()),
        }
    }
}

impl<D> NodeContext<D> {
    /// The context of attempt `attempt` at `node`, at step `iteration` of run `run_id`,
    /// stopped by `cancel`, its heartbeats told to `beats`.
    pub(crate) fn new(
        run_id: RunId,
        (node, iteration, attempt): (&str, u32, u32),
        cancel: CancellationToken,
        beats: Arc<Notify>,
        deps: Arc<D>,
    ) -> Self {
        NodeContext {
            run_id: Some(run_id),
            node: node.into(),
            iteration,
            attempt,
            cancel,
            beats,
            deps,
        }
    }

    /// This context with `deps` as its dependencies.
    pub fn with_deps<E>(self, deps: impl Into<Arc<E>>) -> NodeContext<E> {
        NodeContext {
            run_id: self.run_id,
            node: self.node,
            iteration: self.iteration,
            attempt: self.attempt,
            cancel: self.cancel,
            beats: self.beats,
            deps: deps.into(),
        }
    }

    /// The workflow's dependencies: the value of type `D` in the executor's
    /// [`Runtime`](crate::Runtime), which the executor's build checked is there.
    pub fn deps(&self) -> &D {
        &self.deps
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

    /// Which attempt at this step this is, from 1 (see [`RetryPolicy`](crate::RetryPolicy)).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Says the node is alive and making progress: it restarts the attempt's
    /// [idle timeout](crate::NodePolicy::idle_timeout). Call it for each chunk of a long
    /// streaming call.
    pub fn heartbeat(&self) {
        self.beats.notify_one();
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
