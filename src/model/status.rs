//! Where a run, and each of its stages, is in its lifecycle.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// Declares a status enum written as its lower-case name (in JSON, and as stored).
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
            type Err = InvalidValue;

            fn from_str(s: &str) -> Result<Self, InvalidValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(InvalidValue::new(
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
    };
}

text_enum! {
    /// Where a run is in its lifecycle.
    RunStatus, "status" {
        /// Created, not started yet.
        Pending => "pending",
        /// Executing.
        Running => "running",
        /// Not executing until it is due (`wake_at`): waiting out a retry's backoff, with no
        /// lease and no worker; any worker continues it then.
        Waiting => "waiting",
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
