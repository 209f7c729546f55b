//! A run's state at one of its steps, as the read API rebuilds it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::RunId;

/// The state of a run after one of its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct StateAt {
    /// The run.
    pub run_id: RunId,
    /// The step: the state is the one after the stage of this step number (0: the state the
    /// run started from).
    pub step: u32,
    /// The state's data.
    #[cfg_attr(feature = "http", schema(value_type = Object))]
    pub state: Value,
}
