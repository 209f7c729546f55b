//! A started run as a response: its progress as Server-Sent Events, or its final record as
//! JSON when the client asked to wait.
//!
//! The stream's events are `stage.start`, `stage.complete`, `stage.retry` (a failed attempt
//! that will be tried again), `decision` and `interrupt` (a question asked) (each an
//! [`Event`] as JSON) while the run executes, then exactly one of `complete` (the final
//! [`Run`]), `waiting` (the run, waiting for an answer or a timer) or `error` (a
//! [`StreamError`]). The run does not depend on the client: one that
//! disconnects drops the stream, not the run, which goes on and is recorded in full.
//!
//! A stream holds at most [`STREAM_BUFFER`] events, and [`STREAM_BUFFER_BYTES`] of them, for
//! a client that reads slower than its run goes: past that, events are dropped (and, until the
//! client reads again, dropped before they are serialized, so that a stalled client costs its
//! run nothing), and the next one the client gets is `lagged` (`{"missed": N}`, how many it
//! missed). The last event is always kept. (A server closes a
//! connection whose client stops reading altogether: `workflows serve --write-timeout-ms`.)

use std::convert::Infallible;

use axum::Json;
use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::api_error::ApiError;
use crate::{Event, Execution, Run, RunStatus};

/// How many events a progress stream holds for a client that reads slower than its run goes.
pub const STREAM_BUFFER: usize = 64;

/// How many bytes of events a progress stream holds for a slow client (an event carries the
/// node's input or output state, so events can be large): 8 MiB.
pub const STREAM_BUFFER_BYTES: usize = 8 << 20;

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
    /// an `Event`), `lagged` (`data` is `{"missed": N}`: events a slow client missed), then
    /// `complete` (`data` is the final `Run`), `waiting` (`data` is the run, waiting for an
    /// answer or a timer) or `error` (`data` is a `StreamError`).
    #[schema(
        pattern = r"^(stage\.start|stage\.complete|stage\.retry|decision|interrupt|lagged|complete|waiting|error)$"
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

/// The run's events as they happen, ending with `complete` or `error`: forwarded as they
/// come into a buffer of [`STREAM_BUFFER`] the client reads from (see the module).
fn progress(mut execution: Execution) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let (sender, receiver) = mpsc::channel::<(SseEvent, usize)>(STREAM_BUFFER);
    let buffered = Arc::new(AtomicUsize::new(0));
    let held = Arc::clone(&buffered);
    tokio::spawn(async move {
        // Whether an event of `size` bytes was buffered; `None` once the client is gone.
        let offer = |(event, size): (SseEvent, usize)| {
            if held.load(Ordering::Acquire) + size > STREAM_BUFFER_BYTES {
                return Some(false);
            }
            match sender.try_send((event, size)) {
                Ok(()) => {
                    held.fetch_add(size, Ordering::AcqRel);
                    Some(true)
                }
                Err(TrySendError::Full(_)) => Some(false),
                Err(TrySendError::Closed(_)) => None,
            }
        };
        // What the buffer held when an event last did not fit. Until the client has read
        // some of it, the next events are dropped before they are serialized, so that the
        // stream keeps up with its run however large its states are: its events would
        // otherwise wait, states and all, in the run's channel while this serialized events
        // it could not buffer.
        let mut refused_at: Option<usize> = None;
        let mut missed = 0u64;
        while let Some(event) = execution.next_event().await {
            let Some(name) = progress_name(&event) else {
                continue;
            };
            if sender.is_closed() {
                // The client is gone; the run goes on without it.
                return;
            }
            if refused_at.is_some_and(|at| held.load(Ordering::Acquire) >= at) {
                missed += 1;
                continue;
            }
            let sse = json_event(name, &event);
            if missed > 0 {
                match offer(lagged(missed)) {
                    Some(true) => missed = 0,
                    Some(false) => {
                        missed += 1;
                        refused_at = Some(held.load(Ordering::Acquire));
                        continue;
                    }
                    // The client is gone; the run goes on without it.
                    None => return,
                }
            }
            match offer(sse) {
                Some(true) => refused_at = None,
                Some(false) => {
                    missed += 1;
                    refused_at = Some(held.load(Ordering::Acquire));
                }
                None => return,
            }
        }
        let last = final_event(execution.wait().await);
        if missed > 0 && sender.send(lagged(missed)).await.is_err() {
            return;
        }
        let _ = sender.send(last).await;
    });
    stream::unfold(
        (receiver, buffered),
        |(mut receiver, buffered)| async move {
            let (event, size) = receiver.recv().await?;
            buffered.fetch_sub(size, Ordering::AcqRel);
            Some((Ok(event), (receiver, buffered)))
        },
    )
}

/// `lagged`: how many events the client missed.
fn lagged(missed: u64) -> (SseEvent, usize) {
    json_event("lagged", &serde_json::json!({ "missed": missed }))
}

/// The stream's name for a progress event; `None` for events the stream does not carry.
fn progress_name(event: &Event) -> Option<&'static str> {
    Some(match event {
        Event::NodeStarted { .. } => "stage.start",
        Event::NodeCompleted { .. } => "stage.complete",
        Event::EdgeTransition { .. } => "decision",
        // A run started over HTTP waits out its retry backoffs where it runs; it waits
        // without a worker only after a node asked a question (`interrupt`) or slept, and
        // the stream then ends with `waiting` (the run).
        Event::NodeRetrying { .. } => "stage.retry",
        Event::Interrupted { .. } => "interrupt",
        _ => return None,
    })
}

/// `complete` with the run, or `error` with why it did not complete, and its size.
fn final_event(result: crate::Result<Run>) -> (SseEvent, usize) {
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

/// An event named `name` with `data` as JSON, and its size in bytes.
fn json_event(name: &str, data: &impl Serialize) -> (SseEvent, usize) {
    let data = serde_json::to_string(data)
        .unwrap_or_else(|e| format!("{{\"error\":\"unserializable event: {e}\"}}"));
    let size = data.len();
    (SseEvent::default().event(name).data(data), size)
}
