//! Typed workflows: the state is the workflow's own [`WorkflowState`], the params its own
//! type (deserialised and checked against its JSON Schema before a run is written), and its
//! nodes reach a dependency of type `D` through their context, checked to be in the runtime
//! when the executor is built.
//!
//! A graph that does not depend on params is built once, when the workflow is registered
//! ([`BuiltOnce`]); one that does is built for each run from its params ([`PerRun`]).

use std::marker::PhantomData;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::erased::{ErasedWorkflow, Instance};
use super::json::factory_failed;
use crate::error::{Error, Result};
use crate::graph::erased::AnyDeps;
use crate::graph::{BoxError, BoxFuture, Graph, GraphBuilder, GraphError, WorkflowState};
use crate::workflow::params::Params;
use crate::workflow::runtime::{Dependency, Runtime};

/// The function behind a typed workflow whose graph depends on its params: given a graph
/// builder and the run's params, it adds the nodes and edges and returns the initial state.
pub type TypedFactory<S, D, P> =
    for<'a> fn(&'a mut GraphBuilder<S, D>, P) -> BoxFuture<'a, Result<S, BoxError>>;

/// The function that declares a graph built once: it adds the nodes and edges.
pub type GraphFn<S, D> = fn(&mut GraphBuilder<S, D>) -> Result<(), BoxError>;

/// Names the state and dependency types of a graph builder's type: how the code
/// `#[workflow]` generates finds them in a factory's signature.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "the first argument of a workflow factory is `&mut GraphBuilder<S, D>`, not `&mut {Self}`",
    label = "not a graph builder"
)]
pub trait BuilderTypes {
    /// The graph's state.
    type State;
    /// What its nodes reach through their context.
    type Deps;
}

impl<S: WorkflowState, D> BuilderTypes for GraphBuilder<S, D> {
    type State = S;
    type Deps = D;
}

/// What a typed workflow's params type must be.
pub(crate) trait ParamsType: DeserializeOwned + JsonSchema + Send + 'static {}
impl<P: DeserializeOwned + JsonSchema + Send + 'static> ParamsType for P {}

/// The JSON Schema of `P`.
fn schema_of<P: JsonSchema>() -> Value {
    schemars::schema_for!(P).to_value()
}

/// The dependency of type `D` in `runtime`, for `workflow`.
fn deps_of<D: Send + Sync + 'static>(workflow: &str, runtime: &Runtime) -> Result<AnyDeps> {
    match Dependency::of::<D>() {
        None => Ok(Arc::new(())),
        Some(dependency) => {
            runtime
                .get_dependency(dependency)
                .ok_or_else(|| Error::MissingDependency {
                    type_name: dependency.type_name,
                    workflow: Some(workflow.to_owned()),
                })
        }
    }
}

fn invalid_graph(workflow: &str, source: GraphError) -> Error {
    Error::InvalidGraph {
        workflow: workflow.to_owned(),
        source,
    }
}

/// A workflow whose graph is built for each run.
pub(crate) struct PerRun<S: WorkflowState, D, P> {
    factory: TypedFactory<S, D, P>,
}

impl<S: WorkflowState, D, P> PerRun<S, D, P> {
    pub(crate) fn new(factory: TypedFactory<S, D, P>) -> Self {
        PerRun { factory }
    }
}

impl<S, D, P> ErasedWorkflow for PerRun<S, D, P>
where
    S: WorkflowState,
    D: Send + Sync + 'static,
    P: ParamsType,
{
    fn params_schema(&self) -> Option<Value> {
        Some(schema_of::<P>())
    }

    fn check_params(&self, params: &Params) -> Result<()> {
        params.parse::<P>().map(drop)
    }

    fn dependency(&self) -> Option<Dependency> {
        Dependency::of::<D>()
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
            let deps = deps_of::<D>(workflow, runtime)?;
            let params = params.parse::<P>()?;
            let mut builder = GraphBuilder::<S, D>::default();
            let initial = (self.factory)(&mut builder, params)
                .await
                .map_err(|source| factory_failed(workflow, source))?;
            let graph = builder
                .build()
                .map_err(|source| invalid_graph(workflow, source))?;
            Ok(Instance {
                graph: Arc::new(graph),
                initial: Box::new(initial),
                deps,
            })
        })
    }
}

/// Why a graph built once did not build.
enum BuildFailure {
    Factory(String),
    Graph(GraphError),
}

/// A workflow whose graph is built once, when it is registered; each run's initial state
/// comes from its params.
pub(crate) struct BuiltOnce<S: WorkflowState, D, P> {
    graph: std::result::Result<Arc<Graph<S, D>>, BuildFailure>,
    initial: fn(P) -> S,
    params: PhantomData<fn(P)>,
}

impl<S: WorkflowState, D, P> BuiltOnce<S, D, P> {
    /// Builds the graph `declare` declares.
    pub(crate) fn new(declare: GraphFn<S, D>, initial: fn(P) -> S) -> Self {
        let mut builder = GraphBuilder::<S, D>::default();
        let graph = match declare(&mut builder) {
            Err(e) => Err(BuildFailure::Factory(e.to_string())),
            Ok(()) => builder.build().map(Arc::new).map_err(BuildFailure::Graph),
        };
        BuiltOnce {
            graph,
            initial,
            params: PhantomData,
        }
    }

    fn graph(&self, workflow: &str) -> Result<&Arc<Graph<S, D>>> {
        match &self.graph {
            Ok(graph) => Ok(graph),
            Err(BuildFailure::Factory(message)) => {
                Err(factory_failed(workflow, message.clone().into()))
            }
            Err(BuildFailure::Graph(e)) => Err(invalid_graph(workflow, e.clone())),
        }
    }
}

impl<S, D, P> ErasedWorkflow for BuiltOnce<S, D, P>
where
    S: WorkflowState,
    D: Send + Sync + 'static,
    P: ParamsType,
{
    fn params_schema(&self) -> Option<Value> {
        Some(schema_of::<P>())
    }

    fn check_params(&self, params: &Params) -> Result<()> {
        params.parse::<P>().map(drop)
    }

    fn dependency(&self) -> Option<Dependency> {
        Dependency::of::<D>()
    }

    fn check(&self, workflow: &str) -> Result<()> {
        self.graph(workflow).map(drop)
    }

    fn instantiate<'a>(
        &'a self,
        workflow: &'a str,
        runtime: &'a Runtime,
        params: Params,
    ) -> BoxFuture<'a, Result<Instance>> {
        Box::pin(async move {
            let graph = Arc::clone(self.graph(workflow)?);
            let deps = deps_of::<D>(workflow, runtime)?;
            let initial = (self.initial)(params.parse::<P>()?);
            Ok(Instance {
                graph,
                initial: Box::new(initial),
                deps,
            })
        })
    }
}
