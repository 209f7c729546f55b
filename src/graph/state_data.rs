//! A state's data, shared: one JSON object that the engine's state, the checkpoint it saves
//! and the events observers hear all point to, copied only when it is changed while shared.
//!
//! Every node step hands the state's data to several holders (the node, the position the
//! checkpoint saves, the event that reports it); with a plain map each took a deep copy of
//! every key and value, most of the engine's own work per step.
//!
//! A copy also remembers what it was copied from and which keys were changed since, so that
//! the update a node made ([`StateData::update_from`]) is found by looking at those keys
//! only, not by comparing every key and value of the state.

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::model::StateUpdate;

/// A JSON object behind an [`Arc`]: cloning it copies a pointer. It is always a
/// [`Value::Object`] (it is only ever made from a map), so that observers can be handed the
/// very `Arc<Value>` it holds.
#[derive(Clone)]
pub(crate) struct StateData {
    data: Arc<Value>,
    /// Since when, and where, it differs from an object it was copied from; none when that
    /// is not known (it was made, not copied).
    changes: Option<Arc<Changes>>,
}

/// The keys changed since a copy of `from` was made.
#[derive(Clone)]
struct Changes {
    /// What was copied. A `Weak` keeps its allocation, so no other object can be taken for
    /// it at the same address.
    from: Weak<Value>,
    keys: Vec<String>,
}

impl StateData {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        StateData {
            data: Arc::new(Value::Object(map)),
            changes: None,
        }
    }

    /// The object's entries.
    pub(crate) fn map(&self) -> &Map<String, Value> {
        match &*self.data {
            Value::Object(map) => map,
            // Not reached: it is only ever made from a map.
            _ => empty(),
        }
    }

    /// The object's entries, to change `key` (and no other): copied first if anyone else
    /// holds them.
    pub(crate) fn map_mut(&mut self, key: &str) -> &mut Map<String, Value> {
        if Arc::strong_count(&self.data) > 1 {
            // Shared, so copied below: the copy differs from what it copies in `key` alone,
            // so far.
            self.changes = Some(Arc::new(Changes {
                from: Arc::downgrade(&self.data),
                keys: Vec::new(),
            }));
        }
        if let Some(changes) = &mut self.changes {
            let changes = Arc::make_mut(changes);
            if !changes.keys.iter().any(|k| k == key) {
                changes.keys.push(key.to_owned());
            }
        }
        let value = Arc::make_mut(&mut self.data);
        if !value.is_object() {
            *value = Value::Object(Map::new());
        }
        match value {
            Value::Object(map) => map,
            // Not reached: made an object just above.
            _ => unreachable!("the state's data was made an object just above"),
        }
    }

    /// The object, shared with whoever else holds it.
    pub(crate) fn shared(&self) -> Arc<Value> {
        Arc::clone(&self.data)
    }

    /// The update that turns `before` into this, as [`StateUpdate::between`] finds it: when
    /// this is a copy of `before`, from the keys changed since alone.
    pub(crate) fn update_from(&self, before: &StateData) -> StateUpdate {
        if Arc::ptr_eq(&self.data, &before.data) {
            return StateUpdate::default();
        }
        match &self.changes {
            Some(changes) if std::ptr::eq(changes.from.as_ptr(), Arc::as_ptr(&before.data)) => {
                StateUpdate::between_at(before.map(), self.map(), &changes.keys)
            }
            _ => StateUpdate::between(before.map(), self.map()),
        }
    }
}

/// Equal when their objects are, however they came to be.
impl PartialEq for StateData {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
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
        second.map_mut("b").insert("b".into(), json!(2));
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

    /// `after`'s update from `before`, checked against comparing every key.
    fn update(before: &StateData, after: &StateData) -> StateUpdate {
        let found = after.update_from(before);
        assert_eq!(found, StateUpdate::between(before.map(), after.map()));
        found
    }

    #[test]
    fn a_copy_s_update_is_found_from_the_keys_it_changed() {
        let before = data(json!({"keep": "x", "list": [1], "obj": {"a": 1}, "gone": 1, "same": 2}));
        let mut after = before.clone();
        after.map_mut("list").insert("list".into(), json!([1, 2]));
        after
            .map_mut("obj")
            .insert("obj".into(), json!({"a": 1, "b": 2}));
        after.map_mut("new").insert("new".into(), json!("n"));
        after.map_mut("gone").remove("gone");
        after.map_mut("same").insert("same".into(), json!(2));
        after.map_mut("never").remove("never");
        after.map_mut("new").insert("new".into(), json!("m"));
        let keys = &after.changes.as_ref().unwrap().keys;
        assert_eq!(keys, &["list", "obj", "new", "gone", "same", "never"]);
        assert_eq!(
            serde_json::to_value(update(&before, &after)).unwrap(),
            json!({"set": {"new": "m"}, "append": {"list": [2]}, "merge": {"obj": {"b": 2}}, "remove": ["gone"]})
        );
    }

    #[test]
    fn data_left_unchanged_has_an_empty_update() {
        let before = data(json!({"a": 1}));
        assert!(update(&before, &before.clone()).is_empty());
    }

    #[test]
    fn a_copy_changed_again_once_alone_keeps_every_key_it_changed() {
        let before = data(json!({"a": 1, "b": 1}));
        let mut after = before.clone();
        after.map_mut("a").insert("a".into(), json!(2));
        // Held by nobody else now: changed in place, and still a copy of `before`.
        after.map_mut("b").insert("b".into(), json!(2));
        assert_eq!(
            serde_json::to_value(update(&before, &after)).unwrap(),
            json!({"set": {"a": 2, "b": 2}})
        );
    }

    #[test]
    fn data_that_is_not_a_copy_of_before_is_compared_key_by_key() {
        let before = data(json!({"a": 1, "b": 1}));
        let mut other = data(json!({"a": 1, "b": 3}));
        let held = other.clone();
        other.map_mut("a").insert("a".into(), json!(2));
        drop(held);
        // A copy of `other`, not of `before`: its one changed key is not all that differs.
        assert_eq!(
            serde_json::to_value(update(&before, &other)).unwrap(),
            json!({"set": {"a": 2, "b": 3}})
        );
        // And a copy of a copy is not a copy of the first.
        let mut again = other.clone();
        again.map_mut("c").insert("c".into(), json!(1));
        assert_eq!(update(&before, &again).set.len(), 3);
    }
}
