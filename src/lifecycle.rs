//! A run's status changes, each one conditional statement.
//!
//! Every transition names the statuses it may start from in its `WHERE` clause, so the check
//! and the change are one atomic step: of two writers racing to change one run, exactly one
//! wins, and the other gets [`Error::InvalidStatus`] (400) naming the status it found.
//!
//! ```text
//! pending ──claim──▶ running ──complete──▶ completed
//!    │                 │  └──────fail────▶ failed ────┐
//!    └─────cancel──────┴──────cancel─────▶ cancelled ─┴─resume─▶ running
//! ```
//!
//! The transitions into `running` (a worker's claim, a takeover, a resume) also give the run
//! a lease, and a running run is completed or failed only by the executor holding its lease
//! (in the statement that records its last node), so those belong to the
//! [`Executor`](crate::Executor) and the [`Worker`](crate::Worker), and so does creating a
//! run ([`Executor::start`](crate::Executor::start),
//! [`Executor::submit`](crate::Executor::submit)). This module has the changes anyone may
//! make: cancel and delete. Each is one `UPDATE` or `DELETE` of the run's row, which locks
//! it: a node commit in flight finishes first, and its executor's next write is refused.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::atomic_statement::AtomicStatement;
use crate::error::{Error, Result};
use crate::fence::{HELD_RUN, held_run};
use crate::model::{Run, RunId, RunStatus};
use crate::schema::runs;
use crate::sql_functions::clock_timestamp;

use RunStatus::{Cancelled, Completed, Failed, Pending, Running};

/// `pending` or `running` → `cancelled`. A running run's executor sees it at its next write
/// at the latest (the [`Executor`](crate::Executor) also interrupts it at once when it runs
/// in this process).
pub async fn cancel_run(conn: &mut AsyncPgConnection, id: RunId) -> Result<Run> {
    // Locked first, so that `completed_at` is read off the clock once a node commit in
    // flight has committed: the run ends after everything it recorded.
    let cancellable = runs::table
        .find(id)
        .filter(runs::status.eq_any([Pending, Running]))
        .select(runs::id)
        .for_no_key_update();
    let cancel =
        diesel::update(runs::table.filter(runs::id.eq_any(held_run::table.select(held_run::id))))
            .set((
                runs::status.eq(Cancelled),
                runs::completed_at.eq(clock_timestamp().nullable()),
            ))
            .returning(Run::as_returning());
    let run = AtomicStatement::new(cancel)
        .with_named(HELD_RUN, cancellable)
        .get_result(conn)
        .await
        .optional()?;
    accepted(conn, id, "cancel", run).await
}

/// Deletes a finished run with its stages, decisions and checkpoint. A `pending` or
/// `running` run is refused: cancel it first.
pub async fn delete_run(conn: &mut AsyncPgConnection, id: RunId) -> Result<()> {
    let deleted = diesel::delete(
        runs::table
            .find(id)
            .filter(runs::status.eq_any([Completed, Failed, Cancelled])),
    )
    .returning(runs::id)
    .get_result::<RunId>(conn)
    .await
    .optional()?;
    if deleted.is_some() {
        Ok(())
    } else {
        Err(refusal(conn, id, "delete (cancel it first)").await)
    }
}

/// The run the transition returned, or the reason it was refused.
async fn accepted(
    conn: &mut AsyncPgConnection,
    id: RunId,
    action: &'static str,
    run: Option<Run>,
) -> Result<Run> {
    match run {
        Some(run) => Ok(run),
        None => Err(refusal(conn, id, action).await),
    }
}

/// Why a conditional change matched no row: the run does not exist, or is in another status.
pub(crate) async fn refusal(
    conn: &mut AsyncPgConnection,
    id: RunId,
    action: &'static str,
) -> Error {
    let status = runs::table
        .find(id)
        .select(runs::status)
        .first::<RunStatus>(conn)
        .await
        .optional();
    match status {
        Ok(Some(status)) => Error::InvalidStatus {
            run_id: id,
            status,
            action,
        },
        Ok(None) => Error::RunNotFound { id },
        Err(e) => Error::from(e),
    }
}
