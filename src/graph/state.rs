//! The state a run carries from node to node, and what a checkpoint stores.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::WorkflowState;
use super::state_data::StateData;
use super::value::{ValueError, read_value, require_value};
use crate::model::{InvalidValue, JsonText, RunId, write_object, write_timestamp};

/// A run's state as a JSON object of the workflow's data, plus where the run is: the
/// [`WorkflowState`] of workflows whose data is only known at run time, and what a checkpoint
/// stores (for every workflow: a typed state's data is its serialization).
///
/// Nodes of a JSON workflow take the state by value and return the next one. The whole value
/// serialises into a checkpoint, so a run can continue from it after a failure, a cancel or a
/// crash. Cloning a state is cheap: the clones share its data until one of them changes it.
///
/// ```
/// use workflows::State;
/// let mut state = State::new().with("count", 1);
/// state.set("words", vec!["a", "b"]);
/// assert_eq!(state.require::<u32>("count").unwrap(), 1);
/// assert_eq!(state.get::<Vec<String>>("words").unwrap().unwrap(), ["a", "b"]);
/// assert!(state.get::<u32>("words").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    data: StateData,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<RunId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint_node: Option<String>,
    timestamp: DateTime<Utc>,
    #[serde(default)]
    iteration: u32,
    #[serde(default)]
    steps: u32,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    /// An empty state.
    pub fn new() -> Self {
        State {
            data: StateData::default(),
            run_id: None,
            checkpoint_node: None,
            timestamp: Utc::now(),
            iteration: 0,
            steps: 0,
        }
    }

    /// A state holding `data`, which must be a JSON object.
    pub fn from_data(data: Value) -> Result<Self, InvalidValue> {
        match data {
            Value::Object(data) => Ok(State::from_map(data)),
            other => Err(InvalidValue::new(
                "state",
                &other.to_string(),
                "must be a JSON object",
            )),
        }
    }

    /// A state holding `data`.
    pub(crate) fn from_map(data: Map<String, Value>) -> Self {
        State::from_shared(StateData::new(data))
    }

    /// A state holding `data`, shared with whoever else holds it.
    pub(crate) fn from_shared(data: StateData) -> Self {
        State {
            data,
            ..State::new()
        }
    }

    /// The value of `key` converted to `T`; `None` if absent or `null`, an error naming the
    /// key if it holds something else.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ValueError> {
        read_value("state", key, self.data.get(key))
    }

    /// The value of `key` converted to `T`; an error naming the key if it is absent.
    pub fn require<T: DeserializeOwned>(&self, key: &str) -> Result<T, ValueError> {
        require_value("state", key, self.data.get(key))
    }

    /// The raw JSON value of `key`.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.data.get(key)
    }

    /// Whether `key` is present (even if `null`).
    pub fn contains(&self, key: &str) -> bool {
        self.data.get(key).is_some()
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.data.insert(key.into(), value.into());
    }

    /// Sets `key` to `value` serialised to JSON; fails only for values JSON cannot hold
    /// (such as maps with non-string keys).
    pub fn set_serialized<T: Serialize + ?Sized>(
        &mut self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<(), ValueError> {
        let key = key.into();
        let value = serde_json::to_value(value).map_err(|e| ValueError {
            container: "state",
            key: key.clone(),
            reason: format!("cannot be stored as JSON: {e}"),
        })?;
        self.data.insert(key, value);
        Ok(())
    }

    /// This state with `key` set to `value`.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set(key, value);
        self
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.data.remove(key)
    }

    /// The workflow's data.
    pub fn data(&self) -> &Map<String, Value> {
        self.data.map()
    }

    /// The run this state belongs to, once it runs.
    pub fn run_id(&self) -> Option<RunId> {
        self.run_id
    }

    /// The node after which this state was last checkpointed.
    pub fn checkpoint_node(&self) -> Option<&str> {
        self.checkpoint_node.as_deref()
    }

    /// When this state was last changed by the engine.
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.timestamp
    }

    /// The step number of the node that produced this state (0 before any node ran).
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// How many nodes have completed on the run's path so far. Attempts that failed or were
    /// interrupted (and executed again after a resume) do not count: this, not the step
    /// number, is what `max_iterations` bounds.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Counts one more completed node on the path.
    pub(crate) fn count_step(&mut self) {
        self.steps = self.steps.saturating_add(1);
    }

    /// Replaces the workflow's data, returning what it was.
    pub(crate) fn replace_data(&mut self, data: StateData) -> StateData {
        std::mem::replace(&mut self.data, data)
    }

    /// Applies the changes its data keeps beside it (see [`StateData::flatten`]).
    pub(crate) fn flatten_data(&mut self) {
        self.data.flatten();
    }

    /// The data, shared with whoever else holds it (not copied).
    pub(crate) fn shared_data(&self) -> &StateData {
        &self.data
    }

    /// The state as JSON, as `serde_json` writes it (what a checkpoint stores), written
    /// quicker (see [`JsonText`]), into a buffer of `capacity` bytes to start with (at least
    /// 256).
    pub(crate) fn to_json_text(&self, capacity: usize) -> serde_json::Result<JsonText> {
        fn field<T: Serialize>(
            out: &mut Vec<u8>,
            name: &[u8],
            value: &T,
        ) -> serde_json::Result<()> {
            out.extend_from_slice(name);
            serde_json::to_writer(&mut *out, value)
        }
        // The fields in the order, and with the omissions, of the derived `Serialize`.
        let mut out = Vec::with_capacity(capacity.max(256));
        out.extend_from_slice(b"{\"data\":");
        write_object(&mut out, self.data.map())?;
        if let Some(run_id) = &self.run_id {
            field(&mut out, b",\"run_id\":", run_id)?;
        }
        if let Some(node) = &self.checkpoint_node {
            field(&mut out, b",\"checkpoint_node\":", node)?;
        }
        out.extend_from_slice(b",\"timestamp\":");
        write_timestamp(&mut out, &self.timestamp)?;
        field(&mut out, b",\"iteration\":", &self.iteration)?;
        field(&mut out, b",\"steps\":", &self.steps)?;
        out.push(b'}');
        Ok(JsonText::written(out))
    }

    /// The workflow's data as one JSON value: what stage snapshots record.
    pub fn data_value(&self) -> Value {
        Value::Object(self.data.map().clone())
    }

    /// Ties the state to its run.
    pub(crate) fn set_run_id(&mut self, run_id: RunId) {
        self.run_id = Some(run_id);
    }

    /// Marks the state as produced by `node` at step `iteration`, now: what a checkpoint
    /// records. The engine does this after every node. (Hidden: for the library's own tests
    /// and benches, which write checkpoints without running nodes.)
    #[doc(hidden)]
    pub fn set_checkpoint(&mut self, node: &str, iteration: u32) {
        match &mut self.checkpoint_node {
            // Into the last node's name: no allocation at every step.
            Some(name) => node.clone_into(name),
            None => self.checkpoint_node = Some(node.to_owned()),
        }
        self.iteration = iteration;
        self.timestamp = Utc::now();
    }
}

/// The JSON state's update is the whole next state: a node returns the state it was given,
/// changed.
impl WorkflowState for State {
    type Update = State;

    fn apply(&mut self, update: State) {
        *self = update;
    }

    fn __to_data(&self) -> Result<Map<String, Value>, ValueError> {
        Ok(self.data.map().clone())
    }

    fn __from_data(data: Map<String, Value>) -> Result<Self, ValueError> {
        Ok(State::from_map(data))
    }

    fn __set_position(&mut self, position: &State) {
        self.run_id = position.run_id;
        self.checkpoint_node.clone_from(&position.checkpoint_node);
        self.timestamp = position.timestamp;
        self.iteration = position.iteration;
        self.steps = position.steps;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_state_s_json_text_is_what_serde_json_writes_for_it() {
        let fresh = State::new();
        let mut placed = State::new()
            .with("text", "words \"quoted\"\n and ✓")
            .with("n", 1.5)
            .with("list", json!([1, {"a": null}]));
        placed.set_run_id(RunId::from_uuid(uuid::Uuid::new_v4()));
        placed.set_checkpoint("node \"b\"", 7);
        placed.count_step();
        for state in [fresh, placed] {
            assert_eq!(
                state.to_json_text(0).unwrap().as_str(),
                serde_json::to_string(&state).unwrap()
            );
        }
    }
}
