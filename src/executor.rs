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

use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::{RwLock, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::db::Pool;
use crate::engine::{Engine, Outcome, Step, panic_message, route};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::graph::{DEFAULT_MAX_ITERATIONS, GraphBuilder};
use crate::journal::Journal;
use crate::lease::{self, Lease};
use crate::lease_deadline::LeaseDeadline;
use crate::lifecycle;
use crate::model::{Run, RunId};
use crate::observer::{Broadcast, ChannelObserver, Observer, TracingObserver};
use crate::params::Params;
use crate::recorder::{PgRecorder, ResumePoint};
use crate::registry::{Registry, WorkflowDef};
use crate::repository;
use crate::run_connections::RunConnections;
use crate::runtime::Runtime;

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
                connections: RunConnections::new(self.pool.clone()),
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
                starting: RwLock::new(()),
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
    /// The pool as the runs use it: all of it but one connection, kept for the heartbeat.
    connections: RunConnections,
    registry: Registry,
    runtime: Runtime,
    config: ExecutorConfig,
    observers: Broadcast,
    /// The attempts executing in this process, by lease token: one run may have two for a
    /// moment (cancelled and resumed at once, or taken over from this very process after it
    /// stalled), and each must keep its own heartbeat and interrupt.
    active: Mutex<HashMap<uuid::Uuid, Active>>,
    tasks: TaskTracker,
    closing: AtomicBool,
    /// Held (shared) from a start's check of `closing` until its task is spawned; shutdown
    /// takes it exclusively once `closing` is set, so that every run it must drain has been
    /// spawned.
    starting: RwLock<()>,
    /// Starts the heartbeat task once, on the first run.
    heartbeat: std::sync::Once,
    /// Stops the heartbeat task.
    stopped: CancellationToken,
}

/// An attempt executing here.
struct Active {
    run_id: RunId,
    cancel: CancellationToken,
    deadline: LeaseDeadline,
}

impl Inner {
    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<uuid::Uuid, Active>> {
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
    pool: Pool,
    patience: Duration,
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

    /// The next progress event; `None` after the last, which is [`Event::GraphCompleted`]
    /// (or [`Event::Handover`] if this executor stopped executing the run before its end).
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Waits for the run to end and returns its record as stored: `completed`, `failed` or
    /// `cancelled`, with its result or error. Events not yet read are dropped.
    ///
    /// A run whose writes failed (an output PostgreSQL cannot store, say) is recorded
    /// `failed` saying so, and that record is what this returns. If this executor lost the
    /// run (it stalled, or lost the database, for longer than the run's lease, and a worker
    /// took the run over), this follows the run until whoever executes it now ends it.
    /// [`Error::Unavailable`] only if the database stays out of reach for longer than a
    /// lease lasts.
    pub async fn wait(self) -> Result<Run> {
        let (pool, patience) = (self.pool.clone(), self.patience);
        let run = self.ended().await?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        follow(&pool, run.id, patience).await
    }

    /// Waits for this executor's attempt at the run to end, and returns the run as it was
    /// then (still `running` if the attempt lost it).
    pub(crate) async fn ended(self) -> Result<Run> {
        drop(self.events);
        let id = self.run.id;
        self.task.await.unwrap_or_else(|e| {
            Err(Error::Value {
                container: "run",
                key: id.to_string(),
                reason: format!("its task ended abnormally: {e}"),
            })
        })
    }
}

/// The run's record, once it has ended; read every so often.
async fn follow(pool: &Pool, run_id: RunId, patience: Duration) -> Result<Run> {
    let mut pauses = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(pauses.next_pause()).await;
        let run = read_run(pool, run_id, patience).await?;
        if run.status.is_terminal() {
            return Ok(run);
        }
    }
}

/// The run's record, read again while the database is out of reach, for up to `patience`.
async fn read_run(pool: &Pool, run_id: RunId, patience: Duration) -> Result<Run> {
    let give_up = Instant::now() + patience;
    let mut pauses = Backoff::for_writes();
    loop {
        let read = async {
            let mut conn = pool.get().await?;
            repository::find_run(&mut conn, run_id).await
        }
        .await;
        match read {
            Err(e) if e.is_connection_lost() && Instant::now() < give_up => {
                tokio::time::sleep(pauses.next_pause()).await;
            }
            other => return other,
        }
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// A new run: from the entry point.
    Fresh,
    /// A resumed or recovered run: after its checkpoint. `previous_error` is what the run
    /// had failed with before a resume, kept for the message if the resume fails too.
    Resume { previous_error: Option<String> },
}

impl Attempt {
    /// A recovery (a takeover): no earlier error to keep.
    pub(crate) const RECOVERY: Attempt = Attempt::Resume {
        previous_error: None,
    };
}

impl Executor {
    /// An executor running `registry`'s workflows on `pool`.
    ///
    /// The runs it executes write through all of the pool's connections but one, which is
    /// kept for renewing their leases; give it a pool of its own (of at least two
    /// connections when it executes many runs at once).
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
    /// anything is written; [`Error::ShuttingDown`] (503) once [`Executor::shutdown`] has
    /// begun (a start already under way then is drained like any other run).
    pub async fn start(&self, workflow: &str, params: Value) -> Result<Execution> {
        let _starting = self.start_guard().await?;
        let def = *self.inner.registry.get(workflow)?;
        let params = Params::from_value(params)?;
        let granted = Instant::now();
        let (run, lease) = {
            let mut conn = self.inner.pool.get().await?;
            let config = &self.inner.config;
            lease::insert_running(&mut conn, workflow, &params, &config.owner, config.lease).await?
        };
        Ok(self.spawn(def, run, lease, granted, Attempt::Fresh))
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

    /// Interrupts the node of every attempt at `run_id` executing here (its status is
    /// someone else's business: a cancel, or a lost lease).
    pub(crate) fn interrupt(&self, run_id: RunId) {
        for active in self.inner.active().values() {
            if active.run_id == run_id {
                active.cancel.cancel();
            }
        }
    }

    /// How many runs execute here now.
    pub fn active_runs(&self) -> usize {
        self.inner.active().len()
    }

    /// Continues a `failed` or `cancelled` run after its checkpoint (or from the start if no
    /// node completed), with the same params. Step numbers continue after the last recorded
    /// one, so no (node, step) is recorded twice. Other statuses are
    /// [`Error::InvalidStatus`] (400); a run whose nodes completed but whose checkpoint is
    /// gone (pruned, say) is [`Error::NotResumable`] (400), since resuming it would run
    /// them again; a run whose workflow is no longer registered is
    /// [`Error::WorkflowNotFound`] (404). Nothing is changed when it is refused.
    pub async fn resume(&self, run_id: RunId) -> Result<Execution> {
        let _starting = self.start_guard().await?;
        let mut conn = self.inner.pool.get().await?;
        let run = repository::find_run(&mut conn, run_id).await?;
        let def = *self.inner.registry.get(&run.workflow_name)?;
        let config = &self.inner.config;
        let granted = Instant::now();
        let reopened = lease::reopen(&mut conn, run_id, &config.owner, config.lease).await?;
        drop(conn);
        let attempt = Attempt::Resume {
            previous_error: reopened.previous_error,
        };
        Ok(self.spawn(def, reopened.run, reopened.lease, granted, attempt))
    }

    /// Executes a run a worker claimed (fresh) or took over (resume) under `lease`, granted
    /// by a statement sent at `granted`. Refused once shutdown has begun: the lease is then
    /// handed back at once.
    pub(crate) async fn execute_claimed(
        &self,
        run: Run,
        lease: Lease,
        granted: Instant,
        attempt: Attempt,
    ) -> Result<Execution> {
        let accepted = match self.start_guard().await {
            Ok(guard) => self
                .inner
                .registry
                .get(&run.workflow_name)
                .copied()
                .map(|def| (guard, def)),
            Err(e) => Err(e),
        };
        match accepted {
            Ok((_starting, def)) => Ok(self.spawn(def, run, lease, granted, attempt)),
            Err(e) => {
                let mut conn = self.inner.pool.get().await?;
                lease::release(&mut conn, &[lease.token]).await?;
                Err(e)
            }
        }
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
        // Starts that checked `closing` before it was set finish spawning first.
        drop(self.inner.starting.write().await);
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
            .map(|(token, a)| (a.run_id, *token))
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

    /// What a start holds until its run is spawned, so that shutdown drains it; refused
    /// ([`Error::ShuttingDown`]) at once once shutdown has begun.
    async fn start_guard(&self) -> Result<tokio::sync::RwLockReadGuard<'_, ()>> {
        // Checked before waiting too: once shutdown waits for the starts under way, new ones
        // would queue behind it.
        self.refuse_if_closing()?;
        let guard = self.inner.starting.read().await;
        self.refuse_if_closing()?;
        Ok(guard)
    }

    fn refuse_if_closing(&self) -> Result<()> {
        if AtomicBool::load(&self.inner.closing, Ordering::SeqCst) {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Starts the task executing `run` under `lease` (granted by a statement sent at
    /// `granted`), registered so that [`Executor::cancel`] reaches it and the heartbeat
    /// renews its lease.
    fn spawn(
        &self,
        def: WorkflowDef,
        run: Run,
        lease: Lease,
        granted: Instant,
        attempt: Attempt,
    ) -> Execution {
        self.start_heartbeat();
        let (sender, events) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let deadline = LeaseDeadline::new(granted, self.inner.config.lease);
        self.inner.active().insert(
            lease.token,
            Active {
                run_id: run.id,
                cancel: cancel.clone(),
                deadline: deadline.clone(),
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
                let recorder = PgRecorder::new(
                    inner.connections.clone(),
                    inner.config.keep_checkpoints,
                    lease,
                    deadline,
                );
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
                let ended = finish(&inner, &recorder, record.id, outcome, &observer).await;
                inner.active().remove(&lease.token);
                ended
            }
            .instrument(span),
        );
        Execution {
            run,
            events,
            task,
            pool: self.inner.pool.clone(),
            patience: self.inner.config.lease,
        }
    }

    /// Starts the task renewing the leases of this executor's runs, once.
    fn start_heartbeat(&self) {
        self.inner.heartbeat.call_once(|| {
            tokio::spawn(heartbeat(Arc::downgrade(&self.inner)));
        });
    }
}

/// Renews the leases of the attempts executing here, every `heartbeat`. An attempt whose
/// lease is no longer held (its run was cancelled, or taken over after this process stalled)
/// is interrupted. When the database cannot be reached, renewals are retried sooner (with
/// backoff), and an attempt is interrupted only once its lease has surely run out.
async fn heartbeat(inner: std::sync::Weak<Inner>) {
    let mut retrying: Option<Backoff> = None;
    loop {
        let (pause, lease, stopped) = match inner.upgrade() {
            Some(inner) => (
                retrying
                    .as_mut()
                    .map_or(inner.config.heartbeat, |b| b.next_pause()),
                inner.config.lease,
                inner.stopped.clone(),
            ),
            None => return,
        };
        tokio::select! {
            () = stopped.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let asked: HashSet<uuid::Uuid> = inner.active().keys().copied().collect();
        if asked.is_empty() {
            retrying = None;
            continue;
        }
        let sent = Instant::now();
        let renewed = async {
            let mut conn = inner.pool.get().await?;
            let tokens: Vec<uuid::Uuid> = asked.iter().copied().collect();
            lease::renew(&mut conn, &tokens, lease).await
        }
        .await;
        match renewed {
            Ok(renewal) => {
                retrying = None;
                // Only attempts whose token was asked about: others started during the query.
                for (token, active) in inner.active().iter() {
                    if renewal.renewed.contains(token) {
                        active.deadline.renewed(sent, lease);
                    } else if asked.contains(token) && !renewal.holds(token) {
                        tracing::info!(run_id = %active.run_id, "the run is no longer held by this executor: stopping its attempt");
                        active.cancel.cancel();
                    }
                }
            }
            Err(e) => {
                if retrying.is_none() {
                    tracing::warn!(error = %e, "could not renew leases; retrying");
                    retrying = Some(Backoff::new(
                        Duration::from_millis(100),
                        inner.config.heartbeat,
                    ));
                }
                for active in inner.active().values() {
                    if active.deadline.remaining().is_zero() && !active.cancel.is_cancelled() {
                        tracing::warn!(run_id = %active.run_id, "the run's lease could not be renewed before it ran out: stopping its attempt");
                        active.cancel.cancel();
                    }
                }
            }
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

/// Why a resume could not go on, keeping what the run had failed with before it.
fn resume_failure(why: impl std::fmt::Display, previous_error: Option<&str>) -> String {
    match previous_error {
        Some(previous) => {
            format!(
                "resuming failed: {why} (before this resume, the run had failed with: {previous})"
            )
        }
        None => format!("resuming failed: {why}"),
    }
}

/// Hot start and execution of one attempt. An `Err` is a write that failed.
async fn execute_attempt(
    inner: &Inner,
    recorder: &PgRecorder,
    def: &WorkflowDef,
    run: &Run,
    attempt: Attempt,
    observer: &dyn Observer,
    cancel: &CancellationToken,
) -> Result<Outcome> {
    let previous_error = match &attempt {
        Attempt::Resume { previous_error } => previous_error.as_deref(),
        Attempt::Fresh => None,
    };
    let params = match run.params.as_ref().map(|p| p.to_value()).transpose() {
        Ok(value) => Params::from_value(value.unwrap_or(Value::Null)),
        Err(e) => Err(e),
    };
    let params = match params {
        Ok(params) => params,
        Err(e) => {
            let why = format!("its params cannot be read: {e}");
            return fail(
                recorder,
                run.id,
                resume_failure_or(why, &attempt, previous_error),
            )
            .await;
        }
    };
    let mut builder = GraphBuilder::new();
    builder.set_max_iterations(inner.config.max_iterations);
    let (graph, mut state) = match def.build(builder, &inner.runtime, params).await {
        Ok(built) => built,
        Err(e) => {
            return fail(
                recorder,
                run.id,
                resume_failure_or(e.to_string(), &attempt, previous_error),
            )
            .await;
        }
    };
    state.set_run_id(run.id);

    let (node, state, iteration, resumed) = match attempt {
        Attempt::Fresh => (graph.entry_point().to_owned(), state, 1, false),
        Attempt::Resume { .. } => {
            let point = match recorder.resume_point().await {
                Ok(point) => point,
                Err(e) if e.is_connection_lost() => return Err(e),
                Err(e) => {
                    let why = format!("its checkpoint could not be read: {e}");
                    return fail(recorder, run.id, resume_failure(why, previous_error)).await;
                }
            };
            let ResumePoint {
                next_iteration,
                completed,
                checkpoint,
            } = point;
            match checkpoint {
                None if completed > 0 => {
                    let why = Error::NotResumable {
                        run_id: run.id,
                        reason: format!(
                            "{completed} of its nodes completed, but its checkpoint is gone, so it would start again at the entry point and run them all again"
                        ),
                    };
                    return fail(recorder, run.id, resume_failure(why, previous_error)).await;
                }
                None => (graph.entry_point().to_owned(), state, next_iteration, true),
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
                        (Step::Continue, Some(to)) => (to, saved, next_iteration, true),
                        (Step::Fail(message) | Step::CycleBound(message), _) => {
                            return fail(recorder, run.id, message).await;
                        }
                        // An exit point's checkpoint belongs to a run that completed (and
                        // could not record it): finish it as it would have finished.
                        _ => {
                            return Ok(
                                if recorder.run_completed(run.id, &saved.data_value()).await? {
                                    Outcome::Completed
                                } else {
                                    Outcome::Superseded
                                },
                            );
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

/// `why`, as a resume's failure when the attempt is a resume.
fn resume_failure_or(why: String, attempt: &Attempt, previous_error: Option<&str>) -> String {
    match attempt {
        Attempt::Fresh => why,
        Attempt::Resume { .. } => resume_failure(why, previous_error),
    }
}

/// Post-commit: makes sure a failed write fails the run (unless the database was out of
/// reach for as long as the lease held: then the run is left to be taken over), reads the
/// run as recorded, and ends the progress stream with [`Event::GraphCompleted`] (or
/// [`Event::Handover`] if the run goes on elsewhere).
async fn finish(
    inner: &Inner,
    recorder: &PgRecorder,
    run_id: RunId,
    outcome: Result<Outcome>,
    observer: &dyn Observer,
) -> Result<Run> {
    let mut handover = None;
    if let Err(error) = &outcome {
        if error.is_connection_lost() {
            handover = Some(format!(
                "the database stayed out of reach for as long as the run's lease held ({error}); a worker will take the run over"
            ));
        } else {
            let message = format!("recording the run failed, so it was stopped: {error}");
            match recorder.run_failed(run_id, &message).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(%run_id, error = %e, "could not mark the run failed; a worker will take it over when its lease expires")
                }
            }
        }
    }
    let run = read_run(&inner.pool, run_id, inner.config.lease).await;
    match &run {
        Ok(run) if run.status.is_terminal() => observer.on_event(&Event::GraphCompleted {
            run_id,
            status: run.status,
            result: run.result.as_ref().and_then(|r| r.to_value().ok()),
            error: run.error_message.clone(),
        }),
        Ok(_) => observer.on_event(&Event::Handover {
            run_id,
            reason: handover.unwrap_or_else(|| {
                "this executor no longer holds the run's lease (it stalled for longer than the lease, and a worker took the run over, or it handed the run back)".to_owned()
            }),
        }),
        Err(e) => observer.on_event(&Event::Handover {
            run_id,
            reason: format!("the run's record could not be read: {e}"),
        }),
    }
    run
}
