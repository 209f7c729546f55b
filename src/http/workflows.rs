//! The workflow endpoints: what is registered, and starting a run.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::ApiState;
use super::api_error::{ApiError, ErrorBody, ServerErrors};
use super::extract::{params_body, wait_requested};
use super::params_schema::RunParams;
use super::progress::{ProgressMessage, respond};
use super::runs::WaitQuery;
use crate::{Run, WorkflowInfo};

/// The registered workflows, sorted by name.
#[utoipa::path(
    get,
    path = "/workflows",
    tag = "workflows",
    responses((status = 200, description = "The registered workflows", body = Vec<WorkflowInfo>))
)]
pub(crate) async fn list_workflows(State(api): State<ApiState>) -> Json<Vec<WorkflowInfo>> {
    Json(api.executor.registry().list())
}

/// Starts a run of a workflow here and streams its progress as Server-Sent Events, or, with
/// `?wait=true`, answers with the final run. A client that disconnects does not stop the run.
#[utoipa::path(
    post,
    path = "/workflows/{name}/execute",
    tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name, as `GET /workflows` lists it"), WaitQuery),
    request_body(
        content = Option<RunParams>,
        content_type = "application/json",
        description = "The run's params: a JSON object (an empty body is no params; `null` is refused)"
    ),
    responses(
        (status = 200, description = "The run's progress as Server-Sent Events: `stage.start`, `stage.complete`, `stage.retry` and `decision` (each an `Event`), then `complete` (the final `Run`) or `error` (a `StreamError`); with `?wait=true`, the final run",
            headers(("X-Run-ID" = uuid::Uuid, description = "The run's id")),
            content(
                (ProgressMessage = "text/event-stream"),
                (Run = "application/json"),
            ),
            links(
                ("GetRun" = (operation_id = "get_run", parameters(("id" = "$response.header.X-Run-ID")))),
                ("GetStages" = (operation_id = "get_stages", parameters(("id" = "$response.header.X-Run-ID")))),
                ("GetDecisions" = (operation_id = "get_decisions", parameters(("id" = "$response.header.X-Run-ID")))),
                ("CancelRun" = (operation_id = "cancel_run", parameters(("id" = "$response.header.X-Run-ID")))),
                ("ResumeRun" = (operation_id = "resume_run", parameters(("id" = "$response.header.X-Run-ID")))),
                ("DeleteRun" = (operation_id = "delete_run", parameters(("id" = "$response.header.X-Run-ID")))),
            )
        ),
        (status = 400, description = "The body is not a JSON object, or `wait` is not a boolean", body = ErrorBody),
        (status = 404, description = "No workflow is registered under this name", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        ServerErrors,
    )
)]
pub(crate) async fn execute(
    State(api): State<ApiState>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    let wait = wait_requested(query.as_deref())?;
    // An unknown workflow is a 404 whatever the body: check it first.
    api.executor.registry().get(&name)?;
    let params = params_body(&headers, body, api.limits.body_bytes)?;
    let execution = api.executor.start(&name, params).await?;
    Ok(respond(execution, wait).await)
}
