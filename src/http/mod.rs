//! The HTTP API (feature `http`): the Go service's workflow endpoints on axum, with live
//! progress as Server-Sent Events, an OpenAPI 3.1 contract at `/openapi.json`, interactive
//! docs at `/docs` and the run inspector page at `/`.
//!
//! [`HttpApi::router`] is a plain `axum::Router`: mount it under any prefix of an existing
//! application, sharing its executor (and so its pool and registry).
//!
//! ```
//! use workflows::http::HttpApi;
//! use workflows::{Executor, Registry};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pool = workflows::testing::pool().await?;
//! let executor = Executor::builder(pool, Registry::new()).build()?;
//! let app = axum::Router::new()
//!     .route("/health", axum::routing::get(|| async { "ok" }))
//!     .nest("/api", HttpApi::new(executor.clone()).router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let base = format!("http://{}", listener.local_addr()?);
//! # let client = tokio::spawn(async move {
//! #     reqwest::get(format!("{base}/api/workflows/runs/nope")).await.unwrap().text().await.unwrap()
//! # });
//! # let shutdown_signal = async { let _ = client.await; };
//! axum::serve(listener, app).with_graceful_shutdown(shutdown_signal).await?;
//! # Ok(()) }
//! ```
//!
//! Errors answer with the status of [`Error::status`](crate::Error::status) and an
//! [`ErrorBody`]; a 500 tells nothing internal, the log (through `tracing`) has the detail.

mod api_error;
mod auth;
mod docs;
mod extract;
mod inspector;
mod params_schema;
mod progress;
mod runs;
mod slow_body;
mod workflow_paths;
mod workflows;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use api_error::ErrorBody;
pub use auth::{Access, BearerAuth, BearerAuthLayer, BearerTokens, MIN_TOKEN_LEN};
pub use progress::{ProgressMessage, STREAM_BUFFER, STREAM_BUFFER_BYTES, StreamError};

use crate::{Executor, PageConfig};
use api_error::ApiError;

/// The bounds a server puts on requests: [`HttpLimits::default`] and its setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpLimits {
    /// The largest request body accepted (a run's params); larger is a 413.
    pub body_bytes: usize,
    /// How long a request may take, except those that stream or wait for a run; longer is
    /// a 503.
    pub request_timeout: Duration,
    /// How long a request body may take to arrive, whatever the endpoint (default 30 s).
    pub body_timeout: Duration,
    /// The rate a request body must keep up after its first 5 s, in bytes a second
    /// (default 1024). A body that falls behind, or takes longer than `body_timeout`, fails
    /// its request with 408.
    pub body_min_rate: u64,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            body_min_rate: 1024,
        }
    }
}

impl HttpLimits {
    /// The largest request body accepted.
    pub fn body_bytes(mut self, bytes: usize) -> Self {
        self.body_bytes = bytes;
        self
    }

    /// How long a request that does not stream or wait may take.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a request body may take to arrive.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The rate, in bytes a second, a request body must keep up after its first 5 s.
    pub fn body_min_rate(mut self, bytes_per_sec: u64) -> Self {
        self.body_min_rate = bytes_per_sec;
        self
    }
}

/// The workflow API over an [`Executor`]: build it, then take its [`HttpApi::router`].
#[derive(Clone)]
pub struct HttpApi {
    state: ApiState,
    inspector: bool,
    auth: Option<BearerTokens>,
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct ApiState {
    executor: Executor,
    pages: PageConfig,
    limits: HttpLimits,
}

impl ApiState {
    /// A pooled connection; none in time is [`Error::Unavailable`](crate::Error) (503).
    async fn conn(&self) -> crate::Result<crate::PooledConnection> {
        Ok(self.executor.pool().get().await?)
    }
}

impl HttpApi {
    /// The API of `executor`'s workflows and runs, with default page sizes and limits, and
    /// the inspector page.
    pub fn new(executor: Executor) -> Self {
        HttpApi {
            state: ApiState {
                executor,
                pages: PageConfig::default(),
                limits: HttpLimits::default(),
            },
            inspector: true,
            auth: None,
        }
    }

    /// Requires a bearer token of `tokens` on every request to the API and its contract
    /// (the inspector page and the docs page are static, and ask for a token themselves).
    /// Without it the router answers anyone: mount it behind your application's own
    /// authentication, or give it tokens.
    pub fn auth(mut self, tokens: BearerTokens) -> Self {
        self.auth = Some(tokens);
        self
    }

    /// Page sizes for the run list.
    pub fn page_config(mut self, pages: PageConfig) -> Self {
        self.state.pages = pages;
        self
    }

    /// Bounds on request bodies and durations.
    pub fn limits(mut self, limits: HttpLimits) -> Self {
        self.state.limits = limits;
        self
    }

    /// Whether to serve the run inspector page at `/` (default: yes).
    pub fn inspector(mut self, serve: bool) -> Self {
        self.inspector = serve;
        self
    }

    /// The OpenAPI 3.1 contract of the endpoints, as [`HttpApi::router`] serves it at
    /// `/openapi.json`: with a `POST /workflows/<name>/execute` for each of the executor's
    /// workflows, whose body is that workflow's params schema.
    pub fn openapi(&self) -> serde_json::Value {
        let spec = api_routes(self.state.limits.request_timeout)
            .split_for_parts()
            .1;
        contract(spec, self.state.executor.registry())
    }

    /// The router: the API under `/workflows`, `/openapi.json`, `/docs` and (unless turned
    /// off) the inspector at `/`.
    pub fn router(self) -> Router {
        let limits = self.state.limits.clone();
        let (api, spec) = api_routes(limits.request_timeout).split_for_parts();
        let spec = contract(spec, self.state.executor.registry());
        let mut protected = api.merge(docs::contract_route(spec));
        if let Some(tokens) = &self.auth {
            protected = protected.route_layer(tokens.layer());
        }
        let mut router = protected
            .merge(docs::page_routes())
            .fallback(no_route)
            .method_not_allowed_fallback(method_not_allowed);
        if self.inspector {
            router = router.merge(inspector::routes());
        }
        let rate = slow_body::BodyRate {
            timeout: limits.body_timeout,
            min_bytes_per_sec: limits.body_min_rate,
            grace: Duration::from_secs(5),
        };
        router
            .layer(DefaultBodyLimit::max(limits.body_bytes))
            .layer(middleware::from_fn_with_state(
                rate,
                slow_body::bounded_body,
            ))
            .with_state(self.state)
    }
}

/// The endpoints, each registered with its part of the contract, so that the two cannot
/// disagree. Those that stream or wait for a run are not bound by the request timeout.
fn api_routes(timeout: Duration) -> OpenApiRouter<ApiState> {
    let bounded = OpenApiRouter::new()
        .routes(routes!(workflows::list_workflows))
        .routes(routes!(runs::list_runs))
        .routes(routes!(runs::list_runs_keyset))
        .routes(routes!(runs::get_run, runs::delete_run))
        .routes(routes!(runs::get_stages))
        .routes(routes!(runs::get_state))
        .routes(routes!(runs::get_decisions))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(runs::get_interrupts))
        .routes(routes!(runs::answer_run))
        .routes(routes!(runs::send_message))
        .route_layer(middleware::from_fn_with_state(timeout, bounded_in_time));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(bounded)
        .routes(routes!(workflows::execute))
        .routes(routes!(runs::resume_run))
}

/// The endpoints' contract as JSON, with `registry`'s workflows' own execute paths.
fn contract(spec: utoipa::openapi::OpenApi, registry: &crate::Registry) -> serde_json::Value {
    // An OpenAPI document always serialises to JSON; `Null` would only ever mean a bug.
    let mut spec = serde_json::to_value(spec).unwrap_or_default();
    workflow_paths::add_workflow_paths(&mut spec, registry);
    auth::document(&mut spec);
    spec
}

/// Answers 503 for a request that takes longer than `limit`.
async fn bounded_in_time(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than {} ms and was abandoned; retry later",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// The answer for a path that is not part of the API.
async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {}; /openapi.json lists the API",
            uri.path()
        ),
    )
}

/// The answer for a known path with a method it does not take.
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}; /openapi.json lists the methods of each path",
            uri.path()
        ),
    )
}

/// The contract's title, description and tags; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "workflows",
        description = "Runs of state-graph workflows, recorded in PostgreSQL: start them with live progress, list, inspect, cancel, resume and delete them."
    ),
    tags(
        (name = "workflows", description = "The registered workflows, and starting a run"),
        (name = "runs", description = "Recorded runs, their stages and decisions"),
    ),
    components(schemas(ErrorBody, StreamError, ProgressMessage, crate::Event))
)]
struct ApiDoc;
