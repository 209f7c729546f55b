//! The parameters a run is started with: a JSON object, read as the workflow's own params
//! type (checked before the run is written), or by key with typed helpers.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::graph::ValueError;
use crate::graph::value::{read_key, require_key};

/// A run's parameters: a JSON object. Anything else is refused when a run is created.
///
/// ```
/// use workflows::Params;
/// let params = Params::from_value(serde_json::json!({"topic": "rust", "depth": 2})).unwrap();
/// assert_eq!(params.require::<u32>("depth").unwrap(), 2);
/// assert_eq!(params.get::<String>("missing").unwrap(), None);
/// assert_eq!(
///     params.require::<String>("missing").unwrap_err().to_string(),
///     r#"params key "missing": required but not given"#
/// );
/// assert!(Params::from_value(serde_json::json!([1, 2])).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Params(Map<String, Value>);

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Params(Map::new())
    }

    /// Parameters from a JSON value, which must be an object (`null` counts as empty) with
    /// no NUL character in any key or string (PostgreSQL's `jsonb` cannot store one).
    pub fn from_value(value: Value) -> Result<Self> {
        if let Some(path) = nul_character_at(&value, "params") {
            return Err(Error::invalid_input(
                path,
                value.to_string(),
                "contains a NUL character (\\u0000), which PostgreSQL cannot store; remove it",
            ));
        }
        match value {
            Value::Object(map) => Ok(Params(map)),
            Value::Null => Ok(Params::new()),
            other => Err(Error::invalid_input(
                "params",
                other.to_string(),
                "must be a JSON object like {\"key\": \"value\"}",
            )),
        }
    }

    /// The value of `key` converted to `T`; `None` if absent or `null`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ValueError> {
        read_key("params", &self.0, key)
    }

    /// The value of `key` converted to `T`; an error naming the key if absent.
    pub fn require<T: DeserializeOwned>(&self, key: &str) -> Result<T, ValueError> {
        require_key("params", &self.0, key)
    }

    /// Adds or replaces `key`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// The object itself.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The parameters as a JSON value, as stored in `runs.params`.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }
}

impl Params {
    /// The params as the workflow's params type `P`; a mismatch is
    /// [`Error::InvalidInput`] (400) naming the field and what was expected.
    ///
    /// ```
    /// use serde::Deserialize;
    /// use workflows::Params;
    ///
    /// #[derive(Debug, Deserialize)]
    /// struct Search { topic: String, depth: u32 }
    ///
    /// let params = Params::from_value(serde_json::json!({"topic": "rust", "depth": "deep"})).unwrap();
    /// assert_eq!(
    ///     params.parse::<Search>().unwrap_err().to_string(),
    ///     r#"invalid params.depth "\"deep\"": invalid type: string "deep", expected u32"#
    /// );
    /// // 2.0 is the integer 2, as JSON Schema counts it.
    /// let params = Params::from_value(serde_json::json!({"topic": "rust", "depth": 2.0})).unwrap();
    /// assert_eq!(params.parse::<Search>().unwrap().depth, 2);
    /// let params = Params::from_value(serde_json::json!({"depth": 2})).unwrap();
    /// assert_eq!(
    ///     params.parse::<Search>().unwrap_err().to_string(),
    ///     r#"invalid params "{\"depth\":2}": missing field `topic`"#
    /// );
    /// ```
    pub fn parse<P: DeserializeOwned>(&self) -> Result<P> {
        let mut value = self.to_value();
        integral_floats_as_integers(&mut value);
        serde_path_to_error::deserialize(&value).map_err(|e| {
            let path: Vec<Segment<'_>> = e.path().iter().map(Segment::from).collect();
            let mut name = "params".to_owned();
            let mut at = Some(&value);
            for segment in &path {
                match segment {
                    Segment::Key(key) => {
                        name.push('.');
                        name.push_str(key);
                        at = at.and_then(|v| v.get(*key));
                    }
                    Segment::Index(i) => {
                        name.push_str(&format!("[{i}]"));
                        at = at.and_then(|v| v.get(*i));
                    }
                }
            }
            let shown = at.map(Value::to_string).unwrap_or_default();
            Error::invalid_input(name, shorten(&shown), e.inner())
        })
    }
}

/// Numbers such as `2.0` as the integers they are: JSON Schema (the contract's) counts them
/// as integers, serde's integer types do not. Integers still read as floats where a float
/// is expected, so nothing else changes.
fn integral_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) => {
            // Beyond 2^53 a float no longer says which integer it was.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if let Some(f) = n
                .as_f64()
                .filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() <= EXACT)
            {
                #[allow(clippy::cast_possible_truncation)]
                let integer = f as i64;
                *n = integer.into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// A step of the path to a value that does not fit.
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> From<&'a serde_path_to_error::Segment> for Segment<'a> {
    fn from(segment: &'a serde_path_to_error::Segment) -> Self {
        use serde_path_to_error::Segment as Path;
        match segment {
            Path::Seq { index } => Segment::Index(*index),
            Path::Map { key } => Segment::Key(key),
            Path::Enum { variant } => Segment::Key(variant),
            _ => Segment::Key("?"),
        }
    }
}

/// `text`, cut to a length an error message can show.
fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// The params of a workflow that takes none: an empty object (or none at all). Any key is
/// refused, naming it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Where in `value` a key or string holds a NUL character, as a path like `params.a[2]`.
pub(crate) fn nul_character_at(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_character_at(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let path = format!("{path}.{key}");
            if key.contains('\0') {
                Some(path)
            } else {
                nul_character_at(item, &path)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nul_character_anywhere_is_refused_naming_where() {
        let e = Params::from_value(json!({"a": {"b": ["x", "y\u{0}"]}})).unwrap_err();
        assert!(e.to_string().starts_with("invalid params.a.b[1] "), "{e}");
        let e = Params::from_value(json!({"k\u{0}": 1})).unwrap_err();
        assert!(e.to_string().starts_with("invalid params.k\u{0} "), "{e}");
    }

    #[test]
    fn a_non_object_is_refused() {
        let e = Params::from_value(json!([1])).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid params "[1]": must be a JSON object like {"key": "value"}"#
        );
    }
}
