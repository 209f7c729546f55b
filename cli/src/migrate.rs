//! `workflows migrate`: the database schema, like the Go service's `cmd/migrate`.

use clap::Subcommand;
use workflows::Pool;
use workflows::db::Migrator;

use crate::Outcome;

/// What to do with the migrations.
#[derive(Subcommand)]
pub(crate) enum Action {
    /// Apply every pending migration.
    Up,
    /// Revert the most recent migration (with --all, every one of this library's).
    Down {
        /// Revert all of them: the library's tables are dropped, other tables are left alone.
        #[arg(long)]
        all: bool,
    },
    /// Revert the most recent migration and apply it again.
    Redo,
    /// Show each migration and whether it is applied.
    Status,
}

pub(crate) async fn run(action: Action, pool: Pool) -> workflows::Result<Outcome> {
    let mut migrator = Migrator::new(pool.get().await?);
    match action {
        Action::Up => {
            let applied = migrator.run_pending().await?;
            if applied.is_empty() {
                println!("up to date");
            }
            for version in applied {
                println!("applied {version}");
            }
        }
        Action::Down { all: false } => match migrator.revert_last().await? {
            Some(version) => println!("reverted {version}"),
            None => println!("nothing to revert"),
        },
        Action::Down { all: true } => {
            let reverted = migrator.revert_all().await?;
            if reverted.is_empty() {
                println!("nothing to revert");
            }
            for version in reverted {
                println!("reverted {version}");
            }
        }
        Action::Redo => match migrator.redo().await? {
            Some(version) => println!("redone {version}"),
            None => println!("nothing to redo"),
        },
        Action::Status => {
            for m in migrator.status().await? {
                let state = if m.applied { "applied" } else { "pending" };
                println!("{state:<8} {}", m.name);
            }
        }
    }
    Ok(Outcome::Success)
}
