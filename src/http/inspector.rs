//! The run inspector page at `/`: plain HTML, CSS and JavaScript embedded in the binary,
//! reading the API next to it. No build step.

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::{Uri, header};
use axum::response::Html;
use axum::routing::get;

use super::ApiState;

const PAGE: &str = include_str!("../../assets/inspector/index.html");
const SCRIPT: &str = include_str!("../../assets/inspector/inspector.js");
const STYLE: &str = include_str!("../../assets/inspector/inspector.css");

/// `/` and its assets.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(page))
        .route(
            "/inspector/inspector.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SCRIPT) }),
        )
        .route(
            "/inspector/inspector.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE) }),
        )
}

/// The page, with its `<base>` set to where the router is mounted, so that its relative
/// links reach the API and assets next to it under any prefix.
async fn page(OriginalUri(original): OriginalUri, uri: Uri) -> Html<String> {
    let prefix = mount_prefix(&original, &uri);
    Html(PAGE.replace("{{BASE}}", &format!("{}/", html_escape(prefix))))
}

/// The part of the request's original path above this router: `/api` when nested there.
pub(super) fn mount_prefix<'a>(original: &'a Uri, uri: &Uri) -> &'a str {
    let path = original.path();
    let inner = uri.path().trim_end_matches('/');
    path.trim_end_matches('/')
        .strip_suffix(inner)
        .unwrap_or("")
        .trim_end_matches('/')
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
