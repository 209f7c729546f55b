//! The run endpoints: list, show, stages, decisions, delete, cancel and resume.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::ApiState;
use super::api_error::{ApiError, ErrorBody, RunLookupErrors, ServerErrors};
use super::extract::{RunIdPath, body_as, wait_requested};
use super::params_schema::JsonValue;
use super::progress::{ProgressMessage, respond};
use crate::{
    Decision, Interrupt, KeysetPage, PageRequest, PageResult, QueryParams, Run, RunCursor,
    RunFilters, RunSortField, RunStatus, Stage, StateAt, lifecycle, repository,
};

/// The query parameters of `GET /workflows/runs`, for the OpenAPI contract. (They are read
/// by the parsers behind [`PageRequest::from_query`] and [`RunFilters::from_query`], whose
/// errors name the bad value.)
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "describes the parameters; the library's parsers read them"
)]
pub(crate) struct RunListQuery {
    /// The page, from 1 (below 1 counts as 1).
    page: Option<i64>,
    /// Runs per page: below 1 is the default (20), above the maximum (100) the maximum.
    page_size: Option<i64>,
    /// Part of the workflow name, matched case-insensitively and literally.
    #[param(pattern = r"^[^\x00]*$")]
    search: Option<String>,
    /// Comma-separated fields, `-` for descending: `id`, `workflow_name`, `status`,
    /// `started_at`, `completed_at`, `created_at`, `updated_at`. Default `-created_at`.
    #[param(
        pattern = r"^( *-? *(id|workflow_name|status|started_at|completed_at|created_at|updated_at) *(, *-? *(id|workflow_name|status|started_at|completed_at|created_at|updated_at) *)*)?$",
        example = "-created_at,workflow_name"
    )]
    sort: Option<String>,
    /// Only runs of this workflow (exact name).
    #[param(pattern = r"^[^\x00]*$")]
    workflow_name: Option<String>,
    /// Only runs in this status (empty: any status).
    #[param(value_type = Option<String>, pattern = r"^(|pending|running|waiting|completed|failed|cancelled)$")]
    status: Option<RunStatus>,
}

/// The query parameters of `GET /workflows/runs/keyset`, for the OpenAPI contract.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "describes the parameters; the library's parsers read them"
)]
pub(crate) struct RunKeysetQuery {
    /// The `next_cursor` of the previous page; leave it out for the first page.
    cursor: Option<RunCursor>,
    /// Runs per page: below 1 is the default (20), above the maximum (100) the maximum.
    page_size: Option<i64>,
    /// Part of the workflow name, matched case-insensitively and literally.
    #[param(pattern = r"^[^\x00]*$")]
    search: Option<String>,
    /// The order of the first page: `created_at`, `-created_at` (the default), `id` or `-id`.
    /// A cursor carries its order, so with a cursor this is not used.
    #[param(pattern = r"^( *-? *(created_at|id) *)?$", example = "-created_at")]
    sort: Option<String>,
    /// Only runs of this workflow (exact name).
    #[param(pattern = r"^[^\x00]*$")]
    workflow_name: Option<String>,
    /// Only runs in this status (empty: any status).
    #[param(value_type = Option<String>, pattern = r"^(|pending|running|waiting|completed|failed|cancelled)$")]
    status: Option<RunStatus>,
}

/// The query parameter of the endpoints that start a run.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(
    dead_code,
    reason = "describes the parameter; extract::wait_requested reads it"
)]
pub(crate) struct WaitQuery {
    /// `true`: answer with the final run as JSON once it ends, instead of a progress stream.
    wait: Option<bool>,
}

/// Lists runs, newest first unless `sort` says otherwise.
#[utoipa::path(
    get,
    path = "/workflows/runs",
    tag = "runs",
    params(RunListQuery),
    responses(
        (status = 200, description = "One page of runs", body = PageResult<Run>),
        (status = 400, description = "A parameter is not acceptable; the message names it", body = ErrorBody),
        ServerErrors,
    )
)]
pub(crate) async fn list_runs(
    State(api): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<Json<PageResult<Run>>, ApiError> {
    let params = QueryParams::parse(query.as_deref().unwrap_or_default())?;
    let request = PageRequest::from_params(&params)?;
    let filters = RunFilters::from_params(&params)?;
    let mut conn = api.conn().await?;
    let page = repository::list_runs(&mut conn, &api.pages, request, &filters).await?;
    Ok(Json(page))
}

/// Lists runs by cursor: each page is as fast at the millionth run as at the first, and
/// says where the next one starts. No total and no page numbers (counting is what makes deep
/// numbered pages slow).
#[utoipa::path(
    get,
    path = "/workflows/runs/keyset",
    tag = "runs",
    params(RunKeysetQuery),
    responses(
        (status = 200, description = "One page of runs, and the cursor of the next", body = KeysetPage<Run>),
        (status = 400, description = "A parameter is not acceptable; the message names it", body = ErrorBody),
        ServerErrors,
    )
)]
pub(crate) async fn list_runs_keyset(
    State(api): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<Json<KeysetPage<Run>>, ApiError> {
    let params = QueryParams::parse(query.as_deref().unwrap_or_default())?;
    let mut request = PageRequest::from_params(&params)?;
    let filters = RunFilters::from_params(&params)?;
    let cursor = params
        .text("cursor")
        .map(str::parse::<RunCursor>)
        .transpose()?;
    if cursor.is_some() {
        // The cursor carries the order of the pages before it: a sort given with it is not
        // used, but it must still be one (the contract's pattern).
        for sort in &request.sort {
            sort.field.parse::<RunSortField>()?;
        }
        request.sort.clear();
    }
    let mut conn = api.conn().await?;
    let page =
        repository::list_runs_keyset(&mut conn, &api.pages, request, &filters, cursor.as_ref())
            .await?;
    Ok(Json(page))
}

/// One run.
#[utoipa::path(
    get,
    path = "/workflows/runs/{id}",
    tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = Run),
        RunLookupErrors,
        ServerErrors,
    )
)]
pub(crate) async fn get_run(
    State(api): State<ApiState>,
    RunIdPath(id): RunIdPath,
) -> Result<Json<Run>, ApiError> {
    let mut conn = api.conn().await?;
    Ok(Json(repository::find_run(&mut conn, id).await?))
}

/// A run's stages (one per node executed), in the order they started.
#[utoipa::path(
    get,
    path = "/workflows/runs/{id}/stages",
    tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run's stages", body = Vec<Stage>),
        RunLookupErrors,
        ServerErrors,
    )
)]
pub(crate) async fn get_stages(
    State(api): State<ApiState>,
    RunIdPath(id): RunIdPath,
) -> Result<Json<Vec<Stage>>, ApiError> {
    let mut conn = api.conn().await?;
    Ok(Json(repository::stages(&mut conn, id).await?))
}

/// The query parameter of `GET /workflows/runs/{id}/state`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "describes the parameter; get_state reads it")]
pub(crate) struct StateQuery {
    /// The step whose state to show (0: the state the run started from); its last step when
    /// left out.
    #[param(minimum = 0, maximum = 2147483647)]
    step: Option<u32>,
}

/// A run's state after one of its steps, rebuilt from what its stages store (the whole state
/// each attempt started from, and each node's update).
#[utoipa::path(
    get,
    path = "/workflows/runs/{id}/state",
    tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "The run's id"), StateQuery),
    responses(
        (status = 200, description = "The run's state after the step", body = StateAt),
        (status = 400, description = "The id is not a UUID, or the step is not a number", body = ErrorBody),
        (status = 404, description = "No run has this id, or it has not reached the step (or any step yet)", body = ErrorBody),
        ServerErrors,
    )
)]
pub(crate) async fn get_state(
    State(api): State<ApiState>,
    RunIdPath(id): RunIdPath,
    RawQuery(query): RawQuery,
) -> Result<Json<StateAt>, ApiError> {
    let params = QueryParams::parse(query.as_deref().unwrap_or_default())?;
    let step = match params.get("step") {
        None => None,
        Some(text) => {
            let step = text
                .parse::<u32>()
                .ok()
                .filter(|s| i32::try_from(*s).is_ok());
            Some(step.ok_or_else(|| {
                crate::Error::invalid_input(
                    "step",
                    text,
                    "must be a step number: 0 (the state the run started from) or more",
                )
            })?)
        }
    };
    let mut conn = api.conn().await?;
    Ok(Json(repository::state_at(&mut conn, id, step).await?))
}

/// A run's decisions (the edges it took), in order.
#[utoipa::path(
    get,
    path = "/workflows/runs/{id}/decisions",
    tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run's decisions", body = Vec<Decision>),
        RunLookupErrors,
        ServerErrors,
    )
)]
pub(crate) async fn get_decisions(
    State(api): State<ApiState>,
    RunIdPath(id): RunIdPath,
) -> Result<Json<Vec<Decision>>, ApiError> {
    let mut conn = api.conn().await?;
    Ok(Json(repository::decisions(&mut conn, id).await?))
}

/// The questions a run's nodes asked, and their answers, in order.
#[utoipa::path(
    get,
    path = "/workflows/runs/{id}/interrupts",
    tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run's interrupts", body = Vec<Interrupt>),
        RunLookupErrors,
        ServerErrors,
    )
)]
pub(crate) async fn get_interrupts(
    State(api): State<ApiState>,
    RunIdPath(id): RunIdPath,
) -> Result<Json<Vec<Interrupt>>, ApiError> {
    let mut conn = api.conn().await?;
    Ok(Json(repository::interrupts(&mut conn, id).await?))
}

/// An answer to a question a waiting run asked.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnswerBody {
    /// The question's key, as the run's interrupt names it.
    #[schema(pattern = r"^[^\x00]*$")]
    key: String,
    /// The answer: a JSON value the node after the question reads; it must fit the
    /// interrupt's `answer_schema`, if it has one.
    #[schema(value_type = JsonValue)]
    value: serde_json::Value,
}

/// Answers a waiting run's question: the run becomes due, and a worker continues it at the
/// node after the one that asked, which reads the answer. Of two racing answers exactly one
/// is recorded.
#[utoipa::path(
    post,
    path = "/workflows/runs/{id}/answer",
    tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "The run's id")),
    request_body(content = AnswerBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The run, waiting and due", body = Run),
        (status = 400, description = "The id is not a UUID, the body is not `{key, value}`, the run is not waiting, it did not ask this key (or it was answered already), or the value does not fit the question's `answer_schema` (the message names where)", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        ServerErrors,
    )
)]
pub(crate) async fn answer_run(
    State(api): State<ApiState>,
    RunIdPath(id): RunIdPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Run>, ApiError> {
    let answer: AnswerBody = body_as(
        &headers,
        body,
        api.limits.body_bytes,
        r#"{"key": "...", "value": ...}"#,
    )?;
    Ok(Json(
        api.executor.answer(id, &answer.key, answer.value).await?,
    ))
}

/// A message for a run.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageBody {
    /// The topic the run waits for (or will).
    #[schema(pattern = r"^[^\x00]+$")]
    topic: String,
    /// The message: any JSON value.
    #[schema(value_type = JsonValue)]
    value: serde_json::Value,
}

/// A sent message's id.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct MessageSent {
    /// The message's id: messages on a topic are received in the order of their ids.
    id: i64,
}

/// Sends a message to a run that has not ended: the node after one that waits for its
/// topic receives it, once, in order; a run waiting for the topic becomes due.
#[utoipa::path(
    post,
    path = "/workflows/runs/{id}/messages",
    tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "The run's id")),
    request_body(content = MessageBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The message, stored", body = MessageSent),
        (status = 400, description = "The id is not a UUID, the body is not `{topic, value}`, or the run has ended", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        ServerErrors,
    )
)]
pub(crate) async fn send_message(
    State(api): State<ApiState>,
    RunIdPath(id): RunIdPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MessageSent>, ApiError> {
    let message: MessageBody = body_as(
        &headers,
        body,
        api.limits.body_bytes,
        r#"{"topic": "...", "value": ...}"#,
    )?;
    let id = api.executor.send(id, &message.topic, message.value).await?;
    Ok(Json(MessageSent { id }))
}

/// Deletes a finished run with its stages, decisions and checkpoint.
#[utoipa::path(
    delete,
    path = "/workflows/runs/{id}",
    tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "The run's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID, or the run is pending or running (cancel it first)", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        ServerErrors,
    )
)]
pub(crate) async fn delete_run(
    State(api): State<ApiState>,
    RunIdPath(id): RunIdPath,
) -> Result<StatusCode, ApiError> {
    let mut conn = api.conn().await?;
    lifecycle::delete_run(&mut conn, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels a pending or running run, wherever it executes.
#[utoipa::path(
    post,
    path = "/workflows/runs/{id}/cancel",
    tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run, now cancelled", body = Run),
        (status = 400, description = "The id is not a UUID, or the run has already ended", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
        ServerErrors,
    )
)]
pub(crate) async fn cancel_run(
    State(api): State<ApiState>,
    RunIdPath(id): RunIdPath,
) -> Result<Json<Run>, ApiError> {
    Ok(Json(api.executor.cancel(id).await?))
}

/// Resumes a failed or cancelled run after its last checkpoint, here, with the same params.
/// Answers like `execute`: a progress stream, or the final run with `?wait=true`.
#[utoipa::path(
    post,
    path = "/workflows/runs/{id}/resume",
    tag = "runs",
    params(("id" = uuid::Uuid, Path, description = "The run's id"), WaitQuery),
    responses(
        (status = 200, description = "The resumed run's progress as Server-Sent Events (`stage.start`, `stage.complete`, `stage.retry`, `decision`, then `complete` or `error`); with `?wait=true`, the final run",
            headers(("X-Run-ID" = uuid::Uuid, description = "The run's id")),
            content(
                (ProgressMessage = "text/event-stream"),
                (Run = "application/json"),
            )
        ),
        (status = 400, description = "The id is not a UUID, `wait` is not a boolean, or the run is not failed or cancelled", body = ErrorBody),
        (status = 404, description = "No run has this id, or its workflow is no longer registered", body = ErrorBody),
        ServerErrors,
    )
)]
pub(crate) async fn resume_run(
    State(api): State<ApiState>,
    RunIdPath(id): RunIdPath,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let wait = wait_requested(query.as_deref())?;
    let execution = api.executor.resume(id).await?;
    Ok(respond(execution, wait).await)
}
