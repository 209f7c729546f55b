//! Reading the keys of a JSON object (a run's state, its params) as typed values, with
//! errors that name the key.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A key that is missing, holds the wrong type, or cannot be stored: which object (`state`
/// or `params`), which key, and what is wrong. It converts into
/// [`Error::Value`](crate::Error::Value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{container} key {key:?}: {reason}")]
pub struct ValueError {
    /// `state` or `params`.
    pub container: &'static str,
    /// The key that was read or written.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Reads `key` of a JSON object as `T`: `None` if absent or `null`, an error naming the
/// container and the key if it holds something else.
pub(crate) fn read_key<T: DeserializeOwned>(
    container: &'static str,
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<T>, ValueError> {
    read_value(container, key, map.get(key))
}

/// [`read_key`] of the value `key` holds (`None`: it is absent).
pub(crate) fn read_value<T: DeserializeOwned>(
    container: &'static str,
    key: &str,
    value: Option<&Value>,
) -> Result<Option<T>, ValueError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => T::deserialize(value).map(Some).map_err(|e| ValueError {
            container,
            key: key.to_owned(),
            reason: format!(
                "holds {value}, which is not a {}: {e}",
                std::any::type_name::<T>()
            ),
        }),
    }
}

/// Like [`read_key`], but absence is an error.
pub(crate) fn require_key<T: DeserializeOwned>(
    container: &'static str,
    map: &Map<String, Value>,
    key: &str,
) -> Result<T, ValueError> {
    require_value(container, key, map.get(key))
}

/// [`require_key`] of the value `key` holds (`None`: it is absent).
pub(crate) fn require_value<T: DeserializeOwned>(
    container: &'static str,
    key: &str,
    value: Option<&Value>,
) -> Result<T, ValueError> {
    read_value(container, key, value)?.ok_or_else(|| ValueError {
        container,
        key: key.to_owned(),
        reason: "required but not given".to_owned(),
    })
}
