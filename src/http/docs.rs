//! The contract and its reader: `/openapi.json` and the interactive docs page at `/docs`
//! (Swagger UI, embedded in the binary).

use std::sync::Arc;

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::{Uri, header};
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use serde_json::{Value, json};

use super::ApiState;

const SWAGGER_UI_JS: &str = include_str!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &str = include_str!("../../assets/swagger-ui/swagger-ui.css");

/// The page: Swagger UI reading `openapi.json` next to it.
const DOCS_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>workflows API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="docs"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
  // The token the inspector page keeps for this tab, if the server asks for one.
  const token = sessionStorage.getItem("workflows-token");
  window.ui = SwaggerUIBundle({
    url: "openapi.json", dom_id: "#docs", deepLinking: true,
    requestInterceptor: (request) => {
      if (token) request.headers["Authorization"] = "Bearer " + token;
      return request;
    },
  });
</script>
</body>
</html>
"##;

/// `/openapi.json`, `/docs` and the docs' assets.
pub(super) fn contract_route(spec: Value) -> Router<ApiState> {
    let spec = Arc::new(spec);
    Router::new().route(
        "/openapi.json",
        get(move |original: OriginalUri, uri: Uri| served_spec(spec.clone(), original, uri)),
    )
}

/// `/docs` and its assets: static, so served without a token.
pub(super) fn page_routes() -> Router<ApiState> {
    Router::new()
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SWAGGER_UI_JS) }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], SWAGGER_UI_CSS) }),
        )
}

/// The contract, with the prefix the router is mounted under as its server, so that its
/// paths resolve from wherever it is served.
async fn served_spec(
    spec: Arc<Value>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> impl IntoResponse {
    let prefix = super::inspector::mount_prefix(&original, &uri);
    let mut spec = (*spec).clone();
    if !prefix.is_empty() {
        spec["servers"] = json!([{"url": prefix}]);
    }
    Json(spec)
}
