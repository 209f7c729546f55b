//! Request bodies that arrive too slowly are cut off: after a grace period a body must keep up
//! a minimum rate, and it must be complete within a time limit, whatever the endpoint (the
//! ones that stream or wait for a run too: their timeout exemption is for the answer, not for
//! the upload). A body cut off fails its request with 408, naming the bound, and the
//! connection is closed rather than read to the end.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::time::Instant;

/// What the error of a body cut off says first (the extractors recognise it by it).
pub(super) const TOO_SLOW: &str = "the request body arrived too slowly";

/// The bounds on a request body's arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BodyRate {
    /// The whole body within this.
    pub(super) timeout: Duration,
    /// After `grace`, at least this many bytes a second on average.
    pub(super) min_bytes_per_sec: u64,
    pub(super) grace: Duration,
}

impl BodyRate {
    /// When the byte after `read` must have arrived, for a body that started at `started`.
    fn deadline(&self, started: Instant, read: u64) -> Instant {
        let by_rate = if self.min_bytes_per_sec == 0 {
            self.timeout
        } else {
            self.grace + Duration::from_secs_f64((read + 1) as f64 / self.min_bytes_per_sec as f64)
        };
        started + by_rate.min(self.timeout)
    }
}

/// Wraps the request's body so that reading it fails once it falls behind `rate`.
pub(super) async fn bounded_body(
    State(rate): State<BodyRate>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let started = Instant::now();
    let chunks = body.into_data_stream();
    let guarded = futures_util::stream::unfold(
        (chunks, 0u64, false),
        move |(mut chunks, read, ended)| async move {
            if ended {
                return None;
            }
            match tokio::time::timeout_at(rate.deadline(started, read), chunks.next()).await {
                Ok(Some(Ok(bytes))) => {
                    let read = read + bytes.len() as u64;
                    Some((Ok::<Bytes, axum::Error>(bytes), (chunks, read, false)))
                }
                Ok(Some(Err(e))) => Some((Err(e), (chunks, read, true))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(axum::Error::new(format!(
                        "{TOO_SLOW}: {read} bytes in {:.1} s, where a body must keep up {} bytes a second after its first {} s and be complete within {} s",
                        started.elapsed().as_secs_f64(),
                        rate.min_bytes_per_sec,
                        rate.grace.as_secs(),
                        rate.timeout.as_secs()
                    ))),
                    (chunks, read, true),
                )),
            }
        },
    );
    next.run(Request::from_parts(parts, Body::from_stream(guarded)))
        .await
}
