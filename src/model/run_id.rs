//! The id of a run.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::InvalidValue;

/// The id of a run: a random UUID, chosen when the run is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        Uuid::parse_str(s.trim())
            .map(RunId)
            .map_err(|_| InvalidValue::new("run id", s, "not a UUID"))
    }
}

impl From<Uuid> for RunId {
    fn from(id: Uuid) -> Self {
        RunId(id)
    }
}
