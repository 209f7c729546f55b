//! Workflows: the registry of those declared with `#[workflow]` (or registered at run time),
//! typed and JSON, the params a run starts with, and the runtime of dependencies.

pub(crate) mod erased;
pub(crate) mod json;
pub(crate) mod params;
pub(crate) mod registry;
pub(crate) mod runtime;
pub(crate) mod typed;
