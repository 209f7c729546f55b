//! A run's status changes, each one conditional statement.
//!
//! Every transition names the statuses it may start from in its `WHERE` clause, so the check
//! and the change are one atomic step: of two writers racing to change one run, exactly one
//! wins, and the other gets [`Error::InvalidStatus`] (400) naming the status it found.
//!
//! ```text
//! pending ──start──▶ running ──complete──▶ completed
//!    │                 │  └──────fail────▶ failed ────┐
//!    └─────cancel──────┴──────cancel─────▶ cancelled ─┴─resume─▶ running
//! ```

use chrono::{DateTime, Utc};
use diesel::dsl::{exists, now};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::atomic_statement::AtomicStatement;
use crate::error::{Error, Result};
use crate::model::{Run, RunId, RunStatus, StageStatus};
use crate::params::Params;
use crate::schema::{runs, stages};

use RunStatus::{Cancelled, Completed, Failed, Pending, Running};

/// Creates a `pending` run of `workflow` with `params`.
pub async fn create_run(
    conn: &mut AsyncPgConnection,
    workflow: &str,
    params: &Params,
) -> Result<Run> {
    Ok(diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq(workflow),
            runs::status.eq(Pending),
            runs::params.eq(params.to_value()),
        ))
        .returning(Run::as_returning())
        .get_result(conn)
        .await?)
}

/// `pending` → `running`, stamping `started_at`.
pub async fn start_run(conn: &mut AsyncPgConnection, id: RunId) -> Result<Run> {
    let run = diesel::update(runs::table.find(id).filter(runs::status.eq(Pending)))
        .set((runs::status.eq(Running), runs::started_at.eq(now)))
        .returning(Run::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    accepted(conn, id, "start", run).await
}

/// `running` → `completed`, with its result.
pub async fn complete_run(conn: &mut AsyncPgConnection, id: RunId, result: &Value) -> Result<Run> {
    let run = diesel::update(runs::table.find(id).filter(runs::status.eq(Running)))
        .set((
            runs::status.eq(Completed),
            runs::result.eq(result),
            runs::completed_at.eq(now),
        ))
        .returning(Run::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    accepted(conn, id, "complete", run).await
}

/// `running` → `failed`, with the reason.
pub async fn fail_run(conn: &mut AsyncPgConnection, id: RunId, message: &str) -> Result<Run> {
    let run = diesel::update(runs::table.find(id).filter(runs::status.eq(Running)))
        .set((
            runs::status.eq(Failed),
            runs::error_message.eq(message),
            runs::completed_at.eq(now),
        ))
        .returning(Run::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    accepted(conn, id, "fail", run).await
}

/// `pending` or `running` → `cancelled`. A running run's executor sees it at its next write
/// at the latest (the [`Executor`](crate::Executor) also interrupts it at once when it runs
/// in this process).
pub async fn cancel_run(conn: &mut AsyncPgConnection, id: RunId) -> Result<Run> {
    let run = diesel::update(
        runs::table
            .find(id)
            .filter(runs::status.eq_any([Pending, Running])),
    )
    .set((runs::status.eq(Cancelled), runs::completed_at.eq(now)))
    .returning(Run::as_returning())
    .get_result(conn)
    .await
    .optional()?;
    accepted(conn, id, "cancel", run).await
}

/// `failed` or `cancelled` → `running` again, clearing the error and end time. In the same
/// statement, stages the interrupted attempt left `started` are marked `failed`, so the
/// record says what happened to them.
pub async fn resume_run(conn: &mut AsyncPgConnection, id: RunId) -> Result<Run> {
    let resumable = [Failed, Cancelled];
    let close_interrupted_stages = diesel::update(
        stages::table
            .filter(stages::run_id.eq(id))
            .filter(stages::status.eq(StageStatus::Started))
            .filter(exists(
                runs::table.find(id).filter(runs::status.eq_any(resumable)),
            )),
    )
    .set((
        stages::status.eq(StageStatus::Failed),
        stages::error_message.eq(INTERRUPTED),
    ));
    let reopen = diesel::update(runs::table.find(id).filter(runs::status.eq_any(resumable)))
        .set((
            runs::status.eq(Running),
            runs::error_message.eq(None::<String>),
            runs::completed_at.eq(None::<DateTime<Utc>>),
        ))
        .returning(Run::as_returning());
    let run = AtomicStatement::new(reopen)
        .with(close_interrupted_stages)
        .get_result(conn)
        .await
        .optional()?;
    accepted(conn, id, "resume", run).await
}

/// What a stage left `started` by a stopped run is marked with when the run resumes.
pub(crate) const INTERRUPTED: &str = "interrupted: the run stopped while this node was executing";

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
        Err(e) => Error::Database(e),
    }
}
