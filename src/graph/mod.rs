//! State graphs: the shape a workflow's factory declares.
//!
//! A graph has named nodes (async functions from [`State`] to `State`), edges between them,
//! each with an optional named [`Predicate`] (edges leaving a node are tried in the order they
//! were added; the first that holds is taken), one entry point, and one or more exit points.
//! A run completes at an exit point when none of its edges holds; a node that is not an exit
//! point and has no edge that holds fails it; `max_iterations` (default 1000) bounds cycles.
//!
//! This module is pure: it knows no database and no executor.
//!
//! [`GraphBuilder`] collects the declaration and [`GraphBuilder::build`] validates it into a
//! [`Graph`].

mod builder;
mod definition;
mod node;
mod predicate;
pub(crate) mod routing;
mod state;
pub(crate) mod value;

pub use builder::{DEFAULT_MAX_ITERATIONS, GraphBuilder, GraphError};
pub use definition::{Edge, Graph};
pub use node::{BoxError, BoxFuture, Node, NodeContext};
pub use predicate::Predicate;
pub use state::State;
pub use value::ValueError;
