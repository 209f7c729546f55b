//! A stage: one attempt at one node of a run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RawJson, RunId, StageStatus};

/// One attempt at one node of a run.
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
    /// The run's step number when the node executed, from 1.
    pub iteration: i32,
    /// Which attempt at the step this is, from 1: a node its retry policy tried again has a
    /// stage per attempt, each failed but the last. (run, node, iteration, attempt) is
    /// unique. Stages the Go service wrote are attempt 1. Left out of the JSON when 1, so
    /// that a stage nothing retried has the Go service's shape exactly.
    #[serde(default = "first_attempt", skip_serializing_if = "is_first_attempt")]
    pub attempt: i32,
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

fn first_attempt() -> i32 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_first_attempt(attempt: &i32) -> bool {
    *attempt == 1
}
