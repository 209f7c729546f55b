//! Nodes: the async functions a graph is made of, and what they are told when they run.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::node_signals::{NodeSignals, WaitRequest};
use super::{State, WorkflowState};
use crate::model::{AnswerSchema, RunId};

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
    /// Heartbeats, the wait asked for, the answers given.
    signals: Arc<NodeSignals>,
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
            signals: Arc::clone(&self.signals),
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
            signals: Arc::new(NodeSignals::default()),
            deps: Arc::new(()),
        }
    }
}

impl<D> NodeContext<D> {
    /// The context of attempt `attempt` at `node`, at step `iteration` of run `run_id`,
    /// stopped by `cancel`, telling and told through `signals`.
    pub(crate) fn new(
        run_id: RunId,
        (node, iteration, attempt): (&str, u32, u32),
        cancel: CancellationToken,
        signals: Arc<NodeSignals>,
        deps: Arc<D>,
    ) -> Self {
        NodeContext {
            run_id: Some(run_id),
            node: node.into(),
            iteration,
            attempt,
            cancel,
            signals,
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
            signals: self.signals,
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
        self.signals.beats.notify_one();
    }

    /// Asks a person a question: once this node completes (its update, decision and
    /// checkpoint, and the question, in one statement), the run is `waiting`, holding no
    /// worker, until someone answers `key` ([`Executor::answer`](crate::Executor::answer),
    /// `POST /workflows/runs/{id}/answer`, `workflows answer`). A worker then continues it at
    /// the next node, which reads the answer with [`NodeContext::answer`]. Nothing before
    /// the question runs again. A node asks at most once; the node must not be where the
    /// run ends.
    pub fn interrupt(
        &self,
        key: impl Into<String>,
        question: impl Serialize,
    ) -> Result<(), BoxError> {
        self.ask_for_answer(key.into(), question, None, None)
    }

    /// [`NodeContext::interrupt`], with a time limit: if nobody answers within `timeout`,
    /// the run continues anyway, and the next node's [`NodeContext::answer`] is `None`.
    pub fn interrupt_with_timeout(
        &self,
        key: impl Into<String>,
        question: impl Serialize,
        timeout: std::time::Duration,
    ) -> Result<(), BoxError> {
        self.ask_for_answer(key.into(), question, None, Some(timeout))
    }

    /// [`NodeContext::interrupt`], for an answer that must be an `A`: the question is stored
    /// with `A`'s JSON Schema, and an answer that does not fit it is refused (a 400 naming
    /// where it does not fit) before it is recorded, so the run keeps waiting for one that
    /// does. The inspector shows the schema beside its answer form.
    ///
    /// An error (the node fails) if `A`'s schema uses a keyword the check does not know,
    /// such as `pattern`: see [`Interrupt::answer_schema`](crate::model::Interrupt::answer_schema).
    pub fn interrupt_for<A: schemars::JsonSchema>(
        &self,
        key: impl Into<String>,
        question: impl Serialize,
    ) -> Result<(), BoxError> {
        let key = key.into();
        let schema = schema_of::<A>(&key)?;
        self.ask_for_answer(key, question, Some(schema), None)
    }

    /// [`NodeContext::interrupt_for`], with a time limit, as
    /// [`NodeContext::interrupt_with_timeout`].
    pub fn interrupt_for_with_timeout<A: schemars::JsonSchema>(
        &self,
        key: impl Into<String>,
        question: impl Serialize,
        timeout: std::time::Duration,
    ) -> Result<(), BoxError> {
        let key = key.into();
        let schema = schema_of::<A>(&key)?;
        self.ask_for_answer(key, question, Some(schema), Some(timeout))
    }

    fn ask_for_answer(
        &self,
        key: String,
        question: impl Serialize,
        schema: Option<AnswerSchema>,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), BoxError> {
        if key.is_empty() || key.contains('\0') {
            return Err(format!(
                "an interrupt's key must be non-empty text without NUL, not {key:?}"
            )
            .into());
        }
        let question = serde_json::to_value(question)
            .map_err(|e| format!("the question for {key:?} cannot be stored as JSON: {e}"))?;
        self.signals
            .ask(WaitRequest::Answer {
                key,
                question,
                schema,
                timeout,
            })
            .map_err(Into::into)
    }

    /// A durable sleep: once this node completes, the run waits `after`, holding no worker
    /// (it survives restarts of every process), and whichever worker is free when it is due
    /// continues it at the next node.
    pub fn continue_after(&self, after: std::time::Duration) -> Result<(), BoxError> {
        self.signals
            .ask(WaitRequest::Sleep { after })
            .map_err(Into::into)
    }

    /// Waits for a message on `topic` sent to this run ([`Executor::send`](crate::Executor::send),
    /// `POST /workflows/runs/{id}/messages`, `workflows send`): once this node completes, the
    /// run waits holding no worker until one is sent (at once if one was sent already and
    /// not received), or `timeout` passes. The next node receives it with
    /// [`NodeContext::message`]. Messages on a topic are received one at a time, in the
    /// order they were sent, each once.
    pub fn wait_for_message(
        &self,
        topic: impl Into<String>,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), BoxError> {
        let topic = topic.into();
        if topic.is_empty() || topic.contains('\0') {
            return Err(
                format!("a topic must be non-empty text without NUL, not {topic:?}").into(),
            );
        }
        self.signals
            .ask(WaitRequest::Message { topic, timeout })
            .map_err(Into::into)
    }

    /// The message on `topic` the node before this one waited for, as `T`; `None` if the
    /// wait timed out without one. An error if that node waited for no message on `topic`,
    /// or the message is not a `T`.
    pub fn message<T: DeserializeOwned>(&self, topic: &str) -> Result<Option<T>, BoxError> {
        match &self.signals.delivered {
            Some(delivered) if delivered.topic == topic => match &delivered.message {
                None => Ok(None),
                Some((_, payload)) => serde_json::from_value(payload.clone())
                    .map(Some)
                    .map_err(|e| format!("the message on {topic:?} does not fit: {e}").into()),
            },
            Some(delivered) => Err(format!(
                "node {} has no message on {topic:?}: the node before it waited for {:?}",
                self.node, delivered.topic
            )
            .into()),
            None => Err(format!(
                "node {} has no message on {topic:?}: the node before it waited for none",
                self.node
            )
            .into()),
        }
    }

    /// The answer to the question `key` that the node before this one asked, as `T`;
    /// `None` if it timed out unanswered. An error if no such question was asked, or the
    /// answer is not a `T`.
    pub fn answer<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, BoxError> {
        match self.signals.answers.get(key) {
            None => {
                let mut asked: Vec<_> = self.signals.answers.keys().map(String::as_str).collect();
                asked.sort_unstable();
                Err(format!(
                    "node {} has no answer to {key:?}: the node before it asked {}",
                    self.node,
                    if asked.is_empty() {
                        "nothing".to_owned()
                    } else {
                        asked.join(", ")
                    }
                )
                .into())
            }
            Some(None) => Ok(None),
            Some(Some(answer)) => serde_json::from_value(answer.clone())
                .map(Some)
                .map_err(|e| format!("the answer to {key:?} does not fit: {e}").into()),
        }
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

/// The answer schema of `A` for the question `key`, or why answers to it cannot be checked.
fn schema_of<A: schemars::JsonSchema>(key: &str) -> Result<AnswerSchema, BoxError> {
    AnswerSchema::of::<A>().map_err(|e| {
        format!(
            "the answer to {key:?} cannot be checked against the schema of {}: {e}",
            std::any::type_name::<A>()
        )
        .into()
    })
}
