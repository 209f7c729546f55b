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

use std::collections::{HashMap, HashSet};
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
use crate::lease::{self, Lease};
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
    /// Who this executor is, as recorded in `runs.owner` (default: host, process id and a
    /// random suffix).
    pub owner: String,
    /// How long a lease on a running run lasts without a heartbeat (default 30 s). After
    /// that, any worker may take the run over.
    pub lease: Duration,
    /// How often leases are renewed (default 10 s); well below `lease`.
    pub heartbeat: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            max_iterations: DEFAULT_MAX_ITERATIONS,
            keep_checkpoints: true,
            owner: default_owner(),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// `host:pid:random`, so that two executors in one process are told apart too.
fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &suffix[..8])
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
                heartbeat: std::sync::Once::new(),
                stopped: CancellationToken::new(),
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
    /// Runs executing in this process, with their lease and what interrupts them.
    active: Mutex<HashMap<RunId, Active>>,
    tasks: TaskTracker,
    closing: AtomicBool,
    /// Starts the heartbeat task once, on the first run.
    heartbeat: std::sync::Once,
    /// Stops the heartbeat task.
    stopped: CancellationToken,
}

/// A run executing here.
struct Active {
    token: uuid::Uuid,
    cancel: CancellationToken,
}

impl Inner {
    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, Active>> {
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
    /// The run as it was when execution began: `running`.
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

    /// Waits for the run to end and returns its final record. Events not yet read are
    /// dropped.
    pub async fn wait(self) -> Result<Run> {
        drop(self.events);
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
    /// Runs that were still executing when the drain period ended, and were handed back
    /// for another worker to take over ([`Executor::shutdown_releasing`]).
    pub released: Vec<RunId>,
    /// Whether every run's task had ended when `shutdown` returned.
    pub all_stopped: bool,
}

/// What shutting down does with runs still executing after the drain period.
#[derive(Clone, Copy)]
enum Leftovers {
    /// Cancel them.
    Cancel,
    /// Hand them to another worker.
    Release,
}

/// Where an attempt starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// A new run: from the entry point.
    Fresh,
    /// A resumed or recovered run: after its checkpoint.
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

    /// How it runs workflows.
    pub fn config(&self) -> &ExecutorConfig {
        &self.inner.config
    }

    /// Who it is, as recorded in `runs.owner`.
    pub fn owner(&self) -> &str {
        &self.inner.config.owner
    }

    /// Creates a run of `workflow` with `params` and starts it on a task here: the Go
    /// original's `Execute`. (Not named `execute`: Diesel's `RunQueryDsl::execute`, which
    /// applies to every type, would shadow it wherever `RunQueryDsl` is imported.) The run is
    /// inserted `running` under this executor's lease, so no worker can claim it; if this
    /// process dies, a worker recovers it when the lease expires.
    ///
    /// Errors: [`Error::WorkflowNotFound`] (404) for an unknown workflow and
    /// [`Error::InvalidInput`] (400) for params that are not a JSON object, both before
    /// anything is written; [`Error::ShuttingDown`] (503) after [`Executor::shutdown`].
    pub async fn start(&self, workflow: &str, params: Value) -> Result<Execution> {
        self.refuse_if_closing()?;
        let def = *self.inner.registry.get(workflow)?;
        let params = Params::from_value(params)?;
        let (run, lease) = {
            let mut conn = self.inner.pool.get().await?;
            let config = &self.inner.config;
            lease::insert_running(&mut conn, workflow, &params, &config.owner, config.lease).await?
        };
        Ok(self.spawn(def, run, lease, Attempt::Fresh))
    }

    /// Queues a run of `workflow` with `params` for a [`Worker`](crate::Worker), and returns
    /// it `pending` at once. With a `key`, submitting again with the same key returns the
    /// same run instead of creating another (and the same key with another workflow or
    /// params is [`Error::InvalidInput`]).
    pub async fn submit(&self, workflow: &str, params: Value, key: Option<&str>) -> Result<Run> {
        self.inner.registry.get(workflow)?;
        let params = Params::from_value(params)?;
        if let Some(key) = key
            && key.trim().is_empty()
        {
            return Err(Error::invalid_input("idempotency key", key, "is empty"));
        }
        let mut conn = self.inner.pool.get().await?;
        lease::insert_pending(&mut conn, workflow, &params, key).await
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
        self.interrupt(run_id);
        Ok(run)
    }

    /// Interrupts the node of `run_id` if it executes here (its status is someone else's
    /// business: a cancel, or a lost lease).
    pub(crate) fn interrupt(&self, run_id: RunId) {
        if let Some(active) = self.inner.active().get(&run_id) {
            active.cancel.cancel();
        }
    }

    /// How many runs execute here now.
    pub fn active_runs(&self) -> usize {
        self.inner.active().len()
    }

    /// Continues a `failed` or `cancelled` run after its checkpoint (or from the start if no
    /// node completed), with the same params. Step numbers continue after the last recorded
    /// one, so no (node, step) is recorded twice. Other statuses are
    /// [`Error::InvalidStatus`] (400); a run whose workflow is no longer registered is
    /// [`Error::WorkflowNotFound`] (404).
    pub async fn resume(&self, run_id: RunId) -> Result<Execution> {
        self.refuse_if_closing()?;
        let mut conn = self.inner.pool.get().await?;
        let run = repository::find_run(&mut conn, run_id).await?;
        let def = *self.inner.registry.get(&run.workflow_name)?;
        let config = &self.inner.config;
        let (run, lease) = lease::reopen(&mut conn, run_id, &config.owner, config.lease).await?;
        drop(conn);
        Ok(self.spawn(def, run, lease, Attempt::Resume))
    }

    /// Executes a run a worker claimed (fresh) or took over (resume) under `lease`.
    pub(crate) fn execute_claimed(
        &self,
        run: Run,
        lease: Lease,
        attempt: Attempt,
    ) -> Result<Execution> {
        let def = *self.inner.registry.get(&run.workflow_name)?;
        Ok(self.spawn(def, run, lease, attempt))
    }

    /// Stops taking new runs, lets executing ones finish for up to `drain`, then cancels
    /// those still executing (they are marked `cancelled`, and can be resumed later) and
    /// waits a little for them to record it.
    pub async fn shutdown(&self, drain: Duration) -> ShutdownReport {
        self.stop(drain, Leftovers::Cancel).await
    }

    /// Like [`Executor::shutdown`], but runs still executing after `drain` are not cancelled:
    /// their nodes are interrupted and their leases released at once, so that another worker
    /// takes them over and resumes them after their checkpoint. What a worker does on stop.
    pub async fn shutdown_releasing(&self, drain: Duration) -> ShutdownReport {
        self.stop(drain, Leftovers::Release).await
    }

    async fn stop(&self, drain: Duration, leftovers: Leftovers) -> ShutdownReport {
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.tasks.close();
        let mut report = ShutdownReport::default();
        if tokio::time::timeout(drain, self.inner.tasks.wait())
            .await
            .is_ok()
        {
            self.inner.stopped.cancel();
            report.all_stopped = true;
            return report;
        }
        let still_running: Vec<(RunId, uuid::Uuid)> = self
            .inner
            .active()
            .iter()
            .map(|(id, a)| (*id, a.token))
            .collect();
        match leftovers {
            Leftovers::Cancel => {
                for (run_id, _) in still_running {
                    match self.cancel(run_id).await {
                        Ok(_) => report.cancelled.push(run_id),
                        Err(e) => {
                            tracing::warn!(%run_id, error = %e, "could not cancel at shutdown")
                        }
                    }
                }
            }
            Leftovers::Release => {
                for (run_id, _) in &still_running {
                    self.interrupt(*run_id);
                }
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), self.inner.tasks.wait()).await;
                let tokens: Vec<uuid::Uuid> = still_running.iter().map(|(_, t)| *t).collect();
                let released = async {
                    let mut conn = self.inner.pool.get().await?;
                    lease::release(&mut conn, &tokens).await
                }
                .await;
                match released {
                    Ok(ids) => report.released = ids,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not release leases; they expire on their own")
                    }
                }
            }
        }
        report.all_stopped = tokio::time::timeout(Duration::from_secs(10), self.inner.tasks.wait())
            .await
            .is_ok();
        self.inner.stopped.cancel();
        report
    }

    fn refuse_if_closing(&self) -> Result<()> {
        if AtomicBool::load(&self.inner.closing, Ordering::SeqCst) {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Starts the task executing `run` under `lease`, registered so that
    /// [`Executor::cancel`] reaches it and the heartbeat renews its lease.
    fn spawn(&self, def: WorkflowDef, run: Run, lease: Lease, attempt: Attempt) -> Execution {
        self.start_heartbeat();
        let (sender, events) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        self.inner.active().insert(
            run.id,
            Active {
                token: lease.token,
                cancel: cancel.clone(),
            },
        );
        let inner = Arc::clone(&self.inner);
        let span = tracing::info_span!("run", run_id = %run.id, workflow = def.name());
        let record = run.clone();
        let task = self.inner.tasks.spawn(
            async move {
                let observer = Broadcast::new()
                    .with(Arc::new(inner.observers.clone()))
                    .with(Arc::new(ChannelObserver(sender)));
                let recorder =
                    PgRecorder::new(inner.pool.clone(), inner.config.keep_checkpoints, lease);
                // A panic in a factory or an observer fails the run instead of leaving it
                // `running` with no task behind it.
                let attempt = execute_attempt(
                    &inner, &recorder, &def, &record, attempt, &observer, &cancel,
                );
                let outcome = match AssertUnwindSafe(attempt).catch_unwind().await {
                    Ok(outcome) => outcome,
                    Err(panic) => {
                        let message =
                            format!("the run panicked: {}", panic_message(panic.as_ref()));
                        fail(&recorder, record.id, message).await
                    }
                };
                inner.active().remove(&record.id);
                finish(&inner, &recorder, record.id, outcome, &observer).await
            }
            .instrument(span),
        );
        Execution { run, events, task }
    }

    /// Starts the task renewing the leases of this executor's runs, once.
    fn start_heartbeat(&self) {
        self.inner.heartbeat.call_once(|| {
            tokio::spawn(heartbeat(Arc::downgrade(&self.inner)));
        });
    }
}

/// Renews the leases of the runs executing here, every `heartbeat`. A run whose lease is no
/// longer held (it was cancelled, or taken over after this process stalled) is interrupted;
/// so are all of them when the leases could not be renewed for longer than a lease lasts.
async fn heartbeat(inner: std::sync::Weak<Inner>) {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        let (every, lease, stopped) = match inner.upgrade() {
            Some(inner) => (
                inner.config.heartbeat,
                inner.config.lease,
                inner.stopped.clone(),
            ),
            None => return,
        };
        tokio::select! {
            () = stopped.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let tokens: HashSet<uuid::Uuid> = inner.active().values().map(|a| a.token).collect();
        if tokens.is_empty() {
            last_renewed = tokio::time::Instant::now();
            continue;
        }
        let renewed = async {
            let mut conn = inner.pool.get().await?;
            let asked: Vec<uuid::Uuid> = tokens.iter().copied().collect();
            lease::renew(&mut conn, &asked, lease).await
        }
        .await;
        match renewed {
            Ok(held) => {
                let held: HashSet<uuid::Uuid> = held.into_iter().collect();
                last_renewed = tokio::time::Instant::now();
                // Only runs whose token was asked about: others started during the query.
                for (run_id, active) in inner.active().iter() {
                    if tokens.contains(&active.token) && !held.contains(&active.token) {
                        tracing::info!(%run_id, "the run is no longer held by this executor: stopping it");
                        active.cancel.cancel();
                    }
                }
            }
            Err(e) if last_renewed.elapsed() > lease => {
                tracing::warn!(error = %e, "leases could not be renewed for longer than a lease lasts: stopping this executor's runs");
                for active in inner.active().values() {
                    active.cancel.cancel();
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not renew leases; retrying"),
        }
    }
}

/// Fails the run with `message` between nodes; `Superseded` if it was no longer this
/// executor's to fail (cancelled or taken over meanwhile).
async fn fail(recorder: &PgRecorder, run_id: RunId, message: String) -> Result<Outcome> {
    Ok(if recorder.run_failed(run_id, &message).await? {
        Outcome::Failed(message)
    } else {
        Outcome::Superseded
    })
}

/// Hot start and execution of one attempt.
async fn execute_attempt(
    inner: &Inner,
    recorder: &PgRecorder,
    def: &WorkflowDef,
    run: &Run,
    attempt: Attempt,
    observer: &dyn Observer,
    cancel: &CancellationToken,
) -> Result<Outcome> {
    let params = Params::from_value(run.params.clone().unwrap_or(Value::Null))?;
    let mut builder = GraphBuilder::new();
    builder.set_max_iterations(inner.config.max_iterations);
    let (graph, mut state) = match def.build(builder, &inner.runtime, params).await {
        Ok(built) => built,
        Err(e) => return fail(recorder, run.id, e.to_string()).await,
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
                    let next = route(&graph, &after, &saved);
                    match (next.step, next.to) {
                        (Step::Continue, Some(to)) => (to, saved, iteration, true),
                        (Step::Fail(message) | Step::CycleBound(message), _) => {
                            return fail(recorder, run.id, message).await;
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
        journal: recorder,
        observer,
        cancel,
        run_id: run.id,
    };
    engine.run(node, state, iteration).await
}

/// Post-commit: makes sure a failed write fails the run (unless the database was out of
/// reach: then the run is left to be recovered when its lease expires), and ends the
/// progress stream with the run's final record.
async fn finish(
    inner: &Inner,
    recorder: &PgRecorder,
    run_id: RunId,
    outcome: Result<Outcome>,
    observer: &dyn Observer,
) -> Result<Run> {
    let write_error = outcome.as_ref().err().map(ToString::to_string);
    if let Err(error) = &outcome {
        if is_connection_error(error) {
            tracing::warn!(%run_id, %error, "the database went away; the run will be recovered when its lease expires");
        } else {
            let message = format!("recording the run failed, so it was stopped: {error}");
            if let Err(e) = recorder.run_failed(run_id, &message).await {
                tracing::error!(%run_id, error = %e, "could not mark the run failed; it will be recovered when its lease expires");
            }
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

/// Whether `error` means the database could not be reached (rather than refused a write).
fn is_connection_error(error: &Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as Diesel};
    matches!(
        error,
        Error::Unavailable { .. }
            | Error::Database(
                Diesel::DatabaseError(
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                    _,
                ) | Diesel::BrokenTransactionManager
            )
    )
}
