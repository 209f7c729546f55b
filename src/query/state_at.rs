//! The state of a run at any step, rebuilt from what its stages store: the whole state an
//! attempt started from (or a whole snapshot) and the updates of the nodes after it.

use diesel::dsl::{exists, max};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::model::{RawJson, RunId, StageStatus, StateAt, StateUpdate};
use crate::store::schema::{runs, stages};

/// What a stage holds of the state.
type StageState = (
    i32,
    StageStatus,
    Option<RawJson>,
    Option<RawJson>,
    Option<RawJson>,
);

/// The state's data of run `run_id` after step `step` (its stages up to that step number
/// applied in order; 0 is the state the run started from), or after its last step with
/// `None`. A step whose node failed changed nothing, so its state is the one before it.
///
/// It is rebuilt from the last whole state at or before `step` (the first stage of each
/// attempt stores the state it started from; stages under `SnapshotPolicy::Full` or
/// `Every` store whole states too, as did the Go service) and the updates after it, so it
/// reads only the stages it needs.
///
/// Errors: [`Error::RunNotFound`] (404) for an unknown run; [`Error::StepNotFound`] (404)
/// for a step past the run's last, or a run with no stage yet.
///
/// ```
/// use workflows::repository;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> workflows::Result<()> {
/// # let pool = workflows::testing::pool().await?;
/// # let mut conn = pool.get().await?;
/// # let run_id: workflows::RunId = "5a9b8c1e-6a3e-4f7b-9f61-2d4c2b8e7a10".parse()?;
/// let err = repository::state_at(&mut conn, run_id, Some(3)).await.unwrap_err();
/// assert_eq!(err.to_string(), format!("run {run_id} not found"));
/// # Ok(()) }
/// ```
pub async fn state_at(
    conn: &mut AsyncPgConnection,
    run_id: RunId,
    step: Option<u32>,
) -> Result<StateAt> {
    let of_run = stages::table.filter(stages::run_id.eq(run_id));
    let last: Option<i32> = of_run.select(max(stages::iteration)).first(conn).await?;
    let Some(last) = last else {
        let found: bool = diesel::select(exists(runs::table.find(run_id)))
            .get_result(conn)
            .await?;
        if !found {
            return Err(Error::RunNotFound { id: run_id });
        }
        return Err(Error::StepNotFound {
            run_id,
            reason: "has no stage yet, so no state is recorded".to_owned(),
        });
    };
    let step = step.map_or(last, |s| i32::try_from(s).unwrap_or(i32::MAX));
    if step > last {
        return Err(Error::StepNotFound {
            run_id,
            reason: format!("has no step {step} yet: its last step is {last}"),
        });
    }
    // The last stage at or before `step` holding a whole state: where the replay starts.
    let whole = stages::input_snapshot
        .is_not_null()
        .or(stages::output_snapshot
            .is_not_null()
            .and(stages::status.eq(StageStatus::Completed)));
    let anchor: Option<i32> = of_run
        .filter(stages::iteration.le(step.max(1)))
        .filter(whole)
        .select(max(stages::iteration))
        .first(conn)
        .await?;
    let rows: Vec<StageState> = of_run
        .filter(stages::iteration.ge(anchor.unwrap_or(0)))
        .filter(stages::iteration.le(step.max(1)))
        .order_by(stages::iteration.asc())
        .select((
            stages::iteration,
            stages::status,
            stages::input_snapshot,
            stages::output_snapshot,
            stages::state_update,
        ))
        .load(conn)
        .await?;
    Ok(StateAt {
        run_id,
        step: u32::try_from(step).unwrap_or(0),
        state: replay(run_id, step, rows)?,
    })
}

/// The state after `step`, from `rows` (ordered by step, starting at one with a whole state).
fn replay(run_id: RunId, step: i32, rows: Vec<StageState>) -> Result<Value> {
    let unreadable = |what: &str, at: i32, e: &dyn std::fmt::Display| Error::Value {
        container: "stage",
        key: format!("{run_id} step {at}"),
        reason: format!("its {what} cannot be read: {e}"),
    };
    let mut state: Option<Map<String, Value>> = None;
    for (at, status, input, output, update) in rows {
        if let Some(input) = input {
            state = Some(object(input).map_err(|e| unreadable("input_snapshot", at, &e))?);
        }
        if at > step || status != StageStatus::Completed {
            continue;
        }
        // A whole snapshot needs no replay; otherwise the update applies to the state so far.
        match (output, update) {
            (Some(output), _) => {
                state = Some(object(output).map_err(|e| unreadable("output_snapshot", at, &e))?);
            }
            (None, Some(update)) => {
                let update: StateUpdate = update
                    .deserialize()
                    .map_err(|e| unreadable("state_update", at, &e))?;
                let Some(state) = state.as_mut() else {
                    return Err(unreadable(
                        "state_update",
                        at,
                        &"no whole state precedes it",
                    ));
                };
                update
                    .apply_to(state)
                    .map_err(|e| unreadable("state_update", at, &e))?;
            }
            (None, None) => {
                return Err(unreadable(
                    "state",
                    at,
                    &"it completed but holds neither an update nor a snapshot",
                ));
            }
        }
    }
    state.map(Value::Object).ok_or_else(|| Error::Value {
        container: "stage",
        key: format!("{run_id} step {step}"),
        reason: "no stage at or before it holds a whole state to start from".to_owned(),
    })
}

/// A stored snapshot as the object it must be.
fn object(json: RawJson) -> std::result::Result<Map<String, Value>, String> {
    match json.to_value().map_err(|e| e.to_string())? {
        Value::Object(map) => Ok(map),
        other => Err(format!("it is not a JSON object: {other}")),
    }
}
