//! Execution: the [`Executor`](executor::Executor) and the handle of a run it executes, the
//! attempt at a run on its own task, the engine that walks the graph node by node, the
//! heartbeat that renews leases, and the events and observers that report progress.

pub(crate) mod attempt;
pub(crate) mod config;
pub(crate) mod engine;
pub mod events;
pub(crate) mod execution;
pub(crate) mod executor;
pub(crate) mod heartbeat;
pub(crate) mod in_memory;
pub mod observer;
pub(crate) mod shared;
