//! The executor: creates runs, executes them on tokio tasks with every step recorded, and
//! cancels, resumes and shuts them down.
//!
//! A run goes through three phases, as in the Go original:
//!
//! 1. **cold start** ([`Executor::execute`]): the workflow is looked up (404 if unknown), the
//!    params checked (400 unless a JSON object), and the run inserted as `pending`;
//! 2. **hot start** (on its own task): the run becomes `running`, the factory builds the graph
//!    from a pre-configured [`GraphBuilder`], and the engine executes it, recording each node's
//!    stage, decision and checkpoint in one statement;
//! 3. **post-commit**: the run ends `completed` with its result, `failed` with the error, or
//!    `cancelled`, and the progress stream ends with [`Event::GraphCompleted`].
//!
//! ```no_run
//! use workflows::{Executor, Registry};
//! use serde_json::json;
//!
//! # async fn example(pool: workflows::Pool) -> workflows::Result<()> {
//! let executor = Executor::builder(pool, Registry::from_compiled()?).build();
//! let mut execution = executor.start("summarize", json!({"text": "..."})).await?;
//! println!("run {}", execution.run_id());
//! while let Some(event) = execution.next_event().await {
//!     println!("{event:?}");
//! }
//! let run = execution.wait().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::dsl::max;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::checkpoint::PgCheckpointStore;
use crate::db::Pool;
use crate::engine::{Engine, Outcome, Step, panic_message, route};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::graph::{DEFAULT_MAX_ITERATIONS, GraphBuilder};
use crate::journal::Journal;
use crate::lifecycle;
use crate::model::{Run, RunId, RunStatus};
use crate::observer::{Broadcast, ChannelObserver, Observer, TracingObserver};
use crate::params::Params;
use crate::recorder::PgRecorder;
use crate::registry::{Registry, WorkflowDef};
use crate::repository;
use crate::runtime::Runtime;
use crate::schema::stages;

/// How an executor runs workflows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// The `max_iterations` a graph gets unless its factory sets one (default 1000).
    pub max_iterations: u32,
    /// Whether a completed run keeps its last checkpoint (default true); failed and cancelled
    /// runs always keep theirs, to resume from.
    pub keep_checkpoints: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            max_iterations: DEFAULT_MAX_ITERATIONS,
            keep_checkpoints: true,
        }
    }
}

/// Sets up an [`Executor`].
pub struct ExecutorBuilder {
    pool: Pool,
    registry: Registry,
    runtime: Runtime,
    config: ExecutorConfig,
    observers: Broadcast,
}

impl ExecutorBuilder {
    /// The dependencies factories get (default: an empty runtime).
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
        self
    }

    /// How runs are executed.
    pub fn config(mut self, config: ExecutorConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds an observer told of every run's events (after the tracing observer that is
    /// always there).
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers = self.observers.with(observer);
        self
    }

    /// The executor.
    pub fn build(self) -> Executor {
        Executor {
            inner: Arc::new(Inner {
                recorder: PgRecorder::new(self.pool.clone(), self.config.keep_checkpoints),
                pool: self.pool,
                registry: self.registry,
                runtime: self.runtime,
                config: self.config,
                observers: Broadcast::new()
                    .with(Arc::new(TracingObserver))
                    .with(Arc::new(self.observers)),
                active: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                closing: AtomicBool::new(false),
            }),
        }
    }
}

/// Executes registered workflows and records every step. Cheap to clone; clones share runs.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    registry: Registry,
    runtime: Runtime,
    config: ExecutorConfig,
    observers: Broadcast,
    recorder: PgRecorder,
    /// Runs executing in this process, with what interrupts them.
    active: Mutex<HashMap<RunId, CancellationToken>>,
    tasks: TaskTracker,
    closing: AtomicBool,
}

impl Inner {
    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, CancellationToken>> {
        // The map stays consistent even if a holder panicked: each operation is one call.
        self.active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A run started by [`Executor::start`] or [`Executor::resume`]: its record, its progress
/// events, and its end. Dropping it does not stop the run.
pub struct Execution {
    run: Run,
    events: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<Result<Run>>,
}

impl Execution {
    /// The run as it was when execution began (`pending`, or `running` when resumed).
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// The run's id.
    pub fn run_id(&self) -> RunId {
        self.run.id
    }

    /// The next progress event; `None` after [`Event::GraphCompleted`].
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Waits for the run to end and returns its final record.
    pub async fn wait(self) -> Result<Run> {
        self.task.await.unwrap_or_else(|e| {
            Err(Error::Value {
                container: "run",
                key: self.run.id.to_string(),
                reason: format!("its task ended abnormally: {e}"),
            })
        })
    }
}

/// What [`Executor::shutdown`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Runs that were still executing when the drain period ended, and were cancelled.
    pub cancelled: Vec<RunId>,
    /// Whether every run's task had ended when `shutdown` returned.
    pub all_stopped: bool,
}

/// Where an attempt starts.
#[derive(Clone, Copy)]
enum Attempt {
    /// A new run: from the entry point.
    Fresh,
    /// A resumed run: after its checkpoint.
    Resume,
}

impl Executor {
    /// An executor running `registry`'s workflows on `pool`.
    pub fn builder(pool: Pool, registry: Registry) -> ExecutorBuilder {
        ExecutorBuilder {
            pool,
            registry,
            runtime: Runtime::new(),
            config: ExecutorConfig::default(),
            observers: Broadcast::new(),
        }
    }

    /// The workflows it runs.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Its connection pool.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Creates a `pending` run of `workflow` with `params` and starts it on a task: the Go
    /// original's `Execute`. (Not named `execute`: Diesel's `RunQueryDsl::execute`, which
    /// applies to every type, would shadow it wherever `RunQueryDsl` is imported.)
    ///
    /// Errors: [`Error::WorkflowNotFound`] (404) for an unknown workflow and
    /// [`Error::InvalidInput`] (400) for params that are not a JSON object, both before
    /// anything is written; [`Error::ShuttingDown`] (503) after [`Executor::shutdown`].
    pub async fn start(&self, workflow: &str, params: Value) -> Result<Execution> {
        self.refuse_if_closing()?;
        let def = *self.inner.registry.get(workflow)?;
        let params = Params::from_value(params)?;
        let run = {
            let mut conn = self.inner.pool.get().await?;
            lifecycle::create_run(&mut conn, workflow, &params).await?
        };
        Ok(self.spawn(def, run, Attempt::Fresh))
    }

    /// Like [`Executor::start`], then waits for the run to end and returns its final record.
    pub async fn run(&self, workflow: &str, params: Value) -> Result<Run> {
        self.start(workflow, params).await?.wait().await
    }

    /// Cancels a `pending` or `running` run: it is marked `cancelled` at once, and, if it
    /// executes in this process, its current node is interrupted (a node awaiting
    /// [`NodeContext::cancelled`](crate::NodeContext::cancelled) sees it immediately; any other
    /// is dropped at its next await). A run executing elsewhere stops at its next write.
    /// Other statuses are [`Error::InvalidStatus`] (400).
    pub async fn cancel(&self, run_id: RunId) -> Result<Run> {
        let run = {
            let mut conn = self.inner.pool.get().await?;
            lifecycle::cancel_run(&mut conn, run_id).await?
        };
        if let Some(token) = self.inner.active().get(&run_id) {
            token.cancel();
        }
        Ok(run)
    }

    /// Continues a `failed` or `cancelled` run after its checkpoint (or from the start if no
    /// node completed), with the same params. Step numbers continue after the last recorded
    /// one, so no (node, step) is recorded twice. Other statuses are
    /// [`Error::InvalidStatus`] (400); a run whose workflow is no longer registered is
    /// [`Error::WorkflowNotFound`] (404).
    pub async fn resume(&self, run_id: RunId) -> Result<Execution> {
        self.refuse_if_closing()?;
        let run = {
            let mut conn = self.inner.pool.get().await?;
            let run = repository::find_run(&mut conn, run_id).await?;
            let def = *self.inner.registry.get(&run.workflow_name)?;
            (lifecycle::resume_run(&mut conn, run_id).await?, def)
        };
        let (run, def) = run;
        Ok(self.spawn(def, run, Attempt::Resume))
    }

    /// Stops taking new runs, lets executing ones finish for up to `drain`, then cancels
    /// those still executing (they are marked `cancelled`, and can be resumed later) and
    /// waits a little for them to record it.
    pub async fn shutdown(&self, drain: Duration) -> ShutdownReport {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.tasks.close();
        if tokio::time::timeout(drain, self.inner.tasks.wait())
            .await
            .is_ok()
        {
            return ShutdownReport {
                cancelled: Vec::new(),
                all_stopped: true,
            };
        }
        let still_running: Vec<RunId> = self.inner.active().keys().copied().collect();
        let mut cancelled = Vec::new();
        for run_id in still_running {
            match self.cancel(run_id).await {
                Ok(_) => cancelled.push(run_id),
                Err(e) => tracing::warn!(%run_id, error = %e, "could not cancel at shutdown"),
            }
        }
        let all_stopped = tokio::time::timeout(Duration::from_secs(10), self.inner.tasks.wait())
            .await
            .is_ok();
        ShutdownReport {
            cancelled,
            all_stopped,
        }
    }

    fn refuse_if_closing(&self) -> Result<()> {
        if AtomicBool::load(&self.inner.closing, Ordering::SeqCst) {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Starts the task executing `run`, registered so that [`Executor::cancel`] reaches it.
    fn spawn(&self, def: WorkflowDef, run: Run, attempt: Attempt) -> Execution {
        let (sender, events) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        self.inner.active().insert(run.id, cancel.clone());
        let inner = Arc::clone(&self.inner);
        let span = tracing::info_span!("run", run_id = %run.id, workflow = def.name());
        let record = run.clone();
        let task = self.inner.tasks.spawn(
            async move {
                let observer = Broadcast::new()
                    .with(Arc::new(inner.observers.clone()))
                    .with(Arc::new(ChannelObserver(sender)));
                // A panic in a factory or an observer fails the run instead of leaving it
                // `running` with no task behind it.
                let attempt = execute_attempt(&inner, &def, &record, attempt, &observer, &cancel);
                let outcome = match AssertUnwindSafe(attempt).catch_unwind().await {
                    Ok(outcome) => outcome,
                    Err(panic) => {
                        let message =
                            format!("the run panicked: {}", panic_message(panic.as_ref()));
                        inner
                            .recorder
                            .run_failed(record.id, &message)
                            .await
                            .map(|written| {
                                if written {
                                    Outcome::Failed(message)
                                } else {
                                    Outcome::Superseded
                                }
                            })
                    }
                };
                inner.active().remove(&record.id);
                finish(&inner, record.id, outcome, &observer).await
            }
            .instrument(span),
        );
        Execution { run, events, task }
    }
}

/// Hot start and execution of one attempt.
async fn execute_attempt(
    inner: &Inner,
    def: &WorkflowDef,
    run: &Run,
    attempt: Attempt,
    observer: &dyn Observer,
    cancel: &CancellationToken,
) -> Result<Outcome> {
    if let Attempt::Fresh = attempt {
        let mut conn = inner.pool.get().await?;
        match lifecycle::start_run(&mut conn, run.id).await {
            Ok(_) => {}
            // Cancelled (or deleted) while pending: it never starts.
            Err(Error::InvalidStatus { .. } | Error::RunNotFound { .. }) => {
                return Ok(Outcome::Superseded);
            }
            Err(e) => return Err(e),
        }
    }
    let params = Params::from_value(run.params.clone().unwrap_or(Value::Null))?;
    let mut builder = GraphBuilder::new();
    builder.set_max_iterations(inner.config.max_iterations);
    let (graph, mut state) = match def.build(builder, &inner.runtime, params).await {
        Ok(built) => built,
        Err(e) => {
            let message = e.to_string();
            return Ok(if inner.recorder.run_failed(run.id, &message).await? {
                Outcome::Failed(message)
            } else {
                Outcome::Superseded
            });
        }
    };
    state.set_run_id(run.id);

    let (node, state, iteration, resumed) = match attempt {
        Attempt::Fresh => (graph.entry_point().to_owned(), state, 1, false),
        Attempt::Resume => {
            let mut conn = inner.pool.get().await?;
            let last_step: Option<i32> = stages::table
                .filter(stages::run_id.eq(run.id))
                .select(max(stages::iteration))
                .first(&mut conn)
                .await?;
            let iteration = u32::try_from(last_step.unwrap_or(0)).unwrap_or(0) + 1;
            match PgCheckpointStore::load_with(&mut conn, run.id).await? {
                None => (graph.entry_point().to_owned(), state, iteration, true),
                Some(mut saved) => {
                    saved.set_run_id(run.id);
                    let after = saved.checkpoint_node().unwrap_or_default().to_owned();
                    observer.on_event(&Event::CheckpointLoaded {
                        run_id: run.id,
                        node: after.clone(),
                        iteration: saved.iteration(),
                    });
                    let next = route(&graph, &after, &saved, iteration - 1);
                    match (next.step, next.to) {
                        (Step::Continue, Some(to)) => (to, saved, iteration, true),
                        (Step::Fail(message) | Step::CycleBound(message), _) => {
                            return Ok(if inner.recorder.run_failed(run.id, &message).await? {
                                Outcome::Failed(message)
                            } else {
                                Outcome::Superseded
                            });
                        }
                        // An exit point's checkpoint belongs to a completed run, which cannot
                        // be resumed; finish it as it would have finished.
                        _ => {
                            lifecycle::complete_run(&mut conn, run.id, &saved.data_value()).await?;
                            return Ok(Outcome::Completed);
                        }
                    }
                }
            }
        }
    };
    if resumed {
        observer.on_event(&Event::Resumed {
            run_id: run.id,
            node: node.clone(),
            iteration,
        });
    }
    observer.on_event(&Event::GraphStarted {
        run_id: run.id,
        workflow: def.name().to_owned(),
        node: node.clone(),
        iteration,
        resumed,
    });
    let engine = Engine {
        graph: &graph,
        journal: &inner.recorder,
        observer,
        cancel,
        run_id: run.id,
    };
    engine.run(node, state, iteration).await
}

/// Post-commit: makes sure a failed write fails the run, and ends the progress stream with
/// the run's final record.
async fn finish(
    inner: &Inner,
    run_id: RunId,
    outcome: Result<Outcome>,
    observer: &dyn Observer,
) -> Result<Run> {
    let write_error = outcome.as_ref().err().map(ToString::to_string);
    if let Some(error) = &write_error {
        let message = format!("recording the run failed, so it was stopped: {error}");
        if let Err(e) = inner.recorder.run_failed(run_id, &message).await {
            tracing::error!(%run_id, error = %e, "could not mark the run failed; it stays running until recovered");
        }
    }
    let run = async {
        let mut conn = inner.pool.get().await?;
        repository::find_run(&mut conn, run_id).await
    }
    .await;
    let (status, result, error) = match &run {
        Ok(run) => (run.status, run.result.clone(), run.error_message.clone()),
        Err(e) => {
            let status = match &outcome {
                Ok(Outcome::Completed) => RunStatus::Completed,
                Ok(Outcome::Cancelled | Outcome::Superseded) => RunStatus::Cancelled,
                _ => RunStatus::Failed,
            };
            (
                status,
                None,
                Some(write_error.clone().unwrap_or_else(|| e.to_string())),
            )
        }
    };
    observer.on_event(&Event::GraphCompleted {
        run_id,
        status,
        result,
        error,
    });
    match (outcome, run) {
        (Err(e), _) => Err(e),
        (Ok(_), run) => run,
    }
}
