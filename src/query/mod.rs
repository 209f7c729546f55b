//! Reads for callers: runs listed, filtered, searched, sorted and paged (by number or by
//! cursor), one run, its stages, its decisions and its state at any step, and the query-string parsers an HTTP
//! handler feeds them.

pub(crate) mod page;
pub(crate) mod query_string;
pub mod repository;
pub(crate) mod run_cursor;
pub(crate) mod run_filters;
pub(crate) mod state_at;
