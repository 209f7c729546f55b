//! An interrupt: a question a node asked, and its answer once someone gave it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{RawJson, RunId};

/// A question a node of a run asked ([`NodeContext::interrupt`](crate::NodeContext::interrupt)),
/// and its answer. While it is unanswered the run is `waiting`, holding no worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Interrupt {
    /// The interrupt's id.
    pub id: Uuid,
    /// The run that asked.
    pub run_id: RunId,
    /// What the answer is for, as the node named it: the key to answer.
    pub key: String,
    /// The node that asked.
    pub node_name: String,
    /// Its step.
    pub iteration: i32,
    /// The question: what a person needs to answer it.
    pub payload: RawJson,
    /// The answer, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<RawJson>,
    /// When it was asked.
    pub asked_at: DateTime<Utc>,
    /// When it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
    /// The JSON Schema the answer must fit, if the node gave one
    /// ([`NodeContext::interrupt_for`](crate::NodeContext::interrupt_for)): an answer that
    /// does not fit is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_schema: Option<RawJson>,
}
