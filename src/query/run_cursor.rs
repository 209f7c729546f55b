//! Where a keyset (cursor) page of runs ends, so that the next page starts right after it.
//!
//! Page numbers make the database skip `(page - 1) × page_size` rows, which grows with the
//! depth; a cursor names the last row shown, so every page costs one index range scan however
//! deep it is. The cursor carries the sort it was made for and the last row's sort key and id
//! (the id breaks ties between equal keys), written as URL-safe text: letters, digits, `-`,
//! `_` and `.`. Callers treat it as opaque and pass it back unchanged.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::model::{Run, RunId};
use crate::query::run_filters::RunSortField;

/// The sorts a cursor can continue: one field, with a key that is never empty and an index
/// that serves a range scan on it. Other sorts page by number.
const KEYSET_FIELDS: [RunSortField; 2] = [RunSortField::CreatedAt, RunSortField::Id];

/// The position after the last run of a keyset page, for
/// [`repository::list_runs_keyset`](crate::query::repository::list_runs_keyset).
///
/// It parses from and prints as text, so it travels in a URL (`?cursor=...`) or on a command
/// line; a malformed cursor is [`Error::InvalidInput`] (400) naming it.
///
/// ```
/// use workflows::RunCursor;
/// let cursor: RunCursor = "desc.created_at.1767268800000000.6f5c4286-cbed-4c59-8f5c-4286cbed9c59"
///     .parse()
///     .unwrap();
/// assert_eq!(cursor.to_string().parse::<RunCursor>().unwrap(), cursor);
/// let err = "garbage".parse::<RunCursor>().unwrap_err();
/// assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCursor {
    pub(crate) sort: KeysetSort,
    pub(crate) key: KeysetKey,
    pub(crate) id: RunId,
}

/// A sort a cursor continues: one keyset field and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeysetSort {
    pub(crate) field: RunSortField,
    pub(crate) descending: bool,
}

/// The last row's sort key; `Id` when the sort key is the id itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeysetKey {
    CreatedAt(DateTime<Utc>),
    Id,
}

impl KeysetSort {
    /// The keyset sort for a whitelisted sort, or a 400 saying which sorts a cursor serves.
    pub(crate) fn new(sort: &[(RunSortField, bool)]) -> Result<Self> {
        match sort {
            [(field, descending)] if KEYSET_FIELDS.contains(field) => Ok(KeysetSort {
                field: *field,
                descending: *descending,
            }),
            _ => Err(Error::invalid_input(
                "sort",
                sort.iter()
                    .map(|(f, d)| format!("{}{}", if *d { "-" } else { "" }, f.as_str()))
                    .collect::<Vec<_>>()
                    .join(","),
                "cursor pages sort by one of created_at, -created_at, id, -id; use page numbers for other orders",
            )),
        }
    }

    /// Its direction and field, e.g. `desc.created_at`. Not `-created_at`, as in `sort`: a
    /// leading `-` would read as an option on a command line.
    fn name(self) -> String {
        format!(
            "{}.{}",
            if self.descending { "desc" } else { "asc" },
            self.field.as_str()
        )
    }
}

impl RunCursor {
    /// The position right after `run` in `sort`.
    pub(crate) fn after(run: &Run, sort: KeysetSort) -> Self {
        let key = match sort.field {
            RunSortField::CreatedAt => KeysetKey::CreatedAt(run.created_at),
            _ => KeysetKey::Id,
        };
        RunCursor {
            sort,
            key,
            id: run.id,
        }
    }
}

/// `DIRECTION.created_at.MICROS.ID` for `created_at` (microseconds since the Unix epoch, the column's
/// precision, so the key round-trips exactly), `DIRECTION.id.ID` for `id`.
impl fmt::Display for RunCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.key {
            KeysetKey::CreatedAt(at) => write!(
                f,
                "{}.{}.{}",
                self.sort.name(),
                at.timestamp_micros(),
                self.id
            ),
            KeysetKey::Id => write!(f, "{}.{}", self.sort.name(), self.id),
        }
    }
}

impl FromStr for RunCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| {
            Error::invalid_input(
                "cursor",
                s,
                format_args!(
                    "{reason}; pass back the next_cursor of a page unchanged, or leave it out for the first page"
                ),
            )
        };
        let parts: Vec<&str> = s.trim().split('.').collect();
        let [direction, field, rest @ ..] = parts.as_slice() else {
            return Err(bad("not a cursor"));
        };
        let descending = match *direction {
            "desc" => true,
            "asc" => false,
            _ => return Err(bad("not a cursor")),
        };
        let field = field
            .parse::<RunSortField>()
            .ok()
            .filter(|f| KEYSET_FIELDS.contains(f))
            .ok_or_else(|| bad("not a cursor"))?;
        let sort = KeysetSort { field, descending };
        let id = |text: &str| {
            text.parse::<RunId>()
                .map_err(|_| bad("its run id is not a UUID"))
        };
        match (field, rest) {
            (RunSortField::CreatedAt, [micros, run_id]) => {
                let at = micros
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_micros)
                    .ok_or_else(|| bad("its timestamp is not a number of microseconds"))?;
                Ok(RunCursor {
                    sort,
                    key: KeysetKey::CreatedAt(at),
                    id: id(run_id)?,
                })
            }
            (RunSortField::Id, [run_id]) => Ok(RunCursor {
                sort,
                key: KeysetKey::Id,
                id: id(run_id)?,
            }),
            _ => Err(bad("wrong number of parts")),
        }
    }
}

impl Serialize for RunCursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RunCursor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// In the HTTP contract, a cursor is a string of the shape [`RunCursor`]'s `Display` writes.
#[cfg(feature = "http")]
impl utoipa::PartialSchema for RunCursor {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(CURSOR_PATTERN))
            .description(Some(
                "Where the next page starts: pass it back unchanged as `cursor` (empty or absent: the first page).",
            ))
            .into()
    }
}

#[cfg(feature = "http")]
impl utoipa::ToSchema for RunCursor {}

/// What a cursor looks like, as a regular expression for the HTTP contract.
#[cfg(feature = "http")]
const CURSOR_PATTERN: &str = r"^((asc|desc)\.(created_at\.-?[0-9]{1,16}\.|id\.)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$";

/// One page of runs read by cursor: no total and no page number (counting is what makes
/// deep numbered pages slow), but where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct KeysetPage<T> {
    /// The items of this page; empty, never `null`, after the last one.
    pub data: Vec<T>,
    /// Pass it back for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<RunCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f5c4286-cbed-4c59-8f5c-4286cbed9c59";

    #[test]
    fn cursors_round_trip_through_text() {
        for text in [
            format!("desc.created_at.1767268800123456.{ID}"),
            format!("asc.created_at.-5.{ID}"),
            format!("asc.id.{ID}"),
            format!("desc.id.{ID}"),
        ] {
            let cursor: RunCursor = text.parse().unwrap();
            assert_eq!(cursor.to_string(), text);
        }
    }

    #[test]
    fn malformed_cursors_are_400s_naming_them() {
        for bad in [
            "",
            "x",
            "asc.status.1.2",
            &format!("desc.created_at.{ID}"),
            &format!("-created_at.1.{ID}"),
            &format!("desc.created_at.soon.{ID}"),
            &format!("desc.created_at.99999999999999999999.{ID}"),
            "desc.created_at.1.not-a-uuid",
            &format!("asc.id.1.{ID}"),
            &format!("down.id.{ID}"),
            &format!("desc.workflow_name.summarize.{ID}"),
        ] {
            let err = bad.parse::<RunCursor>().unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid cursor {bad:?}: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn only_single_keyset_fields_make_a_keyset_sort() {
        assert!(KeysetSort::new(&[(RunSortField::CreatedAt, true)]).is_ok());
        assert!(KeysetSort::new(&[(RunSortField::Id, false)]).is_ok());
        let err = KeysetSort::new(&[(RunSortField::WorkflowName, false)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid sort "workflow_name": cursor pages sort by one of created_at, -created_at, id, -id; use page numbers for other orders"#
        );
        assert!(
            KeysetSort::new(&[(RunSortField::CreatedAt, true), (RunSortField::Id, true)]).is_err()
        );
    }

    #[test]
    fn cursors_serialise_as_strings() {
        let cursor: RunCursor = format!("asc.id.{ID}").parse().unwrap();
        let json = serde_json::to_string(&cursor).unwrap();
        assert_eq!(json, format!("\"asc.id.{ID}\""));
        assert_eq!(serde_json::from_str::<RunCursor>(&json).unwrap(), cursor);
        assert!(serde_json::from_str::<RunCursor>("\"nope\"").is_err());
    }
}
