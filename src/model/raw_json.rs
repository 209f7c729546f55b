//! JSON exactly as PostgreSQL stored it: what the read API returns for params, results and
//! snapshots.
//!
//! A `jsonb` number is a PostgreSQL `numeric`: it may have more digits than any Rust number
//! (`123456789012345678901234567890`), keep its scale (`1.10`), or be far out of `f64`'s
//! range (`1e400`). Read into a `serde_json::Value`, the first is rounded, the second
//! becomes `1.1`, and the third fails to read at all (and with it every page of runs that
//! holds it). [`RawJson`] keeps the text PostgreSQL returns, and writes it out unchanged:
//! numbers come back as stored, and any row PostgreSQL could store can be read.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A JSON value as stored: its text, unchanged.
///
/// It serialises as that JSON (with `serde_json`), prints as it, and converts to a
/// [`serde_json::Value`] or any deserialisable type on request. Two values are equal when
/// they hold the same JSON, whatever the spacing or key order.
///
/// ```
/// use workflows::RawJson;
/// let stored: RawJson = serde_json::from_str(r#"{"big": 123456789012345678901234567890, "price": 1.10}"#).unwrap();
/// assert_eq!(
///     serde_json::to_string(&stored).unwrap(),
///     r#"{"big": 123456789012345678901234567890, "price": 1.10}"#
/// );
/// assert_eq!(stored.to_value().unwrap()["price"], 1.1);
/// assert_eq!(stored, serde_json::json!({"price": 1.1, "big": 1.2345678901234568e29}));
/// ```
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// `value` as JSON.
    pub fn from_value(value: &Value) -> Self {
        RawJson::serialized(value).expect("a serde_json::Value always serialises to valid JSON")
    }

    /// `value` serialized as JSON, without a [`serde_json::Value`] in between.
    pub(crate) fn serialized<T: serde::Serialize + ?Sized>(
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(RawJson)
    }

    /// The value as a [`serde_json::Value`]. Numbers become `f64` when they are not
    /// integers that fit 64 bits, so precision beyond that is lost; a number beyond `f64`'s
    /// range (or nesting deeper than 128 levels) is an error.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        self.deserialize()
    }

    /// The value as a `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.as_str())
    }

    /// JSON text, checked to be JSON (of any depth, with numbers of any size).
    pub fn parse(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(RawJson)
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.as_str() == other.as_str()
            || matches!((self.to_value(), other.to_value()), (Ok(a), Ok(b)) if a == b)
    }
}

impl PartialEq<Value> for RawJson {
    fn eq(&self, other: &Value) -> bool {
        self.to_value().is_ok_and(|v| v == *other)
    }
}

impl From<Value> for RawJson {
    fn from(value: Value) -> Self {
        RawJson::from_value(&value)
    }
}

impl From<&Value> for RawJson {
    fn from(value: &Value) -> Self {
        RawJson::from_value(value)
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(RawJson)
    }
}

#[cfg(feature = "http")]
impl utoipa::PartialSchema for RawJson {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <Value as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "http")]
impl utoipa::ToSchema for RawJson {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_keep_their_digits_and_scale() {
        for text in ["123456789012345678901234567890", "1.10", "1e400", "-0.000"] {
            let raw: RawJson = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&raw).unwrap(), text);
        }
    }

    #[test]
    fn a_number_out_of_f64_range_reads_but_does_not_convert() {
        let raw: RawJson = serde_json::from_str(r#"{"x": 1e400}"#).unwrap();
        let err = raw.to_value().unwrap_err();
        assert!(err.to_string().contains("number out of range"), "{err}");
    }

    #[test]
    fn nesting_deeper_than_serde_json_converts_is_still_kept() {
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        let raw = RawJson::parse(deep.clone()).unwrap();
        assert_eq!(raw.as_str(), deep);
    }

    #[test]
    fn equality_is_of_the_json_not_the_text() {
        let a: RawJson = serde_json::from_str(r#"{"b": 1, "a": [true]}"#).unwrap();
        assert_eq!(a, RawJson::from_value(&json!({"a": [true], "b": 1})));
        assert_eq!(a, json!({"a": [true], "b": 1}));
        assert_ne!(a, json!({"a": [false], "b": 1}));
    }
}
