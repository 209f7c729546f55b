//! Workers: any number of processes, on any number of machines, sharing the runs of one
//! database.
//!
//! A worker claims `pending` runs (`FOR UPDATE SKIP LOCKED`, so workers never wait on each
//! other), executes them with its [`Executor`] under a lease it renews, takes over runs whose
//! lease expired (their worker crashed, was killed, or lost the database) and resumes them
//! after their last checkpoint, and prunes old runs if asked to. It wakes up on PostgreSQL
//! notifications (a run was submitted or cancelled) and also polls, so it works where
//! notifications are lost or unavailable.
//!
//! ```
//! use workflows::{Executor, Registry, RunStatus, Worker, WorkerConfig, repository};
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
//! # let schema = workflows::testing::IsolatedSchema::create().await?;
//! # let pool = schema.pool().clone();
//! let executor = Executor::builder(pool.clone(), registry()?).build()?;
//! let run = executor.submit("hello", serde_json::json!({}), None).await?;
//! let worker = Worker::new(executor, WorkerConfig::default().concurrency(16));
//! # let stop = async {
//! #     let mut conn = pool.get().await.unwrap();
//! #     while !repository::find_run(&mut conn, run.id).await.unwrap().status.is_terminal() {
//! #         tokio::time::sleep(std::time::Duration::from_millis(20)).await;
//! #     }
//! # };
//! worker.run_until(stop).await?; // `stop`: a shutdown signal (SIGTERM, Ctrl-C)
//! let run = repository::find_run(&mut *pool.get().await?, run.id).await?;
//! assert_eq!(run.status, RunStatus::Completed);
//! # drop(worker);
//! # schema.drop_schema().await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::exec::attempt::Attempt;
use crate::exec::executor::{Executor, ShutdownReport};
use crate::model::Run;
use crate::store::db::Pool;
use crate::store::lease::Lease;
use crate::store::listener::{self, Wakeup};
use crate::store::retention::{self, Retention};
use crate::store::runs::{self, Expired};

/// How a worker works: [`WorkerConfig::default`] and its setters.
///
/// ```
/// let config = workflows::WorkerConfig::default().concurrency(16);
/// assert_eq!((config.concurrency, config.listen), (16, true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Most runs executing at once (default 8).
    pub concurrency: usize,
    /// How often to look for work without being notified (default 1 s).
    pub poll_interval: Duration,
    /// Whether to be woken by PostgreSQL notifications (default true). Turn off behind a
    /// transaction-mode pooler, where LISTEN does not work; polling still finds the work.
    pub listen: bool,
    /// How many times a run may be taken over after its lease expired before it is failed
    /// instead (default 3): a run that keeps killing its workers must not loop forever.
    pub max_recoveries: i32,
    /// What to prune (default: nothing).
    pub retention: Retention,
    /// When stopping, how long executing runs may take to finish before they are handed to
    /// other workers (default 30 s).
    pub drain: Duration,
    /// The longest retry backoff a run waits out holding its worker slot and lease
    /// (default 5 s). A longer one releases both: the run is `waiting` until it is due, and
    /// any worker continues it then (at most a `poll_interval` late).
    pub hold_waits_up_to: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 8,
            poll_interval: Duration::from_secs(1),
            listen: true,
            max_recoveries: 3,
            retention: Retention::default(),
            drain: Duration::from_secs(30),
            hold_waits_up_to: Duration::from_secs(5),
        }
    }
}

impl WorkerConfig {
    /// Most runs executing at once.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// How often to look for work without being notified.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Whether to be woken by PostgreSQL notifications.
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// How many takeovers a run may have before it is failed instead.
    pub fn max_recoveries(mut self, max: i32) -> Self {
        self.max_recoveries = max;
        self
    }

    /// What to prune.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// How long executing runs may take to finish when the worker stops.
    pub fn drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// The longest backoff waited out holding the run; see [`WorkerConfig::hold_waits_up_to`].
    pub fn hold_waits_up_to(mut self, hold: Duration) -> Self {
        self.hold_waits_up_to = hold;
        self
    }
}

/// A worker: see the module documentation.
pub struct Worker {
    executor: Executor,
    config: WorkerConfig,
    slots: Arc<Semaphore>,
    freed: Arc<Notify>,
    /// One [`Worker::fill`] at a time: it claims as many runs as there are free slots, and
    /// two at once would both count the same slots.
    filling: Mutex<()>,
}

impl Worker {
    /// A worker executing runs with `executor` (whose registry says which workflows it
    /// takes: runs of other workflows are left to other workers).
    pub fn new(executor: Executor, config: WorkerConfig) -> Self {
        Worker {
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            freed: Arc::new(Notify::new()),
            filling: Mutex::new(()),
            executor,
            config,
        }
    }

    /// Its executor.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// How many more runs it can take now.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Works until `stop` completes, then stops claiming, lets executing runs finish for up to
    /// `drain`, and hands the rest back: their leases end at once, so another worker takes
    /// them over and resumes them after their checkpoint.
    pub async fn run_until(&self, stop: impl Future<Output = ()>) -> Result<ShutdownReport> {
        let pool = self.executor.pool().clone();
        let stop_listening = CancellationToken::new();
        let mut wakeups = self
            .config
            .listen
            .then(|| listener::spawn(pool.clone(), stop_listening.clone()));
        // Pruning has a task of its own, so that a long prune never delays a claim.
        let pruning = self.config.retention.is_enabled().then(|| {
            tokio::spawn(prune_every(
                pool.clone(),
                self.config.retention.clone(),
                stop_listening.clone(),
            ))
        });
        let mut stop = std::pin::pin!(stop);
        tracing::info!(owner = %self.executor.owner(), concurrency = self.config.concurrency, "worker started");
        loop {
            if let Err(e) = self.fill().await {
                tracing::warn!(error = %e, "could not claim runs; retrying");
            }
            tokio::select! {
                () = &mut stop => break,
                () = self.freed.notified() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
                Some(wakeup) = next_wakeup(&mut wakeups) => {
                    if let Wakeup::Cancelled(run_id) = wakeup {
                        self.executor.interrupt(run_id);
                    }
                }
            }
        }
        stop_listening.cancel();
        if let Some(pruning) = pruning {
            let _ = pruning.await;
        }
        tracing::info!(owner = %self.executor.owner(), "worker stopping");
        Ok(self.executor.shutdown_releasing(self.config.drain).await)
    }

    /// One round of work: takes over expired runs, then claims pending ones, as far as free
    /// slots allow. Returns how many runs it started. Calls made at once take turns.
    pub async fn fill(&self) -> Result<usize> {
        let _turn = self.filling.lock().await;
        let names: Vec<String> = self
            .executor
            .registry()
            .list()
            .into_iter()
            .map(|w| w.name)
            .collect();
        let config = self.executor.config();
        let mut started = 0;

        let free = self.slots.available_permits();
        if free > 0 {
            let mut conn = self.executor.pool().get().await?;
            for seen in runs::expired(&mut conn, &names, to_limit(free)).await? {
                if seen.recoveries >= self.config.max_recoveries && !seen.released {
                    self.give_up(&mut conn, seen).await?;
                    continue;
                }
                let granted = Instant::now();
                if let Some((run, lease)) =
                    runs::take_over(&mut conn, seen, self.executor.owner(), config.lease).await?
                {
                    tracing::info!(run_id = %run.id, released = seen.released, "took over a run whose lease ended");
                    started +=
                        usize::from(self.execute(run, lease, granted, Attempt::RECOVERY).await);
                }
            }
        }
        let free = self.slots.available_permits();
        if free > 0 {
            let mut conn = self.executor.pool().get().await?;
            let granted = Instant::now();
            let due = runs::claim_due(
                &mut conn,
                &names,
                self.executor.owner(),
                config.lease,
                to_limit(free),
            )
            .await?;
            drop(conn);
            for (run, lease) in due {
                started += usize::from(self.execute(run, lease, granted, Attempt::Due).await);
            }
        }
        let free = self.slots.available_permits();
        if free > 0 {
            let mut conn = self.executor.pool().get().await?;
            let granted = Instant::now();
            let claimed = runs::claim_pending(
                &mut conn,
                &names,
                self.executor.owner(),
                config.lease,
                to_limit(free),
            )
            .await?;
            drop(conn);
            for (run, lease) in claimed {
                started += usize::from(self.execute(run, lease, granted, Attempt::Fresh).await);
            }
        }
        Ok(started)
    }

    async fn give_up(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        seen: Expired,
    ) -> Result<()> {
        let message = format!(
            "the run's lease ran out {} times (its worker crashed, was killed, or could not \
             reach the database for longer than the lease) and it was taken over each time; \
             giving up (raise WorkerConfig::max_recoveries, or resume it once the cause is fixed)",
            seen.recoveries
        );
        if runs::give_up(conn, seen, &message).await? {
            tracing::warn!(run_id = %seen.run_id, recoveries = seen.recoveries, "failed a run that keeps losing its worker");
        }
        Ok(())
    }

    /// Executes a claimed run in a free slot; whether it started.
    async fn execute(&self, run: Run, lease: Lease, granted: Instant, attempt: Attempt) -> bool {
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            // Cannot happen (runs are claimed only for free slots); the lease expires and
            // another worker takes the run over.
            tracing::error!(run_id = %run.id, "claimed a run without a free slot");
            return false;
        };
        let run_id = run.id;
        match self
            .executor
            .execute_claimed(run, lease, granted, attempt, self.config.hold_waits_up_to)
            .await
        {
            Ok(execution) => {
                let freed = Arc::clone(&self.freed);
                tokio::spawn(release_when_done(execution, permit, freed));
                true
            }
            Err(e) => {
                tracing::error!(%run_id, error = %e, "could not execute a claimed run");
                false
            }
        }
    }
}

/// Prunes as `retention` says, every `retention.every`, until `stop`.
async fn prune_every(pool: Pool, retention: Retention, stop: CancellationToken) {
    loop {
        let pruned = async {
            let mut conn = pool.get().await?;
            retention::prune(&mut conn, &retention).await
        };
        let pruned = tokio::select! {
            () = stop.cancelled() => return,
            pruned = pruned => pruned,
        };
        match pruned {
            Ok(report) if report.runs + report.checkpoints > 0 => {
                tracing::info!(
                    runs = report.runs,
                    checkpoints = report.checkpoints,
                    "pruned"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed; retrying later"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(retention.every) => {}
        }
    }
}

/// Frees the run's slot when it ends.
async fn release_when_done(
    execution: crate::Execution,
    permit: OwnedSemaphorePermit,
    freed: Arc<Notify>,
) {
    let _ = execution.ended().await;
    drop(permit);
    freed.notify_one();
}

async fn next_wakeup(wakeups: &mut Option<tokio::sync::mpsc::Receiver<Wakeup>>) -> Option<Wakeup> {
    match wakeups {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

fn to_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
