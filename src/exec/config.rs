//! How an executor runs workflows: iterations, checkpoints, its name, its leases.

use std::time::Duration;

use crate::graph::DEFAULT_MAX_ITERATIONS;

/// How an executor runs workflows. Build one from [`ExecutorConfig::default`] and its
/// setters; the fields are public to read.
///
/// ```
/// use std::time::Duration;
/// let config = workflows::ExecutorConfig::default()
///     .owner("worker-7")
///     .lease(Duration::from_secs(60))
///     .heartbeat(Duration::from_secs(20));
/// assert_eq!(config.owner.as_deref(), Some("worker-7"));
/// assert_eq!(workflows::ExecutorConfig::default(), workflows::ExecutorConfig::default());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExecutorConfig {
    /// The `max_iterations` a graph gets unless its factory sets one (default 1000).
    pub max_iterations: u32,
    /// Whether a completed run keeps its last checkpoint (default true); failed and cancelled
    /// runs always keep theirs, to resume from.
    pub keep_checkpoints: bool,
    /// Who this executor is, as recorded in `runs.owner`. `None` (the default): the host,
    /// the process id and a random suffix, chosen when the executor is built
    /// ([`Executor::owner`](crate::Executor::owner) says which).
    pub owner: Option<String>,
    /// How long a lease on a running run lasts without a heartbeat (default 30 s). After
    /// that, any worker may take the run over.
    pub lease: Duration,
    /// How often leases are renewed (default 10 s); well below `lease`.
    pub heartbeat: Duration,
    /// Whether node commits of different runs that are ready at the same time are committed
    /// together (default true): the commits of runs going on to their next node or completing,
    /// and the starts of new runs, that gathered while the batch before them was in flight are
    /// sent as one statement, so that they share its round trip, its overhead and its WAL
    /// flush, with the same durability (each run's commit is durable before its next node
    /// starts) and the same fence (each run's part is refused alone). A batch also waits, a
    /// millisecond at the most, for the runs of the batch before it to come back, so that runs
    /// that committed together keep committing together; a lone run, or one the batch
    /// completed, is waited for by nobody. On a 2-core machine with a local disk, 8 runs in
    /// flight made 1.2–1.6× the runs per second of separate commits, for less than half the
    /// server's CPU per node step (`bench/RESULTS.md`); a run executing alone commits alone,
    /// as it would without group commit. Off (`group_commit(false)`), every commit is sent
    /// alone, on a connection of its own.
    pub group_commit: bool,
    /// The most runs that [`Executor::start`](crate::Executor::start) and
    /// [`Executor::resume`](crate::Executor::resume) keep executing in this process at once
    /// (default: no bound). Past it they refuse with [`Error::Busy`](crate::Error::Busy),
    /// which the HTTP API answers with 503 and `Retry-After`. Runs a worker claims are
    /// bounded by the worker's own concurrency instead.
    pub max_runs: Option<usize>,
    /// The largest state a run may hold, serialized (default 16 MiB): a node whose state
    /// would be larger after its update fails the run, naming the node and the size, and
    /// nothing of that step is recorded.
    pub max_state_bytes: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            max_iterations: DEFAULT_MAX_ITERATIONS,
            keep_checkpoints: true,
            owner: None,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            group_commit: true,
            max_runs: None,
            max_state_bytes: 16 << 20,
        }
    }
}

impl ExecutorConfig {
    /// The `max_iterations` of graphs whose factory sets none.
    pub fn max_iterations(mut self, max_iterations: u32) -> Self {
        self.max_iterations = max_iterations;
        self
    }

    /// Whether completed runs keep their last checkpoint.
    pub fn keep_checkpoints(mut self, keep: bool) -> Self {
        self.keep_checkpoints = keep;
        self
    }

    /// The name recorded in `runs.owner`.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// How long a lease lasts without a heartbeat.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often leases are renewed.
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets [`group_commit`](Self::group_commit).
    pub fn group_commit(mut self, together: bool) -> Self {
        self.group_commit = together;
        self
    }

    /// Sets [`max_runs`](Self::max_runs).
    pub fn max_runs(mut self, runs: usize) -> Self {
        self.max_runs = Some(runs);
        self
    }

    /// Sets [`max_state_bytes`](Self::max_state_bytes).
    pub fn max_state_bytes(mut self, bytes: usize) -> Self {
        self.max_state_bytes = bytes;
        self
    }

    /// `owner`, or a name made up now: `host:pid:random`, so that two executors in one
    /// process are told apart too.
    pub(crate) fn owner_or_default(&self) -> String {
        if let Some(owner) = &self.owner {
            return owner.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}:{}:{}", std::process::id(), &suffix[..8])
    }
}
