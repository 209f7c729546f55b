//! Graphs and states with their types erased: what the engine executes, whatever a workflow's
//! state and dependency types are. Each workflow's types are checked where its graph is
//! declared; here they are only carried.

use std::any::{Any, type_name};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::node_signals::NodeSignals;
use super::routing::{Route, route};
use super::value::ValueError;
use super::{
    BoxError, BoxFuture, Graph, NodeContext, NodePolicy, SnapshotPolicy, State, StateData,
    WorkflowState,
};
use crate::model::RunId;

/// A node's update, its type erased (an `S::Update`).
pub(crate) type AnyUpdate = Box<dyn Any + Send>;

/// Dependencies, their type erased (an `Arc<D>`).
pub(crate) type AnyDeps = Arc<dyn Any + Send + Sync>;

/// A run's state, its type erased.
pub(crate) trait DynState: Send + Sync {
    /// The state, to be downcast to its type.
    fn as_any(&self) -> &dyn Any;
    /// Applies a node's update, which must be of this state's update type.
    fn apply_update(&mut self, update: AnyUpdate) -> Result<(), BoxError>;
    /// Its data as a JSON object: the JSON [`State`]'s own, shared; every other state's
    /// serialization.
    fn to_data(&self) -> Result<StateData, ValueError>;
    /// Tells it where its run is.
    fn set_position(&mut self, position: &State);
    /// Applies the changes its data keeps beside it, if it is the JSON [`State`] (see
    /// [`StateData::flatten`]); every other state's data is made whole by
    /// [`to_data`](DynState::to_data).
    fn flatten_data(&mut self);
}

impl<S: WorkflowState> DynState for S {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn apply_update(&mut self, update: AnyUpdate) -> Result<(), BoxError> {
        let update = update
            .downcast::<S::Update>()
            .map_err(|_| mismatch::<S>())?;
        self.apply(*update);
        Ok(())
    }

    fn to_data(&self) -> Result<StateData, ValueError> {
        match (self as &dyn Any).downcast_ref::<State>() {
            Some(state) => Ok(state.shared_data().clone()),
            None => self.__to_data().map(StateData::new),
        }
    }

    fn set_position(&mut self, position: &State) {
        self.__set_position(position);
    }

    fn flatten_data(&mut self) {
        if let Some(state) = (self as &mut dyn Any).downcast_mut::<State>() {
            state.flatten_data();
        }
    }
}

/// The error of a state of the wrong type reaching a graph: a bug in this library, since each
/// graph makes its own states.
fn mismatch<S>() -> BoxError {
    format!(
        "internal error: a value that is not a {} (or its update) reached its graph",
        type_name::<S>()
    )
    .into()
}

/// What the engine tells a node about its execution.
pub(crate) struct NodeCall<'a> {
    pub(crate) run_id: RunId,
    pub(crate) node: &'a str,
    pub(crate) iteration: u32,
    /// Which attempt at this step, from 1.
    pub(crate) attempt: u32,
    pub(crate) cancel: CancellationToken,
    /// What the node and the engine tell each other.
    pub(crate) signals: Arc<NodeSignals>,
    pub(crate) deps: &'a AnyDeps,
}

/// A validated graph, its types erased.
pub(crate) trait AnyGraph: Send + Sync {
    /// Where a run starts.
    fn entry_point(&self) -> &str;
    /// The factory's bound on a run's completed nodes, if it set one.
    fn max_iterations(&self) -> Option<u32>;
    /// What stages store.
    fn snapshots(&self) -> SnapshotPolicy;
    /// How `node` is tried (the graph's default policy for a node without one).
    fn policy(&self, node: &str) -> &NodePolicy;
    /// The longest a run may take, from its start, if the factory bounded it.
    fn run_timeout(&self) -> Option<Duration>;
    /// Executes `call.node` on a copy of `state`; `None` if there is no such node.
    fn run_node(
        &self,
        state: &dyn DynState,
        call: NodeCall<'_>,
    ) -> Option<BoxFuture<'static, Result<AnyUpdate, BoxError>>>;
    /// The edge taken after `node` produced `state` (see [`route`]).
    fn route(&self, node: &str, state: &dyn DynState, steps: u32, max_iterations: u32) -> Route;
    /// A state of this graph's type from its stored data.
    fn state_from_data(&self, data: Map<String, Value>) -> Result<Box<dyn DynState>, ValueError>;
}

impl<S: WorkflowState, D: Send + Sync + 'static> AnyGraph for Graph<S, D> {
    fn entry_point(&self) -> &str {
        Graph::entry_point(self)
    }

    fn max_iterations(&self) -> Option<u32> {
        Graph::max_iterations(self)
    }

    fn snapshots(&self) -> SnapshotPolicy {
        Graph::snapshots(self)
    }

    fn policy(&self, node: &str) -> &NodePolicy {
        Graph::policy(self, node)
    }

    fn run_timeout(&self) -> Option<Duration> {
        Graph::run_timeout(self)
    }

    fn run_node(
        &self,
        state: &dyn DynState,
        call: NodeCall<'_>,
    ) -> Option<BoxFuture<'static, Result<AnyUpdate, BoxError>>> {
        let node = Arc::clone(self.node(call.node)?);
        let typed = (
            state.as_any().downcast_ref::<S>().cloned(),
            Arc::clone(call.deps).downcast::<D>().ok(),
        );
        let ctx = |deps| {
            NodeContext::new(
                call.run_id,
                (call.node, call.iteration, call.attempt),
                call.cancel,
                call.signals,
                deps,
            )
        };
        Some(match typed {
            (Some(state), Some(deps)) => {
                let running = node(state, ctx(deps));
                Box::pin(async move { Ok(Box::new(running.await?) as AnyUpdate) })
            }
            _ => Box::pin(async { Err(mismatch::<S>()) }),
        })
    }

    fn route(&self, node: &str, state: &dyn DynState, steps: u32, max_iterations: u32) -> Route {
        match state.as_any().downcast_ref::<S>() {
            Some(state) => route(self, node, state, steps, max_iterations),
            None => Route::failure(mismatch::<S>().to_string()),
        }
    }

    fn state_from_data(&self, data: Map<String, Value>) -> Result<Box<dyn DynState>, ValueError> {
        Ok(Box::new(S::__from_data(data)?))
    }
}
