//! What a node changed in a run's state, as `stages.state_update` stores it: the difference
//! between the state's data before and after the node, key by key.
//!
//! A stage stores its node's update instead of the whole state (which a growing state, a
//! conversation say, would make cost O(steps²) in `stages`); the state at any step is the
//! run's initial state with the updates along its path applied in order
//! ([`repository::state_at`](crate::repository::state_at)). The format depends on no Rust
//! type, so any reader can replay it:
//!
//! ```json
//! {"set": {"summary": "..."}, "append": {"messages": [{"role": "user"}]},
//!  "merge": {"scores": {"b": 2}}, "remove": ["draft"]}
//! ```
//!
//! `set` replaces a key's value (or adds the key), `append` extends an array with the items
//! given, `merge` sets the entries given in an object (keeping the others), `remove` deletes
//! keys. Sections with nothing in them are left out, so a node that changed nothing stores
//! `{}`. A snapshot (`input_snapshot`, `output_snapshot`) is always a whole state; an update
//! is only ever in `state_update`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::InvalidValue;
use super::json_text::{JsonText, write_array, write_object, write_str, write_value};

/// The change a node made to a state's data, key by key.
///
/// ```
/// use serde_json::json;
/// use workflows::StateUpdate;
///
/// let before = json!({"messages": ["hi"], "scores": {"a": 1}, "draft": "x", "n": 1});
/// let after = json!({"messages": ["hi", "hello"], "scores": {"a": 1, "b": 2}, "n": 2});
/// let update = StateUpdate::between(before.as_object().unwrap(), after.as_object().unwrap());
/// assert_eq!(
///     serde_json::to_value(&update).unwrap(),
///     json!({"set": {"n": 2}, "append": {"messages": ["hello"]}, "merge": {"scores": {"b": 2}}, "remove": ["draft"]})
/// );
///
/// let mut state = before.as_object().unwrap().clone();
/// update.apply_to(&mut state).unwrap();
/// assert_eq!(Value::Object(state), after);
/// # use serde_json::Value;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateUpdate {
    /// Keys given a new value (or added).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub set: Map<String, Value>,
    /// Arrays extended with these items.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub append: Map<String, Value>,
    /// Objects given these entries, the others kept.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub merge: Map<String, Value>,
    /// Keys removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl StateUpdate {
    /// The update that turns `before` into `after`: the smallest of `set`, `append` and
    /// `merge` for each key that changed, and `remove` for each key that went.
    pub fn between(before: &Map<String, Value>, after: &Map<String, Value>) -> Self {
        let mut update = StateUpdate::default();
        for (key, new) in after {
            update.note(key, before.get(key), new);
        }
        update.remove = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .cloned()
            .collect();
        update
    }

    /// Records how `key` went from `old` (none: it was added) to `new`.
    fn note(&mut self, key: &str, old: Option<&Value>, new: &Value) {
        match change(old, new) {
            Change::Same => {}
            Change::Append(items) => {
                self.append
                    .insert(key.to_owned(), Value::Array(items.to_vec()));
            }
            Change::Merge(entries) => {
                let entries = entries.into_iter().map(|(k, v)| (k.clone(), v.clone()));
                self.merge
                    .insert(key.to_owned(), Value::Object(entries.collect()));
            }
            Change::Set(value) => {
                self.set.insert(key.to_owned(), value.clone());
            }
        }
    }

    /// The JSON text of the update that turns `before` into `before` with `changes` (each
    /// changed key's new value, or `None` if it was removed): what
    /// [`between`](Self::between)'s update [writes](Self::to_json_text), from those keys alone
    /// and without copying their values into an update first.
    pub(crate) fn text_of_changes(
        before: &Map<String, Value>,
        changes: &std::collections::BTreeMap<String, Option<Value>>,
    ) -> serde_json::Result<JsonText> {
        let mut noted = Vec::with_capacity(changes.len());
        for (key, new) in changes {
            let old = before.get(key);
            match new {
                Some(new) => noted.push((key, Some(change(old, new)))),
                None if old.is_some() => noted.push((key, None)),
                None => {}
            }
        }
        // The sections in the order, and with the omissions, of the derived `Serialize`;
        // each by key, as its map would be.
        let mut out = Vec::with_capacity(128);
        let mut separator = b'{';
        type Section = fn(&Change<'_>) -> bool;
        let sections: [(&[u8], Section); 3] = [
            (b"\"set\":", |c| matches!(c, Change::Set(_))),
            (b"\"append\":", |c| matches!(c, Change::Append(_))),
            (b"\"merge\":", |c| matches!(c, Change::Merge(_))),
        ];
        for (name, of_section) in sections {
            let mut opening = b'{';
            for (key, change) in &noted {
                let Some(change) = change.as_ref().filter(|c| of_section(c)) else {
                    continue;
                };
                if opening == b'{' {
                    out.push(std::mem::replace(&mut separator, b','));
                    out.extend_from_slice(name);
                }
                out.push(std::mem::replace(&mut opening, b','));
                write_str(&mut out, key)?;
                out.push(b':');
                match change {
                    Change::Set(value) => write_value(&mut out, value)?,
                    Change::Append(items) => write_array(&mut out, items)?,
                    Change::Merge(entries) => {
                        let mut inner = b'{';
                        for (k, v) in entries {
                            out.push(std::mem::replace(&mut inner, b','));
                            write_str(&mut out, k)?;
                            out.push(b':');
                            write_value(&mut out, v)?;
                        }
                        if inner == b'{' {
                            out.push(b'{');
                        }
                        out.push(b'}');
                    }
                    Change::Same => {}
                }
            }
            if opening == b',' {
                out.push(b'}');
            }
        }
        let mut opening = b'[';
        for (key, _) in noted.iter().filter(|(_, change)| change.is_none()) {
            if opening == b'[' {
                out.push(std::mem::replace(&mut separator, b','));
                out.extend_from_slice(b"\"remove\":");
            }
            out.push(std::mem::replace(&mut opening, b','));
            write_str(&mut out, key)?;
        }
        if opening == b',' {
            out.push(b']');
        }
        if separator == b'{' {
            out.push(b'{');
        }
        out.push(b'}');
        Ok(JsonText::written(out))
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
            && self.append.is_empty()
            && self.merge.is_empty()
            && self.remove.is_empty()
    }

    /// Applies it to `state`. An `append` to a key that is not an array, or a `merge` into
    /// one that is not an object, is an error naming the key (the update was not made from
    /// this state), and `state` is left as it was.
    pub fn apply_to(&self, state: &mut Map<String, Value>) -> Result<(), InvalidValue> {
        let misfit = |key: &str, section: &str, expected: &str| {
            InvalidValue::new(
                "state update",
                key,
                format_args!(
                    "{section}s to key {key:?}, which holds no {expected} in this state: the update was made from another state"
                ),
            )
        };
        for (key, items) in &self.append {
            if !matches!(
                (state.get(key), items),
                (Some(Value::Array(_)), Value::Array(_))
            ) {
                return Err(misfit(key, "append", "array"));
            }
        }
        for (key, entries) in &self.merge {
            if !matches!(
                (state.get(key), entries),
                (Some(Value::Object(_)), Value::Object(_))
            ) {
                return Err(misfit(key, "merge", "object"));
            }
        }
        for key in &self.remove {
            state.remove(key);
        }
        for (key, value) in &self.set {
            state.insert(key.clone(), value.clone());
        }
        for (key, items) in &self.append {
            if let (Some(Value::Array(target)), Value::Array(items)) = (state.get_mut(key), items) {
                target.extend(items.iter().cloned());
            }
        }
        for (key, entries) in &self.merge {
            if let (Some(Value::Object(target)), Value::Object(entries)) =
                (state.get_mut(key), entries)
            {
                target.extend(entries.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        Ok(())
    }

    /// The update as JSON, as `serde_json` writes it (what `stages.state_update` stores),
    /// written quicker: see [`JsonText`].
    pub(crate) fn to_json_text(&self) -> serde_json::Result<JsonText> {
        // The sections in the order, and with the omissions, of the derived `Serialize`.
        let mut out = Vec::with_capacity(128);
        let mut separator = b'{';
        let maps = [
            (&b"\"set\":"[..], &self.set),
            (b"\"append\":", &self.append),
            (b"\"merge\":", &self.merge),
        ];
        for (name, map) in maps {
            if !map.is_empty() {
                out.push(std::mem::replace(&mut separator, b','));
                out.extend_from_slice(name);
                write_object(&mut out, map)?;
            }
        }
        if !self.remove.is_empty() {
            out.push(std::mem::replace(&mut separator, b','));
            out.extend_from_slice(b"\"remove\":");
            serde_json::to_writer(&mut out, &self.remove)?;
        }
        if separator == b'{' {
            out.push(b'{');
        }
        out.push(b'}');
        Ok(JsonText::written(out))
    }
}

/// How a key's value went from one to another, as an update stores it.
enum Change<'a> {
    /// It did not change.
    Same,
    /// An array grew by these items at its end.
    Append(&'a [Value]),
    /// An object kept its keys and got these entries (new or changed).
    Merge(Vec<(&'a String, &'a Value)>),
    /// Anything else: the new value, whole.
    Set(&'a Value),
}

/// How a key went from `old` (none: it was added) to `new`: the smallest of the three.
fn change<'a>(old: Option<&'a Value>, new: &'a Value) -> Change<'a> {
    match (old, new) {
        (Some(old), new) if old == new => Change::Same,
        (Some(Value::Array(old)), Value::Array(new))
            if new.len() > old.len() && new[..old.len()] == old[..] =>
        {
            Change::Append(&new[old.len()..])
        }
        (Some(Value::Object(old)), Value::Object(new))
            if old.keys().all(|k| new.contains_key(k)) =>
        {
            Change::Merge(
                new.iter()
                    .filter(|(k, v)| old.get(*k) != Some(*v))
                    .collect(),
            )
        }
        _ => Change::Set(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn round_trip(before: Value, after: Value) -> Value {
        let (before, after) = (object(before), object(after));
        let update = StateUpdate::between(&before, &after);
        let mut replayed = before.clone();
        update.apply_to(&mut replayed).unwrap();
        assert_eq!(replayed, after);
        serde_json::to_value(&update).unwrap()
    }

    #[test]
    fn an_unchanged_state_stores_an_empty_update() {
        assert_eq!(
            round_trip(
                json!({"a": [1], "b": {"c": 1}}),
                json!({"a": [1], "b": {"c": 1}})
            ),
            json!({})
        );
    }

    #[test]
    fn a_grown_array_stores_only_its_new_items() {
        assert_eq!(
            round_trip(json!({"log": [1, 2]}), json!({"log": [1, 2, 3, 4]})),
            json!({"append": {"log": [3, 4]}})
        );
    }

    #[test]
    fn an_array_changed_anywhere_else_is_set_whole() {
        assert_eq!(
            round_trip(json!({"log": [1, 2]}), json!({"log": [2, 2, 3]})),
            json!({"set": {"log": [2, 2, 3]}})
        );
        assert_eq!(
            round_trip(json!({"log": [1, 2]}), json!({"log": [1]})),
            json!({"set": {"log": [1]}})
        );
    }

    #[test]
    fn an_object_keeping_its_keys_stores_only_the_changed_entries() {
        assert_eq!(
            round_trip(
                json!({"m": {"a": 1, "b": 2}}),
                json!({"m": {"a": 1, "b": 3, "c": 4}})
            ),
            json!({"merge": {"m": {"b": 3, "c": 4}}})
        );
        assert_eq!(
            round_trip(json!({"m": {"a": 1, "b": 2}}), json!({"m": {"b": 2}})),
            json!({"set": {"m": {"b": 2}}})
        );
    }

    #[test]
    fn new_keys_are_set_and_gone_keys_removed() {
        assert_eq!(
            round_trip(json!({"a": 1, "b": 2}), json!({"b": 2, "c": null})),
            json!({"set": {"c": null}, "remove": ["a"]})
        );
    }

    #[test]
    fn a_value_changing_kind_is_set() {
        assert_eq!(
            round_trip(
                json!({"a": [1], "b": {"x": 1}}),
                json!({"a": {"x": 1}, "b": [1]})
            ),
            json!({"set": {"a": {"x": 1}, "b": [1]}})
        );
    }

    #[test]
    fn an_update_that_does_not_fit_is_refused_and_changes_nothing() {
        let update: StateUpdate =
            serde_json::from_value(json!({"set": {"x": 1}, "append": {"log": [1]}})).unwrap();
        let mut state = object(json!({"log": "text"}));
        let err = update.apply_to(&mut state).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid state update "log": appends to key "log", which holds no array in this state: the update was made from another state"#
        );
        assert_eq!(Value::Object(state), json!({"log": "text"}));
    }

    #[test]
    fn unknown_sections_are_refused() {
        assert!(serde_json::from_value::<StateUpdate>(json!({"replace": {}})).is_err());
    }

    #[test]
    fn an_update_s_json_text_is_what_serde_json_writes_for_it() {
        let before = json!({"messages": ["hi"], "scores": {"a": 1}, "draft": "x", "n": 1});
        let after = json!({"messages": ["hi", "a \"quote\""], "scores": {"a": 1, "b": 2}, "n": 2});
        let every = StateUpdate::between(before.as_object().unwrap(), after.as_object().unwrap());
        let only_removed = StateUpdate::between(before.as_object().unwrap(), &Map::new());
        for update in [every, only_removed, StateUpdate::default()] {
            assert_eq!(
                update.to_json_text().unwrap().as_str(),
                serde_json::to_string(&update).unwrap()
            );
        }
    }

    #[test]
    fn the_text_of_changes_is_the_text_of_their_update() {
        let before = object(json!({
            "list": [1, {"a": 1}], "obj": {"a": 1, "b": {"c": 2}}, "same": "s",
            "gone": null, "kind": [1], "quoted \"key\"": 1, "grown": []
        }));
        let change = |key: &str, value: Option<Value>| (key.to_owned(), value);
        let cases: Vec<std::collections::BTreeMap<String, Option<Value>>> = vec![
            Default::default(),
            [change("same", Some(json!("s")))].into(),
            [change("never there", None)].into(),
            [change("gone", None), change("same", None)].into(),
            [
                change("list", Some(json!([1, {"a": 1}, [2], "✓"]))),
                change("grown", Some(json!([null]))),
                change("obj", Some(json!({"a": 1, "b": {"c": 3}, "d": "new"}))),
                change("kind", Some(json!({"now": "an object"}))),
                change("quoted \"key\"", Some(json!("line\nbreak"))),
                change("new", Some(json!(1.5))),
                change("gone", None),
            ]
            .into(),
        ];
        for changes in cases {
            let mut after = before.clone();
            for (key, change) in &changes {
                match change {
                    Some(value) => after.insert(key.clone(), value.clone()),
                    None => after.remove(key),
                };
            }
            let update = StateUpdate::between(&before, &after);
            assert_eq!(
                StateUpdate::text_of_changes(&before, &changes).unwrap(),
                update.to_json_text().unwrap(),
                "{changes:?}"
            );
        }
    }
}
