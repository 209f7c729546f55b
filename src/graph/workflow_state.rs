//! The state a run carries from node to node, as the user's own type, and how a node's update
//! is applied to it.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::State;
use super::value::ValueError;
use crate::model::json_kind;

/// A workflow's state: a struct of the workflow's own data, which every node receives and
/// updates.
///
/// A node returns an [`Update`](WorkflowState::Update): the change it makes, which the engine
/// applies with [`apply`](WorkflowState::apply) before choosing the next edge. Derive it with
/// `#[derive(WorkflowState)]`, which generates the update type (`<Name>Update`, every field
/// optional, with a setter per field) and applies it field by field: a field is replaced by
/// default, extended with `#[state(append)]` (a `Vec`, or any collection) or
/// `#[state(merge)]` (a map), or handed to a function of yours with
/// `#[state(reduce = path)]` (`fn(&mut Field, Field)`).
///
/// ```
/// use std::collections::BTreeMap;
/// use serde::{Deserialize, Serialize};
/// use workflows::WorkflowState;
///
/// #[derive(Clone, Default, Serialize, Deserialize, WorkflowState)]
/// struct Chat {
///     topic: String,
///     #[state(append)]
///     messages: Vec<String>,
///     #[state(merge)]
///     votes: BTreeMap<String, u32>,
///     #[state(reduce = add)]
///     tokens: u64,
/// }
///
/// fn add(total: &mut u64, more: u64) {
///     *total += more;
/// }
///
/// let mut chat = Chat { topic: "rust".into(), tokens: 10, ..Chat::default() };
/// chat.apply(ChatUpdate::default().messages(vec!["hi".into()]).tokens(5));
/// chat.apply(ChatUpdate::default().messages(vec!["ho".into()]).votes([("yes".into(), 1)].into()));
/// assert_eq!(chat.messages, ["hi", "ho"]);
/// assert_eq!(chat.tokens, 15);
/// assert_eq!(chat.votes["yes"], 1);
/// assert_eq!(chat.topic, "rust");
/// ```
///
/// The JSON [`State`] is one implementation too (its update is the whole next state), for
/// workflows whose data is only known at run time.
///
/// Stored, the state is its serde serialization, which must be a JSON object: checkpoints
/// hold it whole, and stages hold what each node changed in it (see
/// [`StateUpdate`](crate::StateUpdate)).
pub trait WorkflowState: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What a node returns: the change it makes to the state.
    type Update: Send + 'static;

    /// Applies a node's update.
    fn apply(&mut self, update: Self::Update);

    /// The state's data as a JSON object. (Hidden: the JSON [`State`] stores its data map
    /// only; every other state its serde serialization.)
    #[doc(hidden)]
    fn __to_data(&self) -> Result<Map<String, Value>, ValueError> {
        match serde_json::to_value(self) {
            Ok(Value::Object(data)) => Ok(data),
            Ok(other) => Err(ValueError {
                container: "state",
                key: String::new(),
                reason: format!(
                    "{} serializes to {}, not a JSON object: a workflow's state must be a struct with named fields",
                    std::any::type_name::<Self>(),
                    json_kind(&other)
                ),
            }),
            Err(e) => Err(ValueError {
                container: "state",
                key: String::new(),
                reason: format!("cannot be stored as JSON: {e}"),
            }),
        }
    }

    /// The state from its stored data, with an error naming the field that does not fit.
    #[doc(hidden)]
    fn __from_data(data: Map<String, Value>) -> Result<Self, ValueError> {
        serde_path_to_error::deserialize(Value::Object(data)).map_err(|e| {
            let path = e.path().to_string();
            ValueError {
                container: "state",
                key: if path == "." { String::new() } else { path },
                reason: format!(
                    "as stored, does not fit {}: {}",
                    std::any::type_name::<Self>(),
                    e.inner()
                ),
            }
        })
    }

    /// Tells the state where its run is (the JSON [`State`] keeps it; other states do not).
    #[doc(hidden)]
    fn __set_position(&mut self, _position: &State) {}
}
