//! A state's data, shared: one JSON object that the engine's state, the checkpoint it saves
//! and the events observers hear all point to, copied only when it is changed while shared.
//!
//! Every node step hands the state's data to several holders (the node, the position the
//! checkpoint saves, the event that reports it); with a plain map each took a deep copy of
//! every key and value, most of the engine's own work per step.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A JSON object behind an [`Arc`]: cloning it copies a pointer. It is always a
/// [`Value::Object`] (it is only ever made from a map), so that observers can be handed the
/// very `Arc<Value>` it holds.
#[derive(Clone, PartialEq)]
pub(crate) struct StateData(Arc<Value>);

impl StateData {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        StateData(Arc::new(Value::Object(map)))
    }

    /// The object's entries.
    pub(crate) fn map(&self) -> &Map<String, Value> {
        match &*self.0 {
            Value::Object(map) => map,
            // Not reached: it is only ever made from a map.
            _ => empty(),
        }
    }

    /// The object's entries, to change: copied first if anyone else holds them.
    pub(crate) fn map_mut(&mut self) -> &mut Map<String, Value> {
        let value = Arc::make_mut(&mut self.0);
        if !value.is_object() {
            *value = Value::Object(Map::new());
        }
        value
            .as_object_mut()
            .expect("the state's data was made an object just above")
    }

    /// The object, shared with whoever else holds it.
    pub(crate) fn shared(&self) -> Arc<Value> {
        Arc::clone(&self.0)
    }
}

fn empty() -> &'static Map<String, Value> {
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

impl Default for StateData {
    fn default() -> Self {
        StateData::new(Map::new())
    }
}

impl fmt::Debug for StateData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.map().fmt(f)
    }
}

impl Serialize for StateData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StateData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::deserialize(deserializer).map(StateData::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: Value) -> StateData {
        match value {
            Value::Object(map) => StateData::new(map),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn a_clone_shares_the_object_until_one_of_them_changes_it() {
        let first = data(json!({"a": 1}));
        let mut second = first.clone();
        assert!(Arc::ptr_eq(&first.shared(), &second.shared()));
        second.map_mut().insert("b".into(), json!(2));
        assert!(!Arc::ptr_eq(&first.shared(), &second.shared()));
        assert_eq!(*first.shared(), json!({"a": 1}));
        assert_eq!(*second.shared(), json!({"a": 1, "b": 2}));
    }

    #[test]
    fn it_serializes_as_the_object_and_reads_only_an_object() {
        let d = data(json!({"a": [1, 2]}));
        assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"a":[1,2]}"#);
        let back: StateData = serde_json::from_str(r#"{"a":[1,2]}"#).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<StateData>("[1]").is_err());
    }
}
