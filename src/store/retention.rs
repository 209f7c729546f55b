//! Retention: removing what finished runs leave behind, in bounded batches.
//!
//! Each batch is one statement: runs are deleted with their stages, decisions and checkpoint
//! by the foreign keys' `ON DELETE CASCADE`, so an interrupted prune leaves no orphans.
//!
//! A `failed` or `cancelled` run resumes from its checkpoint: without it, a resume would run
//! every node again from the entry point (and [`Executor::resume`](crate::Executor::resume)
//! refuses to). So checkpoints are pruned from `completed` runs only, unless
//! [`Retention::resumable_checkpoints_after`] says otherwise.

use std::time::Duration;

use diesel::pg::data_types::PgInterval;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::Result;
use crate::model::RunStatus;
use crate::store::schema::{checkpoints, runs};
use crate::store::sql_functions::db_now;

const FINISHED: [RunStatus; 3] = [
    RunStatus::Completed,
    RunStatus::Failed,
    RunStatus::Cancelled,
];

/// Runs that may be resumed: their checkpoints are what a resume continues from.
const RESUMABLE: [RunStatus; 2] = [RunStatus::Failed, RunStatus::Cancelled];

/// What to prune, and when: [`Retention::default`] (keep everything) and its setters.
///
/// ```
/// use std::time::Duration;
/// let week = Duration::from_secs(7 * 86_400);
/// let retention = workflows::Retention::default().checkpoints_after(week).runs_after(4 * week);
/// assert!(retention.is_enabled());
/// assert_eq!(retention.resumable_checkpoints_after, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Delete the checkpoints of completed runs this long after they were last written
    /// (`None`: keep them).
    pub checkpoints_after: Option<Duration>,
    /// Delete the checkpoints of failed and cancelled runs this long after they were last
    /// written (`None`, the default: keep them). Such a run can no longer be resumed.
    pub resumable_checkpoints_after: Option<Duration>,
    /// Delete finished runs, with their stages and decisions, this long after they ended
    /// (`None`: keep them).
    pub runs_after: Option<Duration>,
    /// Rows per statement.
    pub batch_size: i64,
    /// How often a worker prunes.
    pub every: Duration,
}

impl Default for Retention {
    /// Keep everything.
    fn default() -> Self {
        Retention {
            checkpoints_after: None,
            resumable_checkpoints_after: None,
            runs_after: None,
            batch_size: 500,
            every: Duration::from_secs(60),
        }
    }
}

impl Retention {
    /// Delete the checkpoints of completed runs this long after they were last written.
    pub fn checkpoints_after(mut self, age: Duration) -> Self {
        self.checkpoints_after = Some(age);
        self
    }

    /// Delete the checkpoints of failed and cancelled runs this long after they were last
    /// written: those runs can no longer be resumed.
    pub fn resumable_checkpoints_after(mut self, age: Duration) -> Self {
        self.resumable_checkpoints_after = Some(age);
        self
    }

    /// Delete finished runs this long after they ended.
    pub fn runs_after(mut self, age: Duration) -> Self {
        self.runs_after = Some(age);
        self
    }

    /// Rows per statement.
    pub fn batch_size(mut self, rows: i64) -> Self {
        self.batch_size = rows;
        self
    }

    /// How often a worker prunes.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Whether there is anything to prune.
    pub fn is_enabled(&self) -> bool {
        self.checkpoints_after.is_some()
            || self.resumable_checkpoints_after.is_some()
            || self.runs_after.is_some()
    }
}

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Checkpoints deleted (besides those deleted with their runs).
    pub checkpoints: usize,
    /// Runs deleted, each with its stages, decisions and checkpoint.
    pub runs: usize,
}

fn age(d: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Prunes in batches until nothing more is due.
pub async fn prune(conn: &mut AsyncPgConnection, retention: &Retention) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    loop {
        let batch = prune_batch(conn, retention).await?;
        report.checkpoints += batch.checkpoints;
        report.runs += batch.runs;
        let full = |n: usize| i64::try_from(n).unwrap_or(i64::MAX) >= retention.batch_size;
        if !full(batch.checkpoints) && !full(batch.runs) {
            return Ok(report);
        }
    }
}

/// One batch of each kind: at most `batch_size` checkpoints and `batch_size` runs.
pub async fn prune_batch(
    conn: &mut AsyncPgConnection,
    retention: &Retention,
) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    let checkpoint_rules = [
        (retention.checkpoints_after, &[RunStatus::Completed][..]),
        (retention.resumable_checkpoints_after, &RESUMABLE[..]),
    ];
    for (after, statuses) in checkpoint_rules {
        let Some(after) = after else { continue };
        // The runs are locked (as every write of a run's rows locks its run: see `fence`),
        // so a run resumed meanwhile is re-checked, found running, and keeps its checkpoint.
        let old = diesel::alias!(checkpoints as old);
        let due = old
            .inner_join(runs::table.on(runs::id.eq(old.field(checkpoints::run_id))))
            .select(old.field(checkpoints::run_id))
            .filter(old.field(checkpoints::updated_at).lt(db_now() - age(after)))
            .filter(runs::status.eq_any(statuses))
            .limit(retention.batch_size)
            .for_no_key_update()
            .skip_locked();
        report.checkpoints +=
            diesel::delete(checkpoints::table.filter(checkpoints::run_id.eq_any(due)))
                .execute(conn)
                .await?;
    }
    if let Some(after) = retention.runs_after {
        let old = diesel::alias!(runs as old);
        let due = old
            .select(old.field(runs::id))
            .filter(old.field(runs::status).eq_any(FINISHED))
            .filter(
                old.field(runs::completed_at)
                    .lt((db_now() - age(after)).nullable()),
            )
            .order_by(old.field(runs::completed_at).asc())
            .limit(retention.batch_size)
            .for_update()
            .skip_locked();
        report.runs = diesel::delete(runs::table.filter(runs::id.eq_any(due)))
            .execute(conn)
            .await?;
    }
    Ok(report)
}
