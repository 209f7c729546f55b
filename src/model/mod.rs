//! The records a workflow leaves behind: runs, stages, decisions and interrupts, their ids
//! and statuses.
//! Plain data: how they are stored is the [`store`](crate::store)'s business.
//!
//! Field names and JSON shape are those of the Go original's `run.go`: an absent optional
//! field is omitted from JSON (not `null`), statuses are lower-case strings and timestamps are
//! RFC 3339.

mod answer_schema;
mod decision;
mod interrupt;
mod invalid;
mod json_kind;
mod json_text;
mod raw_json;
mod repair_plan;
mod run;
mod run_id;
mod stage;
mod state_at;
mod state_update;
mod status;
mod workflow_info;

pub(crate) use answer_schema::AnswerSchema;
pub use decision::Decision;
pub use interrupt::Interrupt;
pub use invalid::InvalidValue;
pub(crate) use json_kind::json_kind;
pub(crate) use json_text::{JsonText, write_object, write_timestamp};
pub use raw_json::RawJson;
pub use repair_plan::{Defect, DefectKind, RepairPlan, Repaired};
pub use run::Run;
pub use run_id::RunId;
pub use stage::Stage;
pub use state_at::StateAt;
pub use state_update::StateUpdate;
pub use status::{RunStatus, StageStatus};
pub use workflow_info::WorkflowInfo;
