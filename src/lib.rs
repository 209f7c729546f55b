#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Lets the `#[workflow]` macro's `::workflows::...` paths resolve inside this crate too.
#[allow(unused_extern_crates)]
extern crate self as workflows;

mod config;
mod error;
mod exec;
pub mod graph;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod model;
mod query;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;
mod workflow;

/// Connections and migrations: the pool the library's statements run on, and the embedded
/// migrations with the [`Migrator`](db::Migrator) that applies them under a lock, adopts the
/// Go service's tables and repairs what its history left in them.
pub mod db {
    pub use crate::model::{Defect, DefectKind, RepairPlan, Repaired};
    pub use crate::store::db::{DbConfig, Pool, PooledConnection};
    pub use crate::store::migrations::{
        MIGRATIONS, MigrationStatus, Migrator, run_pending_migrations,
    };
}

/// The status changes anyone may make, wherever the run executes: cancel a pending or running
/// run, delete a finished one. Each is one statement that locks the run's row (the other
/// changes belong to the executor holding the run's lease).
pub mod lifecycle {
    pub use crate::store::runs::{cancel_run, delete_run};
}

pub use config::Config;
pub use db::{DbConfig, Pool, PooledConnection};
pub use error::{Error, ErrorKind, Result};
pub use exec::config::ExecutorConfig;
pub use exec::events::{self, Event};
pub use exec::execution::Execution;
pub use exec::executor::{Executor, ExecutorBuilder, ShutdownReport};
pub use exec::in_memory::{MemoryRun, MemoryStep, run_in_memory};
pub use exec::observer::{self, Observer, Observers, TracingObserver};
pub use graph::{
    BoxError, BoxFuture, Graph, GraphBuilder, GraphError, NodeContext, NodeError, NodeErrorKind,
    NodeHandle, NodePolicy, Predicate, RetryPolicy, SnapshotPolicy, State, ValueError,
    WorkflowState,
};
pub use model::{
    Decision, Interrupt, InvalidValue, RawJson, Run, RunId, RunStatus, Stage, StageStatus, StateAt,
    StateUpdate, WorkflowInfo,
};
pub use query::page::{PageConfig, PageRequest, PageResult, SortField};
pub use query::query_string::QueryParams;
pub use query::repository;
pub use query::run_cursor::{KeysetPage, RunCursor};
pub use query::run_filters::{RunFilters, RunSortField};
pub use store::checkpoints::{CheckpointInfo, PgCheckpointStore};
pub use store::retention::{self, PruneReport, Retention};
pub use store::schema;
pub use worker::{Worker, WorkerConfig};
pub use workflow::json::Factory;
pub use workflow::params::{NoParams, Params};
pub use workflow::registry::{Registry, WorkflowDef};
pub use workflow::runtime::{Runtime, RuntimeBuilder};
pub use workflow::typed::{GraphFn, TypedFactory};

/// Registers a workflow factory at compile time.
///
/// A typed workflow whose graph is built once, when the registry is built, with its params
/// type named in the attribute (each run starts from `S::from(params)`):
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use workflows::{BoxError, GraphBuilder, NodeContext, WorkflowState};
///
/// #[derive(Deserialize, schemars::JsonSchema)]
/// struct GreetParams { name: String }
///
/// #[derive(Clone, Serialize, Deserialize, WorkflowState)]
/// struct Greeting { name: String, greeting: Option<String> }
///
/// impl From<GreetParams> for Greeting {
///     fn from(p: GreetParams) -> Self { Greeting { name: p.name, greeting: None } }
/// }
///
/// async fn hello(state: Greeting, _: NodeContext) -> Result<GreetingUpdate, BoxError> {
///     Ok(GreetingUpdate::default().greeting(Some(format!("hello, {}", state.name))))
/// }
///
/// #[workflows::workflow(name = "greet", description = "Says hello to `name`", params = GreetParams)]
/// fn greet(graph: &mut GraphBuilder<Greeting>) -> Result<(), BoxError> {
///     let hello = graph.node("hello", hello);
///     graph.start_at(hello).end_at(hello);
///     Ok(())
/// }
///
/// let registry = workflows::Registry::from_compiled().unwrap();
/// let greet = registry.get("greet").unwrap();
/// assert_eq!(greet.description(), "Says hello to `name`");
/// assert_eq!(greet.params_schema().unwrap()["required"], serde_json::json!(["name"]));
/// ```
///
/// The function takes one of three shapes (see the crate's documentation): a plain `fn(graph:
/// &mut GraphBuilder<S, D>) -> Result<(), E>` (built once; `params = P` names the params,
/// without it the workflow takes none and starts from `S::default()`), `(async) fn(graph:
/// &mut GraphBuilder<S, D>, params: P) -> Result<S, E>` (built for each run from its params)
/// or `(async) fn(graph: &mut GraphBuilder, runtime: &Runtime, params: Params) ->
/// Result<State, E>` (a JSON workflow). Its error type is anything that converts into
/// [`BoxError`]. The attribute checks at compile time that `name` is a well-formed workflow
/// name (ASCII letters, digits, `-`, `_` and `.`, starting with a letter, at most 64
/// characters) and that `description` is not empty; two workflows with one name are
/// reported by [`Registry::from_compiled`].
pub use workflows_macros::workflow;

/// Derives [`WorkflowState`] for a struct with named fields: see there.
pub use workflows_macros::WorkflowState;

/// The JSON Schema crate whose `#[derive(JsonSchema)]` a typed workflow's params type needs
/// (version 1). A crate without `schemars` among its own dependencies can derive with
/// `#[schemars(crate = "workflows::schemars")]`.
pub use schemars;

#[doc(hidden)]
pub mod __private {
    pub use crate::workflow::registry::{
        FactoryOutput, WORKFLOWS, WorkflowDecl, WorkflowImpl, built_once, json, per_run,
    };
    pub use crate::workflow::typed::BuilderTypes;
    pub use linkme;
}
