//! A registered workflow, its types erased: what the registry holds and the executor runs,
//! whether the workflow is typed or JSON.

use serde_json::Value;

use crate::error::Result;
use crate::graph::BoxFuture;
use crate::graph::erased::{AnyDeps, AnyGraph, DynState};
use crate::workflow::params::Params;
use crate::workflow::runtime::{Dependency, Runtime};

use std::sync::Arc;

/// A run's graph, initial state and dependencies, ready for the engine.
pub(crate) struct Instance {
    pub(crate) graph: Arc<dyn AnyGraph>,
    pub(crate) initial: Box<dyn DynState>,
    pub(crate) deps: AnyDeps,
}

/// A workflow, whatever its state, params and dependency types.
pub(crate) trait ErasedWorkflow: Send + Sync {
    /// The JSON Schema of its params; `None` for any object (a JSON workflow's).
    fn params_schema(&self) -> Option<Value>;

    /// Whether `params` fit its params type: [`Error::InvalidInput`](crate::Error) naming the
    /// field if not. Checked before a run is written.
    fn check_params(&self, params: &Params) -> Result<()>;

    /// The type of dependency its nodes reach, if any.
    fn dependency(&self) -> Option<Dependency>;

    /// What can be checked before any run: a graph built once must have built.
    fn check(&self, workflow: &str) -> Result<()>;

    /// The graph, initial state and dependencies of a run with `params`.
    fn instantiate<'a>(
        &'a self,
        workflow: &'a str,
        runtime: &'a Runtime,
        params: Params,
    ) -> BoxFuture<'a, Result<Instance>>;
}
