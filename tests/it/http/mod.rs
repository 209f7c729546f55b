//! The HTTP API through real HTTP against a real PostgreSQL: status codes, bodies, headers,
//! the progress stream, bad requests and the contract.

mod auth;
mod bad_requests;
mod contract;
mod endpoints;
mod limits;
mod progress;
mod server;
