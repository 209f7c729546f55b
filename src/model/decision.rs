//! A decision: which node followed which, and why.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RunId;

/// One edge transition of a run: which node followed which, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Decision {
    /// The decision's id.
    pub id: Uuid,
    /// The run it belongs to.
    pub run_id: RunId,
    /// The node that completed.
    pub from_node: String,
    /// The node chosen next; absent when the run ended at `from_node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_node: Option<String>,
    /// The name of the predicate that chose the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate_name: Option<String>,
    /// What the predicate returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate_result: Option<bool>,
    /// Why this edge was taken, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the transition happened.
    pub created_at: DateTime<Utc>,
}
