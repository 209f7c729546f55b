//! Workflows: the registry of those declared with `#[workflow]` (or registered at run time),
//! the params a run starts with, and the runtime of dependencies their factories get.

pub(crate) mod params;
pub(crate) mod registry;
pub(crate) mod runtime;
