//! Reading requests: a run id from the path, `wait` from the query, params from the body.
//!
//! Each says what was wrong in the library's error body, where axum's own extractors would
//! answer with plain text.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::Value;

use super::api_error::ApiError;
use crate::{Error, QueryParams, RunId};

/// The `{id}` of a run's path.
pub(crate) struct RunIdPath(pub(crate) RunId);

impl<S: Send + Sync> FromRequestParts<S> for RunIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
        Ok(RunIdPath(id.parse().map_err(Error::from)?))
    }
}

/// Whether the client asked, with `?wait=true`, for the final run as JSON instead of a
/// progress stream.
pub(crate) fn wait_requested(query: Option<&str>) -> Result<bool, Error> {
    let params = QueryParams::parse(query.unwrap_or_default())?;
    match params.get("wait") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Error::invalid_input(
            "wait",
            other,
            "expected true or false",
        )),
    }
}

/// A run's params from a request body: a JSON object, or an empty body for no params.
pub(crate) fn params_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Value, ApiError> {
    let Some(params) = json_body(headers, body, limit)? else {
        return Ok(Value::Null);
    };
    if params.is_null() {
        // The contract's body is an object; no params is an empty body, not `null`.
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is JSON null: send params as a JSON object, or an empty body for no params",
        ));
    }
    Ok(params)
}

/// A JSON request body as `T` (`shape` says what it must look like, for the error); an
/// empty body is read as `null`.
pub(crate) fn body_as<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    shape: &str,
) -> Result<T, ApiError> {
    let value = json_body(headers, body, limit)?.unwrap_or_default();
    serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be {shape}: {e}"),
        )
    })
}

/// A JSON request body, at most `limit` bytes, sent as `application/json`; `None` if empty.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Option<Value>, ApiError> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {limit} bytes"),
        ),
        _ if rejection.body_text().contains(super::slow_body::TOO_SLOW) => {
            let text = rejection.body_text();
            let from = text.find(super::slow_body::TOO_SLOW).unwrap_or(0);
            ApiError::new(StatusCode::REQUEST_TIMEOUT, &text[from..])
        }
        status => ApiError::new(status, rejection.body_text()),
    })?;
    if body.is_empty() {
        return Ok(None);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {content_type:?}: send params as a JSON object with Content-Type: application/json"
            ),
        ));
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "malformed JSON body: {e}; send params as a JSON object like {{\"key\": \"value\"}}"
            ),
        )
    })?;
    Ok(Some(value))
}
