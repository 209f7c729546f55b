//! The run inspector page at `/`: plain HTML, CSS and JavaScript embedded in the binary,
//! reading the API next to it. No build step.

use axum::Router;
use axum::http::header;
use axum::response::Html;
use axum::routing::get;

use super::ApiState;

const PAGE: &str = include_str!("../../assets/inspector/index.html");
const SCRIPT: &str = include_str!("../../assets/inspector/inspector.js");
const STYLE: &str = include_str!("../../assets/inspector/inspector.css");

/// `/` and its assets.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/inspector/inspector.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SCRIPT) }),
        )
        .route(
            "/inspector/inspector.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE) }),
        )
}
