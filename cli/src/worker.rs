//! `workflows worker` and `workflows submit`: durable execution shared by worker processes.

use std::time::Duration;

use clap::Args;
use workflows::{Executor, ExecutorConfig, Pool, Registry, Retention, Worker, WorkerConfig};

use crate::Outcome;
use crate::output::outln;

/// How the worker works.
#[derive(Args)]
pub(crate) struct WorkerArgs {
    /// Most runs executing at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// A name for this worker in `runs.owner` (default: host, process id and a random suffix).
    #[arg(long)]
    name: Option<String>,
    /// How long a run's lease lasts without a heartbeat, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    lease_ms: u64,
    /// How often leases are renewed, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    heartbeat_ms: u64,
    /// How often to look for work without a notification, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    poll_ms: u64,
    /// Do not LISTEN for notifications (behind a transaction-mode pooler); poll only.
    #[arg(long)]
    no_listen: bool,
    /// Takeovers of a run whose worker died before it is failed instead.
    #[arg(long, default_value_t = 3)]
    max_recoveries: i32,
    /// Delete checkpoints of completed runs this many seconds after they were written.
    #[arg(long)]
    prune_checkpoints_after_secs: Option<u64>,
    /// Delete checkpoints of failed and cancelled runs this many seconds after they were
    /// written; such runs can then no longer be resumed.
    #[arg(long)]
    prune_resumable_checkpoints_after_secs: Option<u64>,
    /// Delete finished runs (with stages and decisions) this many seconds after they ended.
    #[arg(long)]
    prune_runs_after_secs: Option<u64>,
    /// On stop, seconds executing runs may take to finish before they are handed to other
    /// workers.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// A node's retry backoff up to this long, in milliseconds, is waited out holding the
    /// run; a longer one releases it (`waiting`) to whichever worker finds it due.
    #[arg(long, default_value_t = 5_000)]
    hold_waits_ms: u64,
}

/// Runs a worker until SIGINT or SIGTERM.
pub(crate) async fn work(pool: Pool, args: WorkerArgs) -> workflows::Result<Outcome> {
    if args.lease_ms == 0 {
        return Err(workflows::Error::invalid_input(
            "--lease-ms",
            "0",
            "must be above 0: it is how long a run's lease lasts without a heartbeat",
        ));
    }
    if args.heartbeat_ms == 0 || args.heartbeat_ms >= args.lease_ms {
        return Err(workflows::Error::invalid_input(
            "--heartbeat-ms",
            args.heartbeat_ms.to_string(),
            format_args!("must be above 0 and below --lease-ms ({})", args.lease_ms),
        ));
    }
    // One registration for the whole life of the worker, so that no signal falls between
    // waiting for the database and working.
    let mut stop = std::pin::pin!(stop_signal());
    let Some(()) = wait_for_database(&pool, stop.as_mut()).await else {
        return Ok(Outcome::Success);
    };
    let mut executor_config = ExecutorConfig::default()
        .lease(Duration::from_millis(args.lease_ms))
        .heartbeat(Duration::from_millis(args.heartbeat_ms));
    if let Some(name) = args.name {
        executor_config = executor_config.owner(name);
    }
    let executor = Executor::builder(pool, Registry::from_compiled()?)
        .runtime(crate::samples::runtime())
        .config(executor_config)
        .build()?;
    let mut retention = Retention::default();
    if let Some(secs) = args.prune_checkpoints_after_secs {
        retention = retention.checkpoints_after(Duration::from_secs(secs));
    }
    if let Some(secs) = args.prune_resumable_checkpoints_after_secs {
        retention = retention.resumable_checkpoints_after(Duration::from_secs(secs));
    }
    if let Some(secs) = args.prune_runs_after_secs {
        retention = retention.runs_after(Duration::from_secs(secs));
    }
    let config = WorkerConfig::default()
        .concurrency(args.concurrency.max(1))
        .poll_interval(Duration::from_millis(args.poll_ms.max(1)))
        .listen(!args.no_listen)
        .max_recoveries(args.max_recoveries)
        .retention(retention)
        .drain(Duration::from_secs(args.drain_secs))
        .hold_waits_up_to(Duration::from_millis(args.hold_waits_ms));
    outln!("worker {} started", executor.owner());
    let worker = Worker::new(executor, config);
    let report = worker.run_until(stop).await?;
    outln!(
        "worker stopped ({} runs cancelled{})",
        report.cancelled.len(),
        if report.all_stopped {
            ""
        } else {
            ", some still stopping"
        }
    );
    Ok(Outcome::Success)
}

/// Waits until the database answers, retrying with backoff and saying so; `None` if stopped
/// (SIGINT, SIGTERM) first.
async fn wait_for_database(
    pool: &Pool,
    mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<()> {
    let mut pause = Duration::from_millis(250);
    loop {
        match pool.get().await {
            Ok(_) => return Some(()),
            Err(e) => {
                let e = workflows::Error::from(e);
                eprintln!(
                    "worker: cannot reach the database yet ({e}); retrying in {:.1} s",
                    pause.as_secs_f64()
                );
            }
        }
        tokio::select! {
            () = stop.as_mut() => return None,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// Completes on SIGINT or SIGTERM.
///
/// The handlers are registered when this is called, not when the future is first polled:
/// a signal that arrives while the caller is busy (connecting, claiming) is not lost.
pub(crate) fn stop_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = signal(SignalKind::terminate())
            .and_then(|terminate| Ok((terminate, signal(SignalKind::interrupt())?)));
        async move {
            match handlers {
                Ok((mut terminate, mut interrupt)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Queues a run for the workers.
pub(crate) async fn submit(
    pool: Pool,
    name: &str,
    params: &str,
    key: Option<&str>,
) -> workflows::Result<Outcome> {
    let params = crate::execute::parse_params(params)?;
    let executor = Executor::builder(pool, Registry::from_compiled()?)
        .runtime(crate::samples::runtime())
        .build()?;
    let run = executor.submit(name, params, key).await?;
    outln!("run {} is {}", run.id, run.status);
    Ok(Outcome::Success)
}
