//! The library's one error type, and the kind of each error (what an API answers with it:
//! the HTTP mapping itself is in [`http`](crate::http)).
//!
//! The layers below (the model, the graph) have errors of their own, which convert into this
//! one: [`InvalidValue`] (a malformed id or status), [`ValueError`] (a key of the state or the
//! params), [`GraphError`] (a graph that cannot run).

use std::fmt;

use crate::graph::{BoxError, GraphError, ValueError};
use crate::model::{InvalidValue, RunId, RunStatus};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is: what a caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An unknown run or workflow (HTTP 404).
    NotFound,
    /// Bad input, or a change the run's status refuses (HTTP 400).
    InvalidInput,
    /// The database could not be reached in time, or the executor is shutting down: try
    /// again later, or elsewhere (HTTP 503).
    Unavailable,
    /// Anything else (HTTP 500).
    Internal,
}

/// Everything that can go wrong in this library.
///
/// [`Error::kind`] says what kind of failure it is (and, with the `http` feature,
/// `Error::status` the HTTP status an API answers with).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No run has this id.
    #[error("run {id} not found")]
    RunNotFound {
        /// The id that was looked up.
        id: RunId,
    },

    /// The run has recorded no state at the step asked for: it has not reached it (or any
    /// step yet).
    #[error("run {run_id} {reason}")]
    StepNotFound {
        /// The run concerned.
        run_id: RunId,
        /// Which step it lacks, and the last it has.
        reason: String,
    },

    /// No workflow is registered under this name.
    #[error("workflow {name:?} is not registered; `workflows list` shows the registered workflows")]
    WorkflowNotFound {
        /// The name that was looked up.
        name: String,
    },

    /// The run is not in a status that allows the requested change.
    #[error("run {run_id} is {status}: cannot {action}")]
    InvalidStatus {
        /// The run concerned.
        run_id: RunId,
        /// Its status when the change was attempted.
        status: RunStatus,
        /// What was attempted ("start", "cancel", "resume", ...).
        action: &'static str,
    },

    /// A value given by a caller (a query parameter, an id, a status, a sort field) is not
    /// acceptable. The message names the parameter and the value.
    #[error("invalid {parameter} {value:?}: {reason}")]
    InvalidInput {
        /// Which input was wrong, e.g. `sort` or `page`.
        parameter: String,
        /// The value as given.
        value: String,
        /// What is wrong with it and what would be accepted.
        reason: String,
    },

    /// No database connection could be had in time: the server is unreachable, refuses the
    /// connection, or every pooled connection stayed busy past the pool's wait timeout.
    #[error("database unavailable: {message}")]
    Unavailable {
        /// What happened, and what to check.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// A node's update made the run's state larger than it may be
    /// ([`ExecutorConfig::max_state_bytes`](crate::ExecutorConfig::max_state_bytes)): the run
    /// fails, and nothing of that step is recorded.
    #[error(
        "the state after node {node} is {bytes} bytes serialized, more than a run may hold ({limit} bytes, ExecutorConfig::max_state_bytes); keep large data outside the state"
    )]
    StateTooLarge {
        /// The node whose update made it so.
        node: String,
        /// The state's size, serialized.
        bytes: usize,
        /// The bound.
        limit: usize,
    },

    /// The executor is executing as many runs started by callers as it may at once
    /// ([`ExecutorConfig::max_runs`](crate::ExecutorConfig::max_runs)).
    #[error(
        "this server is executing as many runs as it may at once ({limit}); retry in a moment, or submit the run for a worker"
    )]
    Busy {
        /// The bound.
        limit: usize,
    },

    /// The executor is shutting down and starts no new runs.
    #[error("the executor is shutting down and starts no new runs; retry on another instance")]
    ShuttingDown,

    /// A query failed in the database.
    #[error("database error: {0}")]
    Database(#[source] diesel::result::Error),

    /// The database lacks this library's tables or columns: it was never migrated, or is
    /// behind this version of the library.
    #[error(
        "the database is not migrated for this version of workflows ({detail}); run `workflows migrate up` or `workflows::db::run_pending_migrations` first"
    )]
    NotMigrated {
        /// What PostgreSQL reported missing.
        detail: String,
    },

    /// The run cannot be resumed without repeating work it recorded as done.
    #[error("run {run_id} cannot be resumed: {reason}")]
    NotResumable {
        /// The run concerned.
        run_id: RunId,
        /// Why, and what to do instead.
        reason: String,
    },

    /// Running or reverting a migration failed.
    #[error("migration failed: {0}")]
    Migration(#[source] BoxError),

    /// The database has tables named as the Go service's, but not in the shape its
    /// `000006_workflows` migration made, so they were not adopted (and nothing was changed).
    #[error(
        "the tables runs, stages, decisions and checkpoints are here but not as the Go service's 000006_workflows migration makes them, so workflows did not adopt them and changed nothing:\n{}\nmake them match (or move them to another schema) and run `workflows migrate up` again",
        .differences.iter().map(|d| format!("- {d}")).collect::<Vec<_>>().join("\n")
    )]
    NotAdoptable {
        /// Each difference from the seed's shape, one sentence each.
        differences: Vec<String>,
    },

    /// The tables hold rows the integrity migration refuses (the Go service's history):
    /// nothing more was migrated.
    #[error(
        "the tables hold rows the integrity migration (20261125000002) refuses, so it was not applied and nothing was changed:\n{plan}\nrun `workflows migrate repair` to see the plan, `workflows migrate repair --apply` to carry it out, then `workflows migrate up` again"
    )]
    NeedsRepair {
        /// What was found, and how each would be repaired.
        plan: crate::model::RepairPlan,
    },

    /// Two workflows were registered under one name.
    #[error(
        "workflow {name:?} is registered twice: at {first} and at {second}; rename one of them"
    )]
    DuplicateWorkflow {
        /// The shared name.
        name: String,
        /// Where the first registration is.
        first: String,
        /// Where the second registration is.
        second: String,
    },

    /// A workflow registered at run time has an unusable name or description.
    #[error("cannot register workflow {name:?} (at {location}): {reason}")]
    InvalidWorkflow {
        /// The name given.
        name: String,
        /// Where it was registered.
        location: String,
        /// What is wrong.
        reason: String,
    },

    /// A workflow asked the [`Runtime`](crate::Runtime) for a dependency it does not hold.
    #[error("{}", missing_dependency(type_name, workflow.as_deref()))]
    MissingDependency {
        /// The Rust type that was asked for.
        type_name: &'static str,
        /// The workflow whose nodes need it, when the executor's build found it missing.
        workflow: Option<String>,
    },

    /// A workflow's factory built a graph that cannot run.
    #[error("workflow {workflow:?} built an invalid graph: {source}")]
    InvalidGraph {
        /// The workflow whose factory built it.
        workflow: String,
        /// What is wrong with the graph.
        #[source]
        source: GraphError,
    },

    /// A workflow's factory returned an error.
    #[error("workflow {workflow:?} could not be set up: {source}")]
    Factory {
        /// The workflow concerned.
        workflow: String,
        /// The factory's error.
        #[source]
        source: BoxError,
    },

    /// A state or params value is missing or has the wrong type.
    #[error("{container} key {key:?}: {reason}")]
    Value {
        /// `state` or `params`.
        container: &'static str,
        /// The key that was read or written.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// A configuration value (usually an environment variable) is missing or malformed.
    #[error("configuration {variable}={value:?}: {reason}")]
    Config {
        /// The variable, e.g. `DATABASE_URL`.
        variable: &'static str,
        /// The value found (empty when missing).
        value: String,
        /// What is wrong, and what is accepted.
        reason: String,
    },
}

/// The message of [`Error::MissingDependency`].
fn missing_dependency(type_name: &str, workflow: Option<&str>) -> String {
    match workflow {
        Some(workflow) => format!(
            "workflow {workflow:?} needs a `{type_name}`, which the runtime does not have; add one with Runtime::builder().with(value) and give the runtime to Executor::builder(..).runtime(..)"
        ),
        None => format!(
            "the runtime has no `{type_name}`; add one with Runtime::builder().with(value) before running workflows that need it"
        ),
    }
}

impl Error {
    /// What kind of failure this is: an unknown run or workflow, bad input (or a refused
    /// status change), an unavailable database, or anything else.
    ///
    /// ```
    /// use workflows::{Error, ErrorKind};
    /// let e = Error::WorkflowNotFound { name: "nope".into() };
    /// assert_eq!(e.kind(), ErrorKind::NotFound);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::RunNotFound { .. }
            | Error::StepNotFound { .. }
            | Error::WorkflowNotFound { .. } => ErrorKind::NotFound,
            Error::InvalidStatus { .. }
            | Error::InvalidInput { .. }
            | Error::NotResumable { .. } => ErrorKind::InvalidInput,
            Error::Unavailable { .. } | Error::ShuttingDown | Error::Busy { .. } => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::Internal,
        }
    }

    /// A bad-input error (400) naming the parameter and its value.
    pub fn invalid_input(
        parameter: impl Into<String>,
        value: impl Into<String>,
        reason: impl fmt::Display,
    ) -> Self {
        Error::InvalidInput {
            parameter: parameter.into(),
            value: value.into(),
            reason: reason.to_string(),
        }
    }

    /// Whether this error means the database could not be reached, or went away in the
    /// middle of a statement (rather than refusing it): the statement may be retried.
    pub(crate) fn is_connection_lost(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error as Diesel};
        type HookError = deadpool::managed::HookError<diesel_async::pooled_connection::PoolError>;
        match self {
            // A connection the pool's own setup refused (a test pool whose transaction was
            // lost, say) will be refused again.
            Error::Unavailable {
                source: Some(source),
                ..
            } if source.downcast_ref::<HookError>().is_some() => false,
            Error::Unavailable { .. } => true,
            Error::Database(Diesel::BrokenTransactionManager) => true,
            Error::Database(Diesel::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                    true
                }
                // A server shutting down or restarting ends its sessions with these (SQLSTATE
                // class 57P), which Diesel reports as unknown errors.
                DatabaseErrorKind::Unknown => {
                    let message = info.message();
                    [
                        "terminating connection",
                        "the database system is shutting down",
                        "the database system is starting up",
                        "the database system is in recovery mode",
                        "server closed the connection",
                        "connection closed",
                    ]
                    .iter()
                    .any(|m| message.contains(m))
                }
                _ => false,
            },
            _ => false,
        }
    }

    pub(crate) fn unavailable(
        message: impl Into<String>,
        source: impl Into<Option<BoxError>>,
    ) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: source.into(),
        }
    }
}

impl From<InvalidValue> for Error {
    fn from(e: InvalidValue) -> Self {
        Error::InvalidInput {
            parameter: e.what.to_owned(),
            value: e.value,
            reason: e.reason,
        }
    }
}

impl From<ValueError> for Error {
    fn from(e: ValueError) -> Self {
        Error::Value {
            container: e.container,
            key: e.key,
            reason: e.reason,
        }
    }
}

impl From<diesel::result::Error> for Error {
    /// A query's error; one that names a missing table or column of this library's is
    /// [`Error::NotMigrated`], which says how to fix it.
    fn from(e: diesel::result::Error) -> Self {
        match missing_from_schema(&e) {
            Some(detail) => Error::NotMigrated { detail },
            None => Error::Database(e),
        }
    }
}

/// What a query's error says is missing, if it is one of this library's tables, columns or
/// functions (PostgreSQL's messages: `relation "runs" does not exist`, `column
/// runs.lease_token does not exist`, `column "owner" of relation "runs" does not exist`).
fn missing_from_schema(e: &diesel::result::Error) -> Option<String> {
    let diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, info) = e
    else {
        return None;
    };
    let message = info.message();
    let ours = ["runs", "stages", "decisions", "checkpoints", "workflows_"];
    let names_ours = |text: &str| {
        ours.iter()
            .any(|t| text.contains(&format!("\"{t}")) || text.contains(&format!(" {t}.")))
    };
    (message.ends_with("does not exist") && names_ours(message)).then(|| message.to_owned())
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for Error {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        use deadpool::managed::PoolError as P;
        use diesel_async::pooled_connection::PoolError as Backend;
        match e {
            P::Timeout(kind) => Error::unavailable(
                format!(
                    "timed out {} a connection; check that PostgreSQL is reachable at DATABASE_URL, or raise the pool's size or timeouts",
                    match kind {
                        deadpool::managed::TimeoutType::Wait => "waiting for",
                        deadpool::managed::TimeoutType::Create => "opening",
                        deadpool::managed::TimeoutType::Recycle => "checking",
                    }
                ),
                None,
            ),
            P::Backend(Backend::ConnectionError(c)) => Error::unavailable(
                format!(
                    "could not connect to PostgreSQL ({c}); check DATABASE_URL and that the server is running"
                ),
                Some(Box::new(c) as BoxError),
            ),
            P::Backend(Backend::QueryError(q)) => Error::from(q),
            P::Closed => Error::unavailable("the connection pool has been closed", None),
            P::NoRuntimeSpecified => Error::unavailable(
                "the connection pool has no async runtime to time its waits",
                None,
            ),
            P::PostCreateHook(h) => Error::unavailable(
                format!("setting up a new connection failed: {h}"),
                Some(Box::new(h) as BoxError),
            ),
        }
    }
}

impl From<diesel::ConnectionError> for Error {
    fn from(e: diesel::ConnectionError) -> Self {
        Error::unavailable(
            format!(
                "could not connect to PostgreSQL ({e}); check DATABASE_URL and that the server is running"
            ),
            Some(Box::new(e) as BoxError),
        )
    }
}
