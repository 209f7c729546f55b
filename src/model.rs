//! The records a workflow leaves behind: runs, stages and decisions, their ids and statuses.
//!
//! Field names and JSON shape are those of the Go original's `run.go`: an absent optional
//! field is omitted from JSON (not `null`), statuses are lower-case strings and timestamps are
//! RFC 3339.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types;
use diesel::{Identifiable, Queryable, Selectable};
use serde::{Deserialize, Serialize};
use std::io::Write;
use uuid::Uuid;

use crate::error::Error;
use crate::raw_json::RawJson;
use crate::schema::{decisions, runs, stages};

/// The id of a run: a UUID, chosen by the database when the run is created.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    AsExpression,
    FromSqlRow,
)]
#[diesel(sql_type = sql_types::Uuid)]
#[serde(transparent)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct RunId(Uuid);

impl RunId {
    /// Wraps a UUID.
    pub const fn from_uuid(id: Uuid) -> Self {
        RunId(id)
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a run id as given in a URL or on a command line.
///
/// ```
/// let id: workflows::RunId = "6f5c4286-cbed-4c59-8f5c-4286cbed9c59".parse().unwrap();
/// let err = "42".parse::<workflows::RunId>().unwrap_err();
/// assert_eq!(err.to_string(), r#"invalid run id "42": not a UUID"#);
/// ```
impl FromStr for RunId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Uuid::parse_str(s.trim())
            .map(RunId)
            .map_err(|_| Error::invalid_input("run id", s, "not a UUID"))
    }
}

impl From<Uuid> for RunId {
    fn from(id: Uuid) -> Self {
        RunId(id)
    }
}

impl ToSql<sql_types::Uuid, Pg> for RunId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <Uuid as ToSql<sql_types::Uuid, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<sql_types::Uuid, Pg> for RunId {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <Uuid as FromSql<sql_types::Uuid, Pg>>::from_sql(bytes).map(RunId)
    }
}

/// Declares a status enum stored as TEXT and serialised as its lower-case name.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
        )]
        #[diesel(sql_type = sql_types::Text)]
        #[serde(rename_all = "lowercase")]
        #[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lower-case name stored in the database and used in JSON.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(Error::invalid_input(
                        $what,
                        s,
                        format_args!(
                            "expected one of {}",
                            Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    )),
                }
            }
        }

        impl ToSql<sql_types::Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                out.write_all(self.as_str().as_bytes())?;
                Ok(IsNull::No)
            }
        }

        impl FromSql<sql_types::Text, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = std::str::from_utf8(bytes.as_bytes())?;
                text.parse().map_err(|e: Error| e.to_string().into())
            }
        }
    };
}

text_enum! {
    /// Where a run is in its lifecycle.
    RunStatus, "status" {
        /// Created, not started yet.
        Pending => "pending",
        /// Executing.
        Running => "running",
        /// Reached an exit point.
        Completed => "completed",
        /// Stopped by an error; may be resumed.
        Failed => "failed",
        /// Stopped on request; may be resumed.
        Cancelled => "cancelled",
    }
}

impl RunStatus {
    /// Whether the run has stopped (completed, failed or cancelled).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

text_enum! {
    /// The outcome of one node execution.
    StageStatus, "stage status" {
        /// The node is executing.
        Started => "started",
        /// The node returned a new state.
        Completed => "completed",
        /// The node returned an error.
        Failed => "failed",
    }
}

/// One execution of a workflow.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize, Deserialize)]
#[diesel(table_name = runs, check_for_backend(Pg))]
#[non_exhaustive]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct Run {
    /// The run's id.
    pub id: RunId,
    /// The registered workflow it executes.
    pub workflow_name: String,
    /// Where it is in its lifecycle.
    pub status: RunStatus,
    /// The params it was started with, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<RawJson>,
    /// What it produced, once completed, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RawJson>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When it started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its row last changed.
    pub updated_at: DateTime<Utc>,
}

/// One execution of one node of a run.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize, Deserialize)]
#[diesel(table_name = stages, check_for_backend(Pg))]
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
    /// The state the node received, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_snapshot: Option<RawJson>,
    /// The state the node returned, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_snapshot: Option<RawJson>,
    /// How long the node took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i32>,
    /// The node's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When the node started.
    pub created_at: DateTime<Utc>,
}

/// One edge transition of a run: which node followed which, and why.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Serialize, Deserialize)]
#[diesel(table_name = decisions, check_for_backend(Pg))]
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

/// A registered workflow, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct WorkflowInfo {
    /// Its unique name.
    pub name: String,
    /// What it does.
    pub description: String,
}
