//! JSON workflows: a factory that builds the graph for each run from the run's params (a JSON
//! object read by key), with the [`Runtime`] at hand, and returns the initial JSON [`State`].

use std::sync::Arc;

use serde_json::Value;

use super::erased::{ErasedWorkflow, Instance};
use crate::error::{Error, Result};
use crate::graph::{BoxError, BoxFuture, GraphBuilder, State};
use crate::workflow::params::Params;
use crate::workflow::runtime::{Dependency, Runtime};

/// The function behind a JSON workflow: given a graph builder, the runtime and the run's
/// params, it adds the nodes and edges and returns the initial state.
///
/// `#[workflow]` writes this wrapper for you around an ordinary (async) function.
pub type Factory =
    for<'a> fn(&'a mut GraphBuilder, &'a Runtime, Params) -> BoxFuture<'a, Result<State, BoxError>>;

/// A workflow made by a [`Factory`].
pub(crate) struct JsonWorkflow(pub(crate) Factory);

/// `Error::Factory` for `workflow`'s factory failing with `source`.
pub(crate) fn factory_failed(workflow: &str, source: BoxError) -> Error {
    Error::Factory {
        workflow: workflow.to_owned(),
        source,
    }
}

impl ErasedWorkflow for JsonWorkflow {
    fn params_schema(&self) -> Option<Value> {
        None
    }

    fn check_params(&self, _params: &Params) -> Result<()> {
        Ok(())
    }

    fn dependency(&self) -> Option<Dependency> {
        None
    }

    fn check(&self, _workflow: &str) -> Result<()> {
        Ok(())
    }

    fn instantiate<'a>(
        &'a self,
        workflow: &'a str,
        runtime: &'a Runtime,
        params: Params,
    ) -> BoxFuture<'a, Result<Instance>> {
        Box::pin(async move {
            let mut builder = GraphBuilder::new();
            let state = (self.0)(&mut builder, runtime, params)
                .await
                .map_err(|source| factory_failed(workflow, source))?;
            let graph = builder.build().map_err(|source| Error::InvalidGraph {
                workflow: workflow.to_owned(),
                source,
            })?;
            Ok(Instance {
                graph: Arc::new(graph),
                initial: Box::new(state),
                deps: Arc::new(()),
            })
        })
    }
}
