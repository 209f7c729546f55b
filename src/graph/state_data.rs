//! A state's data, shared: one JSON object that the engine's state, the checkpoint it saves
//! and the events observers hear all point to, and that a node changes without copying it.
//!
//! Every node step hands the state's data to several holders (the node, the position the
//! checkpoint saves and a retry starts from, the event that reports it); with a plain map
//! each took a deep copy of every key and value, most of the engine's own work per step.
//! Cloning a [`StateData`] copies pointers instead.
//!
//! A change made while the object is shared is not applied to it, which would mean copying
//! it whole: it is kept beside it, key by key (the overlay), and read through. That overlay
//! is also exactly the update the node made ([`StateData::update_text_from`]), found without
//! comparing every key of the state. Once the step is recorded and the engine is the only
//! holder left, it applies the overlay to the object in place ([`StateData::flatten`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::model::{JsonText, StateUpdate};

/// A JSON object behind an [`Arc`], with the changes made to it while it was shared. Cloning
/// it copies pointers.
#[derive(Clone)]
pub(crate) struct StateData {
    /// The object, always a [`Value::Object`] (it is only ever made from a map), so that
    /// observers can be handed the very `Arc<Value>` it holds.
    base: Arc<Value>,
    /// The changes made to `base` while it was shared; none once applied.
    overlay: Option<Arc<Overlay>>,
}

/// Changes to an object that is not changed itself.
#[derive(Clone, Default)]
struct Overlay {
    /// Each key changed, with its new value, or `None` if it was removed.
    changes: BTreeMap<String, Option<Value>>,
    /// The object with the changes applied, made only when someone asks for the whole of it.
    merged: OnceLock<Map<String, Value>>,
}

impl StateData {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        StateData {
            base: Arc::new(Value::Object(map)),
            overlay: None,
        }
    }

    /// An empty object that allocates nothing: what the engine holds while it holds no data.
    pub(crate) fn empty() -> Self {
        static EMPTY: LazyLock<Arc<Value>> = LazyLock::new(|| Arc::new(Value::Object(Map::new())));
        StateData {
            base: Arc::clone(&EMPTY),
            overlay: None,
        }
    }

    /// The value of `key`, changed or not.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        if let Some(change) = self.overlay.as_ref().and_then(|o| o.changes.get(key)) {
            return change.as_ref();
        }
        object(&self.base).get(key)
    }

    /// The whole object, changes applied (built once, the first time it is asked for, while
    /// changes are kept beside it).
    pub(crate) fn map(&self) -> &Map<String, Value> {
        match &self.overlay {
            None => object(&self.base),
            Some(overlay) => overlay.merged.get_or_init(|| {
                let mut map = object(&self.base).clone();
                for (key, change) in &overlay.changes {
                    match change {
                        Some(value) => map.insert(key.clone(), value.clone()),
                        None => map.remove(key),
                    };
                }
                map
            }),
        }
    }

    /// Sets `key` to `value`: in place if nobody else holds the object, beside it otherwise.
    pub(crate) fn insert(&mut self, key: String, value: Value) {
        match self.unshared() {
            Some(map) => {
                map.insert(key, value);
            }
            None => {
                self.overlay_mut().changes.insert(key, Some(value));
            }
        }
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Value> {
        if let Some(map) = self.unshared() {
            return map.remove(key);
        }
        let value = self.get(key).cloned()?;
        self.overlay_mut().changes.insert(key.to_owned(), None);
        Some(value)
    }

    /// The object to change in place: when nobody else holds it and no change is kept
    /// beside it.
    fn unshared(&mut self) -> Option<&mut Map<String, Value>> {
        if self.overlay.is_some() {
            return None;
        }
        match Arc::get_mut(&mut self.base) {
            Some(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    /// The changes, to add one: the whole object is no longer known.
    fn overlay_mut(&mut self) -> &mut Overlay {
        let overlay = Arc::make_mut(self.overlay.get_or_insert_with(Arc::default));
        overlay.merged = OnceLock::new();
        overlay
    }

    /// Applies the changes kept beside the object to it: in place (moving their values) if
    /// nobody else holds either, to a copy otherwise.
    pub(crate) fn flatten(&mut self) {
        let Some(overlay) = self.overlay.take() else {
            return;
        };
        let changes = match Arc::try_unwrap(overlay) {
            Ok(overlay) => overlay.changes,
            Err(shared) => shared.changes.clone(),
        };
        let value = Arc::make_mut(&mut self.base);
        if !value.is_object() {
            *value = Value::Object(Map::new());
        }
        if let Value::Object(map) = value {
            for (key, change) in changes {
                match change {
                    Some(value) => map.insert(key, value),
                    None => map.remove(&key),
                };
            }
        }
    }

    /// Whether changes are kept beside the object (see [`flatten`](Self::flatten)).
    pub(crate) fn has_changes(&self) -> bool {
        self.overlay.is_some()
    }

    /// The object, changes applied: shared with whoever else holds it when no change is
    /// kept beside it, a copy otherwise.
    pub(crate) fn shared(&self) -> Arc<Value> {
        match &self.overlay {
            None => Arc::clone(&self.base),
            Some(_) => Arc::new(Value::Object(self.map().clone())),
        }
    }

    /// The JSON text of the update that turns `before` into this, as a stage stores it (what
    /// [`StateUpdate::between`] finds): when this is `before` with changes kept beside it,
    /// written from those changes alone, their values not copied.
    pub(crate) fn update_text_from(&self, before: &StateData) -> serde_json::Result<JsonText> {
        if Arc::ptr_eq(&self.base, &before.base) {
            match (&before.overlay, &self.overlay) {
                (None, Some(overlay)) => {
                    return StateUpdate::text_of_changes(object(&before.base), &overlay.changes);
                }
                (None, None) => return StateUpdate::default().to_json_text(),
                (Some(was), Some(is)) if Arc::ptr_eq(was, is) => {
                    return StateUpdate::default().to_json_text();
                }
                _ => {}
            }
        }
        StateUpdate::between(before.map(), self.map()).to_json_text()
    }
}

/// The entries of `value`, which is always an object here.
fn object(value: &Value) -> &Map<String, Value> {
    match value {
        Value::Object(map) => map,
        // Not reached: it is only ever made from a map.
        _ => {
            static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
            EMPTY.get_or_init(Map::new)
        }
    }
}

/// Equal when their objects are, however they came to be.
impl PartialEq for StateData {
    fn eq(&self, other: &Self) -> bool {
        self.map() == other.map()
    }
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

    fn set(data: &mut StateData, key: &str, value: Value) {
        data.insert(key.to_owned(), value);
    }

    #[test]
    fn a_clone_shares_the_object_and_its_changes_are_kept_beside_it() {
        let first = data(json!({"a": 1}));
        let mut second = first.clone();
        assert!(Arc::ptr_eq(&first.shared(), &second.shared()));
        set(&mut second, "b", json!(2));
        assert!(second.has_changes());
        assert!(Arc::ptr_eq(&first.base, &second.base));
        assert_eq!(*first.shared(), json!({"a": 1}));
        assert_eq!(*second.shared(), json!({"a": 1, "b": 2}));
        assert_eq!(Value::Object(second.map().clone()), json!({"a": 1, "b": 2}));
    }

    #[test]
    fn data_nobody_else_holds_is_changed_in_place() {
        let mut alone = data(json!({"a": 1}));
        let object = Arc::as_ptr(&alone.base);
        set(&mut alone, "b", json!(2));
        assert_eq!(alone.remove("a"), Some(json!(1)));
        assert!(!alone.has_changes());
        assert_eq!(Arc::as_ptr(&alone.base), object);
        assert_eq!(*alone.shared(), json!({"b": 2}));
    }

    #[test]
    fn reads_see_the_changes_kept_beside_the_object() {
        let before = data(json!({"kept": 1, "changed": 1, "removed": 1}));
        let mut after = before.clone();
        set(&mut after, "changed", json!(2));
        set(&mut after, "added", json!(3));
        assert_eq!(after.remove("removed"), Some(json!(1)));
        assert_eq!(after.remove("never there"), None);
        assert_eq!(after.get("kept"), Some(&json!(1)));
        assert_eq!(after.get("changed"), Some(&json!(2)));
        assert_eq!(after.get("added"), Some(&json!(3)));
        assert_eq!(after.get("removed"), None);
        assert_eq!(
            Value::Object(after.map().clone()),
            json!({"kept": 1, "changed": 2, "added": 3})
        );
        // Asked for whole, then changed again: the whole is made again.
        set(&mut after, "kept", json!(0));
        assert_eq!(after.map().get("kept"), Some(&json!(0)));
        assert_eq!(
            *before.shared(),
            json!({"kept": 1, "changed": 1, "removed": 1})
        );
    }

    #[test]
    fn changes_are_applied_in_place_once_nobody_else_holds_the_object() {
        let before = data(json!({"a": 1, "b": 1}));
        let mut after = before.clone();
        set(&mut after, "a", json!(2));
        after.remove("b");
        drop(before);
        let object = Arc::as_ptr(&after.base);
        after.flatten();
        assert!(!after.has_changes());
        assert_eq!(Arc::as_ptr(&after.base), object);
        assert_eq!(*after.shared(), json!({"a": 2}));
    }

    #[test]
    fn changes_applied_while_another_holds_the_object_go_to_a_copy() {
        let before = data(json!({"a": 1}));
        let mut after = before.clone();
        set(&mut after, "a", json!(2));
        after.flatten();
        assert!(!after.has_changes());
        assert!(!Arc::ptr_eq(&after.base, &before.base));
        assert_eq!(*after.shared(), json!({"a": 2}));
        assert_eq!(*before.shared(), json!({"a": 1}));
    }

    #[test]
    fn it_serializes_as_the_object_and_reads_only_an_object() {
        let d = data(json!({"a": [1, 2]}));
        assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"a":[1,2]}"#);
        let back: StateData = serde_json::from_str(r#"{"a":[1,2]}"#).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<StateData>("[1]").is_err());
        let mut changed = d.clone();
        set(&mut changed, "b", json!(null));
        assert_eq!(
            serde_json::to_string(&changed).unwrap(),
            r#"{"a":[1,2],"b":null}"#
        );
    }

    /// `after`'s update from `before`, checked against comparing every key.
    fn update(before: &StateData, after: &StateData) -> StateUpdate {
        let found = after.update_text_from(before).unwrap();
        let every_key = StateUpdate::between(before.map(), after.map());
        assert_eq!(found, every_key.to_json_text().unwrap());
        serde_json::from_str(found.as_str()).unwrap()
    }

    #[test]
    fn the_update_of_changes_kept_beside_the_object_is_found_from_them_alone() {
        let before = data(json!({"keep": "x", "list": [1], "obj": {"a": 1}, "gone": 1, "same": 2}));
        let mut after = before.clone();
        set(&mut after, "list", json!([1, 2]));
        set(&mut after, "obj", json!({"a": 1, "b": 2}));
        set(&mut after, "new", json!("n"));
        after.remove("gone");
        set(&mut after, "same", json!(2));
        after.remove("never");
        set(&mut after, "new", json!("m"));
        let keys: Vec<&String> = after.overlay.as_ref().unwrap().changes.keys().collect();
        assert_eq!(keys, ["gone", "list", "new", "obj", "same"]);
        assert_eq!(
            serde_json::to_value(update(&before, &after)).unwrap(),
            json!({"set": {"new": "m"}, "append": {"list": [2]}, "merge": {"obj": {"b": 2}}, "remove": ["gone"]})
        );
    }

    #[test]
    fn data_left_unchanged_has_an_empty_update() {
        let before = data(json!({"a": 1}));
        assert!(update(&before, &before.clone()).is_empty());
        assert!(update(&StateData::empty(), &StateData::empty()).is_empty());
    }

    #[test]
    fn data_that_is_not_before_with_changes_is_compared_key_by_key() {
        let before = data(json!({"a": 1, "b": 1}));
        let other = data(json!({"a": 1, "b": 3}));
        let mut changed = other.clone();
        set(&mut changed, "a", json!(2));
        // Changes beside `other`, not `before`: its one changed key is not all that differs.
        assert_eq!(
            serde_json::to_value(update(&before, &changed)).unwrap(),
            json!({"set": {"a": 2, "b": 3}})
        );
        // And `before` with changes is not where its own changes came from.
        let mut first = before.clone();
        set(&mut first, "c", json!(1));
        let mut second = first.clone();
        set(&mut second, "d", json!(1));
        assert_eq!(
            serde_json::to_value(update(&first, &second)).unwrap(),
            json!({"set": {"d": 1}})
        );
    }
}
