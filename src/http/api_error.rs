//! Errors as HTTP responses: the status of [`Error::status`] and a JSON body with a message.
//!
//! A 500 says nothing internal (no SQL, no stack): its detail goes to the log through
//! `tracing`, and the client is told to look there.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::{Error, ErrorKind};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was wrong and, where the caller can fix it, how.
    #[schema(
        example = "invalid status \"done\": expected one of pending, running, waiting, completed, failed, cancelled"
    )]
    pub error: String,
    /// The HTTP status code, repeated for clients that only keep the body.
    #[schema(example = 400)]
    pub status: u16,
}

/// In the contract: the errors of every endpoint that reads or writes the database.
#[derive(utoipa::IntoResponses)]
#[expect(dead_code, reason = "describes responses; ApiError makes them")]
pub(crate) enum ServerErrors {
    /// The database is unavailable, the server is shutting down, or it is executing as many
    /// runs as it may (then with `Retry-After`)
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// Internal error; the server's log has the details
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// In the contract: the errors of an endpoint that reads one run.
#[derive(utoipa::IntoResponses)]
#[expect(dead_code, reason = "describes responses; ApiError makes them")]
pub(crate) enum RunLookupErrors {
    /// The id is not a UUID
    #[response(status = 400)]
    BadId(ErrorBody),
    /// No run has this id
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds after which a retry may succeed (`Retry-After`), for a busy server.
    retry_after: Option<u32>,
}

impl ApiError {
    /// An error with this status and message, said as is to the client.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The body the client gets.
    pub(crate) fn into_body(self) -> ErrorBody {
        ErrorBody {
            error: self.message,
            status: self.status.as_u16(),
        }
    }
}

impl Error {
    /// The HTTP status an API answers this error with, by its [`ErrorKind`]: 404 for an
    /// unknown run or workflow, 400 for bad input and refused status changes, 503 when no
    /// database connection is available in time, 500 for everything else.
    ///
    /// ```
    /// use workflows::Error;
    /// let e = Error::WorkflowNotFound { name: "nope".into() };
    /// assert_eq!(e.status(), http::StatusCode::NOT_FOUND);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = error.status();
        match error {
            Error::Unavailable { .. } => {
                // The message names hosts and timeouts: for the operator, not the client.
                tracing::warn!(error = %error, "request refused: the database is unavailable");
                ApiError::new(status, "the database is unavailable; retry later")
            }
            Error::Busy { .. } => ApiError {
                retry_after: Some(1),
                ..ApiError::new(status, error.to_string())
            },
            _ if status == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = %error, detail = ?error, "request failed");
                ApiError::new(status, "internal error; the server's log has the details")
            }
            _ => ApiError::new(status, error.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.retry_after;
        let mut response = (status, Json(self.into_body())).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
