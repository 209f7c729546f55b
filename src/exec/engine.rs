//! The state-graph engine: executes a run node by node, choosing edges, bounding cycles,
//! honouring cancellation, and handing each step to the [`Journal`] before telling observers.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::exec::events::Event;
use crate::exec::observer::Observer;
use crate::graph::erased::{AnyDeps, AnyGraph, AnyUpdate, DynState, NodeCall};
use crate::graph::node_signals::{Given, NodeSignals, WaitRequest};
use crate::graph::routing::{Route, Step, panic_message};
use crate::graph::{NodePolicy, State, StateData};
use crate::model::{AnswerSchema, JsonText, RunId};
use crate::store::journal::{
    AttemptFailure, End, Journal, Next, NodeCommit, NodeFailure, Question, Retry, Transition,
    WaitCommit,
};

/// What the stage of a node interrupted by a cancel records.
const CANCELLED: &str = "cancelled while executing";

/// How an attempt at a run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// An exit point was reached; the run is `completed`, with this result (the state's data
    /// it ended with).
    Completed(Arc<Value>),
    /// A node or the graph failed; the run is `failed` with this message.
    Failed(String),
    /// The run was cancelled while a node executed.
    Cancelled,
    /// The run is `waiting`, without a lease: for a long retry backoff, a timer, or an
    /// answer.
    Waiting,
    /// Someone else changed the run's status (a cancel from another process, say); this
    /// attempt stopped without writing.
    Superseded,
}

/// The state's data, once, for the stage it goes into and every observer to share.
pub(super) fn shared_data(position: &State) -> Arc<Value> {
    position.shared_data().shared()
}

/// Applies a node's `update` to the run's `state`, and moves `position` to the state's data
/// after it; the update's JSON text, as its stage stores it.
fn apply(
    state: &mut dyn DynState,
    position: &mut State,
    update: AnyUpdate,
) -> std::result::Result<JsonText, String> {
    state.apply_update(update).map_err(|e| e.to_string())?;
    let data = state.to_data().map_err(|e| e.to_string())?;
    let update = data
        .update_text_from(position.shared_data())
        .map_err(|e| e.to_string())?;
    let data = if data.has_changes() {
        // The node changed the data while the engine held it too, so its changes were kept
        // beside it. Once the engine's state is their only holder, they are applied to it in
        // place: nothing is copied.
        drop(data);
        position.replace_data(StateData::empty());
        state.flatten_data();
        state.to_data().map_err(|e| e.to_string())?
    } else {
        data
    };
    position.replace_data(data);
    Ok(update)
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
    /// Backoffs up to this long wait here; longer ones release the run (`waiting`). `None`:
    /// every backoff waits here (the run was started by a caller, who awaits it).
    pub(crate) hold_waits_up_to: Option<Duration>,
    /// When the run's `run_timeout` runs out, if its graph has one.
    pub(crate) deadline: Option<tokio::time::Instant>,
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
        let mut position = State::from_shared(initial.to_data()?);
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
    /// Runs from attempt `attempt` at `node`, at step `iteration`, from `cursor`, until the
    /// run ends or waits; `started`: that attempt's stage was recorded already (with the run,
    /// when it was inserted), with this input. An `Err` is a failed write: the journal could
    /// not record a step, and nothing after it ran.
    pub(crate) async fn run(
        &self,
        mut node: String,
        cursor: Cursor,
        mut iteration: u32,
        mut attempt: u32,
        given: Given,
        started: Option<Arc<Value>>,
    ) -> Result<Outcome> {
        // Answers and a message are for the first node only: the one after the wait.
        let mut given = Some(given);
        let Cursor {
            mut position,
            mut state,
        } = cursor;
        let snapshots = self.graph.snapshots();
        // The first stage of an attempt stores the whole state it starts from: what the
        // updates after it apply to.
        let mut input = match started {
            Some(input) => input,
            None => {
                let input = shared_data(&position);
                if !self
                    .journal
                    .node_started(self.run_id, (&node, iteration, attempt), &input)
                    .await?
                {
                    return Ok(Outcome::Superseded);
                }
                input
            }
        };
        loop {
            // Handed to the event, or dropped: held here, it would keep the node's changes
            // from being applied in place (see below).
            if self.observer.observes_steps() {
                self.observer.on_event(&Event::NodeStarted {
                    run_id: self.run_id,
                    node: node.clone(),
                    iteration,
                    attempt,
                    input,
                });
            } else {
                drop(input);
            }
            let policy = self.graph.policy(&node);
            let started = Instant::now();
            let signals = Arc::new(NodeSignals::given(given.take().unwrap_or_default()));
            let tried = self
                .try_node(&*state, &node, (iteration, attempt), policy, &signals)
                .await?;
            let duration = millis(started);
            let at = Step3 {
                node: &node,
                iteration,
                attempt,
            };

            let update = match tried {
                Tried::Cancelled => {
                    self.close_cancelled(at, duration.1).await?;
                    self.node_failed(at, duration.0, CANCELLED);
                    return Ok(Outcome::Cancelled);
                }
                Tried::Fatal(message) => return self.fail(at, duration, message).await,
                Tried::Failed { error, retryable } => {
                    let retries = policy.retries();
                    let max = retries.max_attempts();
                    if !retryable || attempt >= max {
                        let message = if max > 1 && retryable {
                            format!("node {node} failed after {attempt} attempts: {error}")
                        } else {
                            format!("node {node} failed: {error}")
                        };
                        return self.fail(at, duration, message).await;
                    }
                    let wait = retries.jittered_wait_after(attempt, random_unit());
                    if let Some(outcome) = self.retry(at, max, duration, &error, wait).await? {
                        return Ok(outcome);
                    }
                    attempt += 1;
                    input = shared_data(&position);
                    // A retry is given what its first attempt was given.
                    given = Some(Given {
                        answers: signals.answers.clone(),
                        delivered: signals.delivered.clone(),
                    });
                    continue;
                }
                Tried::Done(update) => update,
            };
            let wait = signals.take_wait();
            let update = match apply(&mut *state, &mut position, update) {
                Ok(update) => update,
                Err(e) => {
                    let message =
                        format!("node {node}'s update could not be applied and stored: {e}");
                    return self.fail(at, duration, message).await;
                }
            };
            position.set_checkpoint(&node, iteration);
            position.count_step();
            state.set_position(&position);
            let output = shared_data(&position);
            let route = self
                .graph
                .route(&node, &*state, position.steps(), self.max_iterations);
            if wait.is_some() && route.step != Step::Continue {
                let message = format!(
                    "node {node} asked the run to wait, but the run ends at it ({}): a wait needs a node after it to continue at",
                    route.reason
                );
                return self.fail(at, duration, message).await;
            }
            let next = match (&route.step, &wait) {
                (Step::Continue, None) => Next::Node {
                    node: route.to.as_deref().unwrap_or_default(),
                    iteration: iteration + 1,
                },
                (Step::Continue, Some(wait)) => Next::End(End::Wait(match wait {
                    WaitRequest::Answer {
                        key,
                        question,
                        schema,
                        timeout,
                    } => WaitCommit {
                        question: Some(Question {
                            key,
                            payload: question,
                            answer_schema: schema.as_ref().map(AnswerSchema::as_value),
                        }),
                        topic: None,
                        wake_after: *timeout,
                    },
                    WaitRequest::Sleep { after } => WaitCommit {
                        question: None,
                        topic: None,
                        wake_after: Some(*after),
                    },
                    WaitRequest::Message { topic, timeout } => WaitCommit {
                        question: None,
                        topic: Some((topic.as_str(), iteration)),
                        wake_after: *timeout,
                    },
                })),
                (Step::Complete, _) => Next::End(End::Complete { result: &output }),
                (Step::Fail(message) | Step::CycleBound(message), _) => {
                    Next::End(End::Fail { message })
                }
            };
            let commit = NodeCommit {
                run_id: self.run_id,
                node: &node,
                iteration,
                attempt,
                duration_ms: duration.1,
                update: &update,
                output_snapshot: snapshots.keeps_output(position.steps()).then_some(&output),
                next_input: snapshots.keeps_every_input().then_some(&output),
                checkpoint: &position,
                received: signals
                    .delivered
                    .as_ref()
                    .and_then(|d| d.message.as_ref())
                    .map(|(id, _)| *id),
                transition: Transition {
                    to: route.to.as_deref(),
                    predicate: route.predicate.as_deref(),
                    result: route.result,
                    reason: &route.reason,
                },
                next,
            };
            match self.journal.node_completed(&commit).await {
                Ok(true) => {}
                Ok(false) => return self.superseded(at, duration.1).await,
                // Refused before anything was written: the node fails, saying why.
                Err(too_large @ crate::error::Error::StateTooLarge { .. }) => {
                    return self.fail(at, duration, too_large.to_string()).await;
                }
                Err(e) => return Err(e),
            }
            self.node_committed(at, duration.0, &output, &route);
            if let Some(wait) = wait {
                self.observer.on_event(&match wait {
                    WaitRequest::Answer {
                        key,
                        question,
                        timeout,
                        ..
                    } => Event::Interrupted {
                        run_id: self.run_id,
                        node: node.clone(),
                        iteration,
                        key,
                        question,
                        timeout_ms: timeout
                            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                    },
                    WaitRequest::Sleep { after } => Event::Sleeping {
                        run_id: self.run_id,
                        node: node.clone(),
                        iteration,
                        for_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                    },
                    WaitRequest::Message { topic, timeout } => Event::AwaitingMessage {
                        run_id: self.run_id,
                        node: node.clone(),
                        iteration,
                        topic,
                        timeout_ms: timeout
                            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                    },
                });
                return Ok(Outcome::Waiting);
            }

            match route.step {
                Step::Continue => {
                    node = route.to.unwrap_or_default();
                    iteration += 1;
                    attempt = 1;
                    input = output;
                }
                Step::Complete => return Ok(Outcome::Completed(output)),
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

    /// One attempt at `node`, bounded by its policy's timeouts and the run's deadline, and
    /// interrupted by a cancel. A stopped attempt's future is dropped: whatever it would
    /// have returned later is discarded.
    async fn try_node(
        &self,
        state: &dyn DynState,
        node: &str,
        (iteration, attempt): (u32, u32),
        policy: &NodePolicy,
        signals: &Arc<NodeSignals>,
    ) -> Result<Tried> {
        let call = NodeCall {
            run_id: self.run_id,
            node,
            iteration,
            attempt,
            cancel: self.cancel.clone(),
            signals: Arc::clone(signals),
            deps: self.deps,
        };
        let running = self
            .graph
            .run_node(state, call)
            .ok_or_else(|| Error::Value {
                container: "graph",
                key: node.to_owned(),
                reason: "no such node".to_owned(),
            })?;
        let execution = AssertUnwindSafe(running)
            .catch_unwind()
            .instrument(tracing::info_span!("node", node = %node, iteration, attempt));
        tokio::pin!(execution);
        let started = tokio::time::Instant::now();
        let timeout = policy.attempt_timeout();
        let idle = policy.attempt_idle_timeout();
        let mut idle_until = idle.map(|idle| started + idle);
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Ok(Tried::Cancelled),
                result = &mut execution => {
                    return Ok(match result {
                        Err(panic) => Tried::Fatal(format!(
                            "node {node} panicked: {}",
                            panic_message(panic.as_ref())
                        )),
                        Ok(Err(e)) => Tried::Failed {
                            retryable: policy.retries().may_retry(&e),
                            error: e.to_string(),
                        },
                        Ok(Ok(update)) => Tried::Done(update),
                    });
                }
                () = until(self.deadline) => {
                    let limit = self.graph.run_timeout().unwrap_or_default();
                    return Ok(Tried::Fatal(format!(
                        "the run took longer than its run_timeout ({}) and was stopped in node {node}",
                        seconds(limit)
                    )));
                }
                () = until(timeout.map(|t| started + t)) => {
                    return Ok(Tried::Failed {
                        error: format!(
                            "timed out: the attempt took longer than its timeout ({})",
                            seconds(timeout.unwrap_or_default())
                        ),
                        retryable: true,
                    });
                }
                () = until(idle_until) => {
                    return Ok(Tried::Failed {
                        error: format!(
                            "timed out: no heartbeat for longer than its idle_timeout ({})",
                            seconds(idle.unwrap_or_default())
                        ),
                        retryable: true,
                    });
                }
                () = signals.beats.notified(), if idle.is_some() => {
                    idle_until = idle.map(|idle| tokio::time::Instant::now() + idle);
                }
            }
        }
    }

    /// Records a failed attempt that will be tried again after `wait`, and waits: here,
    /// when the wait is short, or without a lease or worker (the run `waiting`) when it is
    /// long. `Some` when this attempt at the run ends instead (it waits elsewhere, was
    /// cancelled meanwhile, or was superseded).
    async fn retry(
        &self,
        at: Step3<'_>,
        max_attempts: u32,
        (duration_ms, duration_db): (u64, i32),
        error: &str,
        wait: Duration,
    ) -> Result<Option<Outcome>> {
        if let Some(deadline) = self.deadline
            && tokio::time::Instant::now() + wait >= deadline
        {
            let message = format!(
                "node {} failed: {error}; trying again in {} would exceed the run's run_timeout ({})",
                at.node,
                seconds(wait),
                seconds(self.graph.run_timeout().unwrap_or_default())
            );
            return self
                .fail(at, (duration_ms, duration_db), message)
                .await
                .map(Some);
        }

        let released = self.hold_waits_up_to.is_some_and(|hold| wait > hold);
        let stage_error = format!(
            "{error} (attempt {} of {max_attempts}; trying again in {})",
            at.attempt,
            seconds(wait)
        );
        let failure = AttemptFailure {
            run_id: self.run_id,
            node: at.node,
            iteration: at.iteration,
            attempt: at.attempt,
            duration_ms: duration_db,
            error: &stage_error,
            retry: if released {
                Retry::Later { wait }
            } else {
                Retry::Here
            },
        };
        if !self.journal.attempt_failed(&failure).await? {
            return self.superseded(at, duration_db).await.map(Some);
        }
        self.node_failed(at, duration_ms, &stage_error);
        self.observer.on_event(&Event::NodeRetrying {
            run_id: self.run_id,
            node: at.node.to_owned(),
            iteration: at.iteration,
            attempt: at.attempt + 1,
            max_attempts,
            retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            released,
            error: error.to_owned(),
        });
        if released {
            return Ok(Some(Outcome::Waiting));
        }
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => {
                let next = Step3 { attempt: at.attempt + 1, ..at };
                self.close_cancelled(next, 0).await?;
                self.node_failed(next, 0, CANCELLED);
                Ok(Some(Outcome::Cancelled))
            }
            () = tokio::time::sleep(wait) => Ok(None),
        }
    }

    /// Records a node's failure, which fails the run.
    async fn fail(
        &self,
        at: Step3<'_>,
        (duration_ms, duration_db): (u64, i32),
        message: String,
    ) -> Result<Outcome> {
        let failure = NodeFailure {
            run_id: self.run_id,
            node: at.node,
            iteration: at.iteration,
            attempt: at.attempt,
            duration_ms: duration_db,
            error: &message,
            run_error: Some(&message),
        };
        if !self.journal.node_failed(&failure).await? {
            return self.superseded(at, duration_db).await;
        }
        self.node_failed(at, duration_ms, &message);
        Ok(Outcome::Failed(message))
    }

    /// The run's status changed under this attempt (a cancel from another process, say), so
    /// its last write was refused: if the run was cancelled, close the node's stage.
    async fn superseded(&self, at: Step3<'_>, duration_db: i32) -> Result<Outcome> {
        self.close_cancelled(at, duration_db).await?;
        Ok(Outcome::Superseded)
    }

    /// Marks the node's stage `failed` as cancelled, if the run was cancelled.
    async fn close_cancelled(&self, at: Step3<'_>, duration_db: i32) -> Result<()> {
        let failure = NodeFailure {
            run_id: self.run_id,
            node: at.node,
            iteration: at.iteration,
            attempt: at.attempt,
            duration_ms: duration_db,
            error: CANCELLED,
            run_error: None,
        };
        self.journal.node_failed(&failure).await?;
        Ok(())
    }

    fn node_failed(&self, at: Step3<'_>, duration_ms: u64, error: &str) {
        if !self.observer.observes_steps() {
            return;
        }
        self.observer.on_event(&Event::NodeCompleted {
            run_id: self.run_id,
            node: at.node.to_owned(),
            iteration: at.iteration,
            attempt: at.attempt,
            duration_ms,
            output: None,
            error: Some(error.to_owned()),
        });
    }

    fn node_committed(&self, at: Step3<'_>, duration_ms: u64, output: &Arc<Value>, route: &Route) {
        if !self.observer.observes_steps() {
            return;
        }
        let (run_id, node, iteration) = (self.run_id, at.node, at.iteration);
        self.observer.on_event(&Event::NodeCompleted {
            run_id,
            node: node.to_owned(),
            iteration,
            attempt: at.attempt,
            duration_ms,
            output: Some(Arc::clone(output)),
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

/// Which stage: an attempt at a node at a step.
#[derive(Debug, Clone, Copy)]
struct Step3<'a> {
    node: &'a str,
    iteration: u32,
    attempt: u32,
}

/// How one attempt at a node ended.
enum Tried {
    /// It returned its update.
    Done(AnyUpdate),
    /// It failed (an error, or a timeout): tried again if `retryable` and attempts remain.
    Failed { error: String, retryable: bool },
    /// It failed in a way no retry helps (a panic, the run's deadline): the run fails with
    /// this message.
    Fatal(String),
    /// The run was cancelled while it executed.
    Cancelled,
}

/// Completes at `at`, or never.
async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A duration for messages: "2.5 s".
fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// A number in [0, 1), random enough for jitter (drawn from a v4 UUID's random bits).
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u64_pair().0 >> 11;
    bits as f64 / (1u64 << 53) as f64
}
