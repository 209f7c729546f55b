//! `workflows`: the command line of the workflows library.
//!
//! ```text
//! workflows list                         the registered workflows
//! workflows run NAME [--params JSON]     run one, showing each step as it happens
//! workflows runs [--status ...]          recorded runs, filtered, sorted and paged
//! workflows runs --cursor [CURSOR]       the same, paged by cursor (fast at any depth)
//! workflows show RUN_ID                  one run: its stages and decisions
//! workflows cancel RUN_ID                cancel a pending or running run
//! workflows resume RUN_ID                continue a failed or cancelled run
//! workflows answer RUN_ID KEY --value J  answer a waiting run's question
//! workflows send RUN_ID TOPIC --value J  send a run a message
//! workflows submit NAME [--key KEY]      queue a run for the workers
//! workflows worker [--concurrency N]     execute queued runs until interrupted
//! workflows serve [--addr HOST:PORT]     the HTTP API, its docs and the run inspector
//! workflows migrate up|down|redo|status  the database schema
//! ```
//!
//! The sample workflows live in this binary, not in the library, so an application's
//! registry never contains them.

mod execute;
mod inspect;
mod migrate;
mod output;
mod samples;
mod serve;
mod server;
mod table;
mod worker;

use std::process::ExitCode;

use crate::output::out;
use clap::{Parser, Subcommand};
use workflows::{Config, Registry, RunId};

/// Typed, durable persistence for state-graph workflows on PostgreSQL.
#[derive(Parser)]
#[command(name = "workflows", version, about)]
struct Cli {
    /// PostgreSQL URL (default: the DATABASE_URL environment variable).
    #[arg(long, global = true, hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the registered workflows.
    List,
    /// Run a workflow, showing each step as it happens (Ctrl-C cancels the run).
    Run {
        /// The workflow's name (see `workflows list`).
        name: String,
        /// Its params, a JSON object.
        #[arg(long, default_value = "{}")]
        params: String,
    },
    /// List recorded runs.
    Runs(inspect::RunsArgs),
    /// Show a run with its stages and decisions.
    Show {
        /// The run's id.
        run_id: String,
    },
    /// Cancel a pending or running run, wherever it executes.
    Cancel {
        /// The run's id.
        run_id: String,
    },
    /// Answer the question a waiting run asked; a worker then continues it.
    Answer {
        /// The run's id.
        run_id: String,
        /// The question's key, as `show` lists it.
        key: String,
        /// The answer, as JSON (a string is `'"yes"'`).
        #[arg(long)]
        value: String,
    },
    /// Send a message on a topic to a run that has not ended.
    Send {
        /// The run's id.
        run_id: String,
        /// The topic.
        topic: String,
        /// The message, as JSON.
        #[arg(long)]
        value: String,
    },
    /// Resume a failed or cancelled run after its last checkpoint.
    Resume {
        /// The run's id.
        run_id: String,
    },
    /// Queue a run for the workers and print its id.
    Submit {
        /// The workflow's name.
        name: String,
        /// Its params, a JSON object.
        #[arg(long, default_value = "{}")]
        params: String,
        /// An idempotency key: submitting again with it gives the same run.
        #[arg(long)]
        key: Option<String>,
    },
    /// Execute queued runs, and take over those of crashed workers, until SIGINT or SIGTERM.
    Worker(worker::WorkerArgs),
    /// Serve the HTTP API, its OpenAPI contract and docs, and the run inspector page.
    Serve(serve::ServeArgs),
    /// Apply, revert or inspect the database migrations.
    Migrate {
        #[command(subcommand)]
        action: migrate::Action,
    },
}

/// What a command reports besides errors: whether the run it showed ended well.
pub(crate) enum Outcome {
    Success,
    RunDidNotComplete,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUST_LOG"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::RunDidNotComplete) => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> workflows::Result<Outcome> {
    if let Command::List = cli.command {
        let registry = Registry::from_compiled()?;
        let rows = registry
            .list()
            .into_iter()
            .map(|w| vec![w.name, w.description])
            .collect();
        out!("{}", table::render(&["NAME", "DESCRIPTION"], rows));
        return Ok(Outcome::Success);
    }
    let config = Config::from_lookup(|name| match (name, &cli.database_url) {
        ("DATABASE_URL", Some(url)) => Some(url.clone()),
        _ => std::env::var(name).ok(),
    })?;
    // How `serve` would be exposed is checked before the database is reached.
    let tokens = match &cli.command {
        Command::Serve(args) => serve::access(args)?,
        _ => None,
    };
    let pool = match &cli.command {
        // A worker waits for the database, as a running worker rides out an outage.
        Command::Worker(_) => config.db.build_pool()?,
        _ => config.db.connect().await?,
    };
    match cli.command {
        Command::List => unreachable!("handled above"),
        Command::Run { name, params } => execute::run(pool, &name, &params).await,
        Command::Runs(args) => inspect::runs(pool, &config.page, args).await,
        Command::Show { run_id } => inspect::show(pool, run_id.parse::<RunId>()?).await,
        Command::Cancel { run_id } => execute::cancel(pool, run_id.parse()?).await,
        Command::Answer { run_id, key, value } => {
            execute::answer(pool, run_id.parse()?, &key, &value).await
        }
        Command::Send {
            run_id,
            topic,
            value,
        } => execute::send(pool, run_id.parse()?, &topic, &value).await,
        Command::Resume { run_id } => execute::resume(pool, run_id.parse()?).await,
        Command::Submit { name, params, key } => {
            worker::submit(pool, &name, &params, key.as_deref()).await
        }
        Command::Worker(args) => worker::work(pool, args).await,
        Command::Serve(args) => serve::serve(pool, config.page, args, tokens).await,
        Command::Migrate { action } => migrate::run(action, pool).await,
    }
}
