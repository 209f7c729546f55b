//! A stage: one execution of one node of a run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RawJson, RunId, StageStatus};

/// One execution of one node of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Stage {
    /// The stage's id.
    pub id: Uuid,
    /// The run it belongs to.
    pub run_id: RunId,
    /// The node executed.
    pub node_name: String,
    /// The run's step number when the node executed, from 1; unique per (run, node).
    pub iteration: i32,
    /// Its outcome.
    pub status: StageStatus,
    /// The whole state the node received, when stored: for the first stage of each attempt
    /// at the run, every stage under `SnapshotPolicy::Full`, and every stage the Go service
    /// wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_snapshot: Option<RawJson>,
    /// The whole state the node returned, when stored: under `SnapshotPolicy::Full` and
    /// `Every`, and by the Go service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_snapshot: Option<RawJson>,
    /// What the node changed in the state, a [`StateUpdate`](crate::StateUpdate) (set,
    /// append, merge, remove); absent on stages the Go service wrote, which hold whole
    /// snapshots instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_update: Option<RawJson>,
    /// How long the node took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i32>,
    /// The node's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When the node started.
    pub created_at: DateTime<Utc>,
}
