//! `workflows migrate`: the database schema, like the Go service's `cmd/migrate`.

use clap::Subcommand;
use workflows::Pool;
use workflows::db::Migrator;

use crate::Outcome;
use crate::output::outln;

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
                outln!("up to date");
            }
            for version in applied {
                outln!("applied {version}");
            }
        }
        Action::Down { all: false } => match migrator.revert_last().await? {
            Some(version) => outln!("reverted {version}"),
            None => outln!("nothing to revert"),
        },
        Action::Down { all: true } => {
            let reverted = migrator.revert_all().await?;
            if reverted.is_empty() {
                outln!("nothing to revert");
            }
            for version in reverted {
                outln!("reverted {version}");
            }
        }
        Action::Redo => match migrator.redo().await? {
            Some(version) => outln!("redone {version}"),
            None => outln!("nothing to redo"),
        },
        Action::Status => {
            for m in migrator.status().await? {
                let state = if m.applied { "applied" } else { "pending" };
                outln!("{state:<8} {}", m.name);
            }
        }
    }
    Ok(Outcome::Success)
}
