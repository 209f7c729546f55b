//! The rows of `runs`, `stages` and `decisions` as Diesel reads them, and the model records
//! they become.
//!
//! Each row lists the columns the record shows (by name: Diesel's `Selectable` maps each
//! field to the column of that name, and checks its type against the schema at compile
//! time); a record gaining a field the row lacks does not compile.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::{Queryable, Selectable};

use super::schema::{decisions, interrupts, runs, stages};
use crate::model::{Decision, Interrupt, RawJson, Run, RunId, RunStatus, Stage, StageStatus};

/// A row struct for `$model`, read from `$table`, and its conversion into the record.
macro_rules! row_of {
    ($row:ident => $model:ident from $table:ident { $($field:ident: $ty:ty,)+ }) => {
        #[doc = concat!("A row of `", stringify!($table), "`, as read into a [`", stringify!($model), "`].")]
        #[derive(Debug, Queryable, Selectable)]
        #[diesel(table_name = $table, check_for_backend(Pg))]
        pub(crate) struct $row {
            $(pub(crate) $field: $ty,)+
        }

        impl From<$row> for $model {
            fn from(row: $row) -> Self {
                $model { $($field: row.$field,)+ }
            }
        }
    };
}

row_of!(RunRow => Run from runs {
    id: RunId,
    workflow_name: String,
    status: RunStatus,
    params: Option<RawJson>,
    result: Option<RawJson>,
    error_message: Option<String>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    wake_at: Option<DateTime<Utc>>,
});

row_of!(StageRow => Stage from stages {
    id: uuid::Uuid,
    run_id: RunId,
    node_name: String,
    iteration: i32,
    attempt: i32,
    status: StageStatus,
    input_snapshot: Option<RawJson>,
    output_snapshot: Option<RawJson>,
    state_update: Option<RawJson>,
    duration_ms: Option<i32>,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
});

row_of!(DecisionRow => Decision from decisions {
    id: uuid::Uuid,
    run_id: RunId,
    from_node: String,
    to_node: Option<String>,
    predicate_name: Option<String>,
    predicate_result: Option<bool>,
    reason: Option<String>,
    created_at: DateTime<Utc>,
});

row_of!(InterruptRow => Interrupt from interrupts {
    id: uuid::Uuid,
    run_id: RunId,
    key: String,
    node_name: String,
    iteration: i32,
    payload: RawJson,
    answer: Option<RawJson>,
    asked_at: DateTime<Utc>,
    answered_at: Option<DateTime<Utc>>,
    answer_schema: Option<RawJson>,
});
