//! `workflows migrate`: the database schema, like the Go service's `cmd/migrate`, and the
//! way in from a database the Go service made (adoption and repair).

use clap::Subcommand;
use workflows::Pool;
use workflows::db::Migrator;

use crate::Outcome;
use crate::output::outln;

/// What to do with the migrations.
#[derive(Subcommand)]
pub(crate) enum Action {
    /// Apply every pending migration, adopting the Go service's tables if they are there.
    Up,
    /// Revert the most recent migration (with --all, every one of this library's).
    Down {
        /// Revert all of them: the library's tables are dropped, other tables are left alone.
        #[arg(long)]
        all: bool,
        /// Drop adopted tables too (the Go service's, with its data) when reverting the
        /// first migration; without it they are kept and only forgotten.
        #[arg(long)]
        drop_adopted: bool,
    },
    /// Revert the most recent migration and apply it again.
    Redo,
    /// Show each migration and whether it is applied (or adopted).
    Status,
    /// Show what the integrity migration would refuse in the Go service's rows, and how
    /// each would be repaired; with --apply, repair them (in one transaction).
    Repair {
        /// Carry the repairs out (every changed or removed row is copied to
        /// workflows_repair_archive first).
        #[arg(long)]
        apply: bool,
    },
}

pub(crate) async fn run(action: Action, pool: Pool) -> workflows::Result<Outcome> {
    let mut migrator = Migrator::new(pool.get().await?);
    match action {
        Action::Up => {
            if migrator.adopt().await? {
                outln!(
                    "adopted {} (the Go service's tables: kept as they are, with their rows)",
                    first_version(&mut migrator).await?
                );
            }
            let applied = migrator.run_pending().await?;
            if applied.is_empty() {
                outln!("up to date");
            }
            for version in applied {
                outln!("applied {version}");
            }
        }
        Action::Down { all, drop_adopted } => {
            let adopted = adopted_version(&mut migrator).await?;
            let mut migrator = migrator.drop_adopted(drop_adopted);
            let reverted = if all {
                migrator.revert_all().await?
            } else {
                migrator.revert_last().await?.into_iter().collect()
            };
            if reverted.is_empty() {
                outln!("nothing to revert");
            }
            for version in reverted {
                if Some(&version) == adopted.as_ref() && !drop_adopted {
                    outln!(
                        "released {version} (its tables were adopted from the Go service and are kept; --drop-adopted drops them)"
                    );
                } else {
                    outln!("reverted {version}");
                }
            }
        }
        Action::Repair { apply: false } => {
            let plan = migrator.repair_plan().await?;
            outln!("{plan}");
            if !plan.is_empty() {
                outln!("run `workflows migrate repair --apply` to carry this out");
            }
        }
        Action::Repair { apply: true } => {
            let repaired = migrator.repair().await?;
            if repaired.is_empty() {
                outln!("nothing to repair");
            }
            for r in &repaired {
                outln!("repaired {} rows: {}", r.rows, r.kind);
            }
            if !repaired.is_empty() {
                outln!(
                    "every row changed or removed is in workflows_repair_archive; run `workflows migrate up` next"
                );
            }
        }
        Action::Redo => match migrator.redo().await? {
            Some(version) => outln!("redone {version}"),
            None => outln!("nothing to redo"),
        },
        Action::Status => {
            for m in migrator.status().await? {
                let state = match (m.applied, m.adopted) {
                    (true, true) => "adopted",
                    (true, false) => "applied",
                    (false, _) => "pending",
                };
                outln!("{state:<8} {}", m.name);
            }
        }
    }
    Ok(Outcome::Success)
}

/// The first migration's version: the one adoption records.
async fn first_version(
    migrator: &mut Migrator<workflows::PooledConnection>,
) -> workflows::Result<String> {
    Ok(migrator
        .status()
        .await?
        .into_iter()
        .next()
        .map(|m| m.version)
        .unwrap_or_default())
}

/// The version of the adopted migration, if one is.
async fn adopted_version(
    migrator: &mut Migrator<workflows::PooledConnection>,
) -> workflows::Result<Option<String>> {
    Ok(migrator
        .status()
        .await?
        .into_iter()
        .find(|m| m.adopted)
        .map(|m| m.version))
}
