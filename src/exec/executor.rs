//! The executor: creates runs, executes them on tokio tasks with every step recorded, and
//! cancels, resumes and shuts them down.
//!
//! A run goes through three phases, as in the Go original:
//!
//! 1. **cold start** ([`Executor::start`]): the workflow is looked up (404 if unknown), the
//!    params checked (400 unless a JSON object), and the run inserted as `pending`;
//! 2. **hot start** (on its own task): the run becomes `running`, the factory builds the graph
//!    from a pre-configured [`GraphBuilder`], and the engine executes it, recording each node's
//!    stage, decision and checkpoint in one statement;
//! 3. **post-commit**: the run ends `completed` with its result, `failed` with the error, or
//!    `cancelled`, and the progress stream ends with [`Event::GraphCompleted`].
//!
//! ```
//! use workflows::{Event, Executor, Registry, RunStatus};
//! use serde_json::json;
//! # use workflows::{BoxError, GraphBuilder, Params, Runtime, State, WorkflowDef};
//! # async fn hello(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
//! #     g.add_node("greet", |s: State, _| async move { Ok(s.with("greeting", "hello")) })
//! #         .set_entry_point("greet")
//! #         .add_exit_point("greet");
//! #     Ok(State::new())
//! # }
//! # fn registry() -> workflows::Result<Registry> {
//! #     let mut registry = Registry::new();
//! #     registry.register(WorkflowDef::new("hello", "Greets", |g, r, p| Box::pin(hello(g, r, p))))?;
//! #     Ok(registry)
//! # }
//! # #[tokio::main]
//! # async fn main() -> workflows::Result<()> {
//! # let pool = workflows::testing::pool().await?;
//! let executor = Executor::builder(pool, registry()?).build()?;
//! let mut execution = executor.start("hello", json!({})).await?;
//! println!("run {}", execution.run_id());
//! let mut last = None;
//! while let Some(event) = execution.next_event().await {
//!     println!("{event:?}");
//!     last = Some(event);
//! }
//! assert!(matches!(last, Some(Event::GraphCompleted { status: RunStatus::Completed, .. })));
//! let run = execution.wait().await?;
//! assert_eq!(run.status, RunStatus::Completed);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{RwLock, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::attempt::{self, Attempt};
use super::config::ExecutorConfig;
use super::execution::Execution;
use super::heartbeat;
use super::observer::{Observer, Observers, TracingObserver};
use super::shared::{Active, Inner};
use crate::error::{Error, Result};
use crate::model::{Run, RunId};
use crate::query::repository;
use crate::store::db::Pool;
use crate::store::group_commit::GroupCommit;
use crate::store::lease::Lease;
use crate::store::lease::LeaseDeadline;
use crate::store::run_connections::RunConnections;
use crate::store::runs;
use crate::workflow::params::{Params, nul_character_at};
use crate::workflow::registry::{Registry, WorkflowDef};
use crate::workflow::runtime::Runtime;

/// Sets up an [`Executor`].
pub struct ExecutorBuilder {
    pool: Pool,
    registry: Registry,
    runtime: Runtime,
    config: ExecutorConfig,
    observers: Observers,
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

    /// The executor; [`Error::MissingDependency`] naming the workflow and the type if a
    /// workflow's nodes need a dependency the runtime does not hold.
    pub fn build(self) -> Result<Executor> {
        for def in self.registry.iter() {
            if let Some(dependency) = def.dependency()
                && self.runtime.get_dependency(dependency).is_none()
            {
                return Err(Error::MissingDependency {
                    type_name: dependency.type_name,
                    workflow: Some(def.name().to_owned()),
                });
            }
        }
        // The runs and their batched commits take turns on the same connections.
        let connections = RunConnections::new(self.pool.clone());
        let run_permits = self
            .config
            .max_runs
            .map(|runs| Arc::new(tokio::sync::Semaphore::new(runs)));
        Ok(Executor {
            inner: Arc::new(Inner {
                group_commit: self
                    .config
                    .group_commit
                    .then(|| Arc::new(GroupCommit::new(connections.clone()))),
                connections,
                owner: self.config.owner_or_default(),
                pool: self.pool,
                registry: self.registry,
                runtime: self.runtime,
                config: self.config,
                observers: Observers::new()
                    .with(Arc::new(TracingObserver))
                    .with(Arc::new(self.observers)),
                active: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                run_permits,
                closing: AtomicBool::new(false),
                starting: RwLock::new(()),
                heartbeat: std::sync::Once::new(),
                stopped: CancellationToken::new(),
            }),
        })
    }
}

/// Executes registered workflows and records every step. Cheap to clone; clones share runs.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
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
            observers: Observers::new(),
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
        &self.inner.owner
    }

    /// Creates a run of `workflow` with `params` and starts it on a task here: the Go
    /// original's `Execute`. (Not named `execute`: Diesel's `RunQueryDsl::execute`, which
    /// applies to every type, would shadow it wherever `RunQueryDsl` is imported.) The run is
    /// inserted `running` under this executor's lease, so no worker can claim it; if this
    /// process dies, a worker recovers it when the lease expires. The workflow's factory runs
    /// before the run is inserted (here, in the caller's task), so that the run and its first
    /// node's `started` stage are inserted by one statement; a factory that fails or panics
    /// leaves the run `failed` with its message, as before. With
    /// [`group_commit`](ExecutorConfig::group_commit), that statement is the next batch.
    ///
    /// Errors: [`Error::WorkflowNotFound`] (404) for an unknown workflow and
    /// [`Error::InvalidInput`] (400) for params that are not a JSON object, both before
    /// anything is written; [`Error::ShuttingDown`] (503) once [`Executor::shutdown`] has
    /// begun (a start already under way then is drained like any other run).
    pub async fn start(&self, workflow: &str, params: Value) -> Result<Execution> {
        let _starting = self.start_guard().await?;
        let def = self.inner.registry.get(workflow)?.clone();
        let params = Params::from_value(params)?;
        def.check_params(&params)?;
        let permit = self.run_permit()?;
        let stored_params = params.to_value();
        let new = runs::NewRun::random(workflow, &stored_params);
        let prepared = attempt::prepare(&self.inner, &def, new.id, params).await;
        let granted = Instant::now();
        let owner = (self.inner.owner.as_str(), self.inner.config.lease);
        // With group commit, the run is inserted by the next batch, with other runs' commits,
        // unless no run is executing to commit with.
        let grouped = match (&self.inner.group_commit, prepared.first_stage()) {
            (Some(group), Some(first)) if group.batches_starts() => {
                group.start(runs::start_part(&new, owner, first)).await?
            }
            _ => None,
        };
        let (run, lease) = match grouped {
            Some(started) => started,
            None => {
                let mut conn = self.inner.pool.get().await?;
                runs::insert_running(&mut conn, &new, owner, prepared.first_stage()).await?
            }
        };
        let start = (Attempt::Fresh, Some(prepared));
        Ok(self.spawn(def, run, lease, granted, start, None, permit))
    }

    /// A permit for one more run started by a caller, if runs are bounded; [`Error::Busy`]
    /// when none is left.
    fn run_permit(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>> {
        match &self.inner.run_permits {
            None => Ok(None),
            Some(permits) => Arc::clone(permits)
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| Error::Busy {
                    limit: self.inner.config.max_runs.unwrap_or_default(),
                }),
        }
    }

    /// Queues a run of `workflow` with `params` for a [`Worker`](crate::Worker), and returns
    /// it `pending` at once. With a `key`, submitting again with the same key returns the
    /// same run instead of creating another (and the same key with another workflow or
    /// params is [`Error::InvalidInput`]).
    pub async fn submit(&self, workflow: &str, params: Value, key: Option<&str>) -> Result<Run> {
        let def = self.inner.registry.get(workflow)?;
        let params = Params::from_value(params)?;
        def.check_params(&params)?;
        if let Some(key) = key
            && key.trim().is_empty()
        {
            return Err(Error::invalid_input("idempotency key", key, "is empty"));
        }
        let mut conn = self.inner.pool.get().await?;
        runs::insert_pending(&mut conn, workflow, &params.to_value(), key).await
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
            runs::cancel_run(&mut conn, run_id).await?
        };
        self.interrupt(run_id);
        Ok(run)
    }

    /// Answers the question `key` that a `waiting` run asked
    /// ([`NodeContext::interrupt`](crate::NodeContext::interrupt)) with `answer`, and makes
    /// the run due: a [`Worker`](crate::Worker) continues it at once, at the node after the
    /// one that asked, which reads the answer. One statement that locks the run first: of
    /// two racing answers exactly one is recorded. Returns the run, still `waiting` (and
    /// due).
    ///
    /// Refused, changing nothing: [`Error::RunNotFound`] (404); [`Error::InvalidStatus`]
    /// (400) if the run is not waiting (never asked, continued already, cancelled);
    /// [`Error::InvalidInput`] (400) naming the key if the run did not ask it where it
    /// waits, it was answered already, or the key or the answer holds a NUL character.
    pub async fn answer(&self, run_id: RunId, key: &str, answer: Value) -> Result<Run> {
        if key.contains('\0') {
            return Err(Error::invalid_input(
                "key",
                key,
                "a question's key holds no NUL character",
            ));
        }
        if let Some(at) = nul_character_at(&answer, "answer") {
            return Err(Error::invalid_input(
                at,
                answer.to_string(),
                "PostgreSQL cannot store a NUL character in JSON text; remove it",
            ));
        }
        let mut conn = self.inner.pool.get().await?;
        runs::answer(&mut conn, run_id, key, &answer).await
    }

    /// Sends `message` on `topic` to a run that has not ended (pending, running or waiting),
    /// durably: the node after one that waits for the topic
    /// ([`NodeContext::wait_for_message`](crate::NodeContext::wait_for_message)) receives
    /// it, once, in the order messages on the topic were sent; one sent before the run waits
    /// is kept for it. A run waiting for this topic becomes due: a
    /// [`Worker`](crate::Worker) continues it at once. Returns the message's id.
    ///
    /// Refused, changing nothing: [`Error::RunNotFound`] (404); [`Error::InvalidStatus`]
    /// (400) for a run that ended; [`Error::InvalidInput`] (400) for an empty topic or a NUL
    /// character in the topic or the message.
    pub async fn send(&self, run_id: RunId, topic: &str, message: Value) -> Result<i64> {
        if topic.is_empty() || topic.contains('\0') {
            return Err(Error::invalid_input(
                "topic",
                topic,
                "must be non-empty text without a NUL character",
            ));
        }
        if let Some(at) = nul_character_at(&message, "message") {
            return Err(Error::invalid_input(
                at,
                message.to_string(),
                "PostgreSQL cannot store a NUL character in JSON text; remove it",
            ));
        }
        let mut conn = self.inner.pool.get().await?;
        runs::send(&mut conn, run_id, topic, &message).await
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
        let def = self.inner.registry.get(&run.workflow_name)?.clone();
        let permit = self.run_permit()?;
        let config = &self.inner.config;
        let granted = Instant::now();
        let reopened = runs::reopen(&mut conn, run_id, &self.inner.owner, config.lease).await?;
        drop(conn);
        let attempt = Attempt::Resume {
            previous_error: reopened.previous_error,
        };
        Ok(self.spawn(
            def,
            reopened.run,
            reopened.lease,
            granted,
            (attempt, None),
            None,
            permit,
        ))
    }

    /// Executes a run a worker claimed (fresh), took over (resume) or found due under
    /// `lease`, granted by a statement sent at `granted`; backoffs longer than
    /// `hold_waits_up_to` release it. Refused once shutdown has begun: the lease is then
    /// handed back at once.
    pub(crate) async fn execute_claimed(
        &self,
        run: Run,
        lease: Lease,
        granted: Instant,
        attempt: Attempt,
        hold_waits_up_to: Duration,
    ) -> Result<Execution> {
        let accepted = match self.start_guard().await {
            Ok(guard) => self
                .inner
                .registry
                .get(&run.workflow_name)
                .cloned()
                .map(|def| (guard, def)),
            Err(e) => Err(e),
        };
        match accepted {
            Ok((_starting, def)) => Ok(self.spawn(
                def,
                run,
                lease,
                granted,
                (attempt, None),
                Some(hold_waits_up_to),
                None,
            )),
            Err(e) => {
                let mut conn = self.inner.pool.get().await?;
                runs::release(&mut conn, &[lease.token]).await?;
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
                    runs::release(&mut conn, &tokens).await
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
    /// renews its lease; `prepared`, for a new run whose factory ran before its insert.
    /// Backoffs longer than `hold_waits_up_to` release the run; `None`: every backoff waits
    /// here (for runs a caller started and awaits). `permit`, if any, is held until the task
    /// ends.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        def: WorkflowDef,
        run: Run,
        lease: Lease,
        granted: Instant,
        (attempt, prepared): (Attempt, Option<attempt::Prepared>),
        hold_waits_up_to: Option<Duration>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
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
        let span = tracing::info_span!("run", run_id = %run.id, workflow = def.name());
        let (inner, record) = (Arc::clone(&self.inner), run.clone());
        let task = self.inner.tasks.spawn(
            async move {
                let token = lease.token;
                let ended = attempt::execute(
                    Arc::clone(&inner),
                    def,
                    record,
                    lease,
                    deadline,
                    (attempt, hold_waits_up_to),
                    prepared,
                    sender,
                    cancel,
                )
                .await;
                inner.active().remove(&token);
                drop(permit);
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
            tokio::spawn(heartbeat::heartbeat(Arc::downgrade(&self.inner)));
        });
    }
}
