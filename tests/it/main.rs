//! Integration tests against a real PostgreSQL (`DATABASE_URL`; `./scripts/test` provides
//! one). Built as one binary: faster to link than one per file.
#![allow(clippy::unwrap_used)] // test helpers panic on failure, which is what a test wants

mod adoption;
mod catalog;
mod checkpoints;
mod connection_errors;
mod executor;
mod fence;
mod fixtures;
mod http;
mod integrity;
mod keyset;
mod layers;
mod migrations;
mod model_json;
mod policies;
mod pool;
mod registry;
mod repository;
mod schema_drift;
mod testing_support;
mod typed;
mod waits;
mod workers;
