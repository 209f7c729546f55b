#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Lets the `#[workflow]` macro's `::workflows::...` paths resolve inside this crate too.
#[allow(unused_extern_crates)]
extern crate self as workflows;

mod atomic_statement;
mod backoff;
pub mod checkpoint;
pub mod config;
pub mod db;
mod engine;
mod error;
pub mod events;
mod executor;
mod fence;
pub mod graph;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod journal;
mod lease;
mod lease_deadline;
pub mod lifecycle;
mod listener;
mod model;
pub mod observer;
pub mod page;
mod params;
mod query_string;
mod raw_json;
mod recorder;
mod registry;
pub mod repository;
pub mod retention;
mod run_connections;
mod run_cursor;
mod run_filters;
mod runtime;
mod worker;
/// The tables, as `diesel print-schema` generates them from the migrations (`scripts/schema`).
#[rustfmt::skip]
#[allow(missing_docs)]
pub mod schema;
mod sql_functions;
#[cfg(feature = "testing")]
pub mod testing;

pub use checkpoint::{CheckpointStore, MemoryCheckpointStore, PgCheckpointStore};
pub use config::Config;
pub use db::{DbConfig, Pool, PooledConnection};
pub use error::{BoxError, Error, Result};
pub use events::Event;
pub use executor::{Execution, Executor, ExecutorBuilder, ExecutorConfig, ShutdownReport};
pub use graph::{Graph, GraphBuilder, GraphError, NodeContext, Predicate, State};
pub use model::{Decision, Run, RunId, RunStatus, Stage, StageStatus, WorkflowInfo};
pub use observer::{Broadcast, Observer, TracingObserver};
pub use page::{KeysetPage, PageConfig, PageRequest, PageResult, SortField};
pub use params::Params;
pub use raw_json::RawJson;
pub use registry::{BoxFuture, Factory, Registry, WORKFLOWS, WorkflowDef};
pub use retention::{PruneReport, Retention};
pub use run_cursor::RunCursor;
pub use run_filters::{RunFilters, RunSortField};
pub use runtime::{Runtime, RuntimeBuilder};
pub use worker::{Worker, WorkerConfig};

/// Registers a workflow factory at compile time.
///
/// ```
/// use workflows::{GraphBuilder, Params, Runtime, State, BoxError};
///
/// #[workflows::workflow(name = "greet", description = "Says hello to `name`")]
/// async fn greet(graph: &mut GraphBuilder, _runtime: &Runtime, params: Params) -> Result<State, BoxError> {
///     let name: String = params.require("name")?;
///     graph
///         .add_node("hello", |mut state: State, _ctx| async move {
///             let name: String = state.require("name")?;
///             state.set("greeting", format!("hello, {name}"));
///             Ok(state)
///         })
///         .set_entry_point("hello")
///         .add_exit_point("hello");
///     Ok(State::new().with("name", name))
/// }
///
/// let registry = workflows::Registry::from_compiled().unwrap();
/// assert_eq!(registry.get("greet").unwrap().description(), "Says hello to `name`");
/// ```
///
/// The function may be `async` or not. It receives the graph builder, the [`Runtime`] and
/// the run's [`Params`], adds nodes and edges, and returns the initial [`State`]; its error
/// type is anything that converts into [`BoxError`]. The attribute checks at compile time
/// that `name` is a well-formed workflow name (ASCII letters, digits, `-`, `_` and `.`,
/// starting with a letter, at most 64 characters) and that `description` is not empty;
/// two workflows with one name are reported by [`Registry::from_compiled`].
pub use workflows_macros::workflow;

#[doc(hidden)]
pub mod __private {
    pub use crate::registry::FactoryOutput;
    pub use linkme;
}
