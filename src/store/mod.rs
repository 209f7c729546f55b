//! Storage: the only layer that names the tables. Connections and migrations, the schema,
//! how the model's values are stored, and every statement the executor and the worker make:
//! status changes and leases (`runs`), the journal of an executing run (`journal_pg`),
//! checkpoints, retention and notifications.
//!
//! Reads for callers (lists, pages, one run) are in [`query`](crate::query), which uses the
//! schema and rows of this module.

pub(crate) mod adoption;
pub(crate) mod atomic_statement;
pub(crate) mod backoff;
pub(crate) mod batched_commit;
pub(crate) mod checkpoints;
pub(crate) mod db;
pub(crate) mod fence;
pub(crate) mod group_commit;
pub(crate) mod journal;
pub(crate) mod journal_pg;
pub(crate) mod lease;
pub(crate) mod listener;
pub(crate) mod migrations;
pub(crate) mod repair;
pub mod retention;
pub(crate) mod rows;
pub(crate) mod run_connections;
pub(crate) mod runs;
/// The tables, as `diesel print-schema` generates them from the migrations (`scripts/schema`).
#[rustfmt::skip]
#[allow(missing_docs)]
pub mod schema;
pub(crate) mod sql_functions;
pub(crate) mod sql_types;
pub(crate) mod statement_walk;
