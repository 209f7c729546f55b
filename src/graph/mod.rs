//! State graphs: the shape a workflow's factory declares.
//!
//! A graph has named nodes (async functions from the workflow's state to its update), edges
//! between them, each with an optional named [`Predicate`] (edges leaving a node are tried in
//! the order they were added; the first that holds is taken), one entry point, and one or
//! more exit points. A run completes at an exit point when none of its edges holds; a node
//! that is not an exit point and has no edge that holds fails it; `max_iterations` (default
//! 1000) bounds cycles.
//!
//! Each node may have a [`NodePolicy`]: retries with backoff ([`RetryPolicy`]; an error is
//! tried again only if it is marked [retryable](NodeError::retryable) or the policy's
//! classifier says so) and timeouts per attempt.
//!
//! The state is the workflow's own type, a [`WorkflowState`]; the JSON [`State`] is one, for
//! workflows whose data is only known at run time.
//!
//! This module is pure: it knows no database and no executor.
//!
//! [`GraphBuilder`] collects the declaration and [`GraphBuilder::build`] validates it into a
//! [`Graph`].

mod builder;
mod definition;
pub(crate) mod erased;
mod node;
mod node_error;
mod node_policy;
pub(crate) mod node_signals;
mod predicate;
pub(crate) mod routing;
mod snapshot_policy;
mod state;
mod state_data;
pub(crate) mod value;
mod workflow_state;

pub use builder::{DEFAULT_MAX_ITERATIONS, GraphBuilder, GraphError, NodeHandle};
pub use definition::{Edge, Graph};
pub use node::{BoxError, BoxFuture, Node, NodeContext};
pub use node_error::{NodeError, NodeErrorKind};
pub use node_policy::{NodePolicy, RetryPolicy};
pub use predicate::Predicate;
pub use snapshot_policy::SnapshotPolicy;
pub use state::State;
pub(crate) use state_data::StateData;
pub use value::ValueError;
pub use workflow_state::WorkflowState;
