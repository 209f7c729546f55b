//! A started run as a response: its progress as Server-Sent Events, or its final record as
//! JSON when the client asked to wait.
//!
//! The stream's events are `stage.start`, `stage.complete`, `stage.retry` (a failed attempt
//! that will be tried again), `decision` and `interrupt` (a question asked) (each an
//! [`Event`] as JSON) while the run executes, then exactly one of `complete` (the final
//! [`Run`]), `waiting` (the run, waiting for an answer or a timer) or `error` (a
//! [`StreamError`]). The run does not depend on the client: one that
//! disconnects drops the stream, not the run, which goes on and is recorded in full.

use std::convert::Infallible;

use axum::Json;
use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};

use super::api_error::ApiError;
use crate::{Event, Execution, Run, RunStatus};

/// The header that carries the run's id, so a client can find the run again.
pub(crate) const RUN_ID_HEADER: HeaderName = HeaderName::from_static("x-run-id");

/// The data of the stream's `error` event: why the run did not complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamError {
    /// What went wrong.
    pub error: String,
    /// The run as recorded at its end (`failed` or `cancelled`), when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
}

/// One message of the progress stream, as the contract describes it: its `event` name and
/// its `data`, a JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProgressMessage {
    /// `stage.start`, `stage.complete`, `stage.retry`, `decision` or `interrupt` (`data` is
    /// an `Event`), then `complete` (`data` is the final `Run`), `waiting` (`data` is the
    /// run, waiting for an answer or a timer) or `error` (`data` is a `StreamError`).
    #[schema(
        pattern = r"^(stage\.start|stage\.complete|stage\.retry|decision|interrupt|complete|waiting|error)$"
    )]
    pub event: String,
    /// The event's JSON.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// The response to a request that started (or resumed) a run.
pub(crate) async fn respond(execution: Execution, wait: bool) -> Response {
    let run_id = HeaderValue::from_str(&execution.run_id().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static(""));
    if wait {
        return match execution.wait().await {
            Ok(run) => ([(RUN_ID_HEADER, run_id)], Json(run)).into_response(),
            Err(e) => {
                let mut response = ApiError::from(e).into_response();
                response.headers_mut().insert(RUN_ID_HEADER, run_id);
                response
            }
        };
    }
    let events = Sse::new(progress(execution)).keep_alive(KeepAlive::default());
    ([(RUN_ID_HEADER, run_id)], events).into_response()
}

/// The run's events as they happen, ending with `complete` or `error`.
fn progress(execution: Execution) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(Some(execution), |execution| async move {
        let mut execution = execution?;
        loop {
            match execution.next_event().await {
                Some(event) => {
                    if let Some(sse) = progress_event(&event) {
                        return Some((Ok(sse), Some(execution)));
                    }
                }
                None => return Some((Ok(final_event(execution.wait().await)), None)),
            }
        }
    })
}

/// The stream's name for a progress event; `None` for events the stream does not carry.
fn progress_event(event: &Event) -> Option<SseEvent> {
    let name = match event {
        Event::NodeStarted { .. } => "stage.start",
        Event::NodeCompleted { .. } => "stage.complete",
        Event::EdgeTransition { .. } => "decision",
        // A run started over HTTP waits out its retry backoffs where it runs; it waits
        // without a worker only after a node asked a question (`interrupt`) or slept, and
        // the stream then ends with `waiting` (the run).
        Event::NodeRetrying { .. } => "stage.retry",
        Event::Interrupted { .. } => "interrupt",
        _ => return None,
    };
    Some(json_event(name, event))
}

/// `complete` with the run, or `error` with why it did not complete.
fn final_event(result: crate::Result<Run>) -> SseEvent {
    match result {
        Ok(run) if run.status == RunStatus::Completed => json_event("complete", &run),
        Ok(run) if run.status == RunStatus::Waiting => json_event("waiting", &run),
        Ok(run) => {
            let error = run
                .error_message
                .clone()
                .unwrap_or_else(|| format!("the run ended {}", run.status));
            json_event(
                "error",
                &StreamError {
                    error,
                    run: Some(run),
                },
            )
        }
        Err(e) => {
            let body = ApiError::from(e).into_body();
            json_event(
                "error",
                &StreamError {
                    error: body.error,
                    run: None,
                },
            )
        }
    }
}

fn json_event(name: &str, data: &impl Serialize) -> SseEvent {
    let data = serde_json::to_string(data)
        .unwrap_or_else(|e| format!("{{\"error\":\"unserializable event: {e}\"}}"));
    SseEvent::default().event(name).data(data)
}
