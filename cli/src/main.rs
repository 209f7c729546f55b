//! `workflows`: the command line of the workflows library.
//!
//! ```text
//! workflows list                         the registered workflows
//! workflows migrate up|down|redo|status  the database schema
//! ```
//!
//! The sample workflows live in this binary, not in the library, so an application's
//! registry never contains them.

mod migrate;
mod samples;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use workflows::{DbConfig, Registry};

/// Typed, durable persistence for state-graph workflows on PostgreSQL.
#[derive(Parser)]
#[command(name = "workflows", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the registered workflows.
    List,
    /// Apply, revert or inspect the database migrations.
    Migrate {
        #[command(subcommand)]
        action: migrate::Action,
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUST_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> workflows::Result<()> {
    match cli.command {
        Command::List => {
            let registry = Registry::from_compiled()?;
            let rows = registry
                .list()
                .into_iter()
                .map(|w| vec![w.name, w.description])
                .collect();
            print!("{}", table::render(&["NAME", "DESCRIPTION"], rows));
            Ok(())
        }
        Command::Migrate {
            action,
            database_url,
        } => {
            let config = match database_url {
                Some(url) => DbConfig::new(url),
                None => workflows::Config::from_env()?.db,
            };
            migrate::run(action, &config).await
        }
    }
}
