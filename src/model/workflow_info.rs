//! A registered workflow, as listed.

use serde::{Deserialize, Serialize};

/// A registered workflow, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct WorkflowInfo {
    /// Its unique name.
    pub name: String,
    /// What it does.
    pub description: String,
}
