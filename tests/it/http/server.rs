//! A real HTTP server for the API tests: the router on a local port, over an executor on a
//! schema of its own, with workflows that complete, branch, fail, and wait for the test.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use workflows::http::{HttpApi, HttpLimits};
use workflows::testing::IsolatedSchema;
use workflows::{Executor, Registry, Runtime, WorkflowDef};

use crate::fixtures::{Gate, flaky, gated, linear, route};

/// A server, its executor and database, and the gate `gated` runs wait at.
pub(crate) struct TestServer {
    pub(crate) base: String,
    pub(crate) executor: Executor,
    pub(crate) gate: Arc<Gate>,
    pub(crate) client: reqwest::Client,
    schema: IsolatedSchema,
    server: tokio::task::JoinHandle<()>,
}

/// What a server is built with.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) limits: HttpLimits,
    /// Where the API is mounted: "" for the root.
    pub(crate) prefix: &'static str,
    /// The tokens it requires, if any.
    pub(crate) auth: Option<workflows::http::BearerTokens>,
    /// Its executor's configuration.
    pub(crate) config: workflows::ExecutorConfig,
}

impl TestServer {
    pub(crate) async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub(crate) async fn with(options: Options) -> Self {
        let schema = IsolatedSchema::create().await.unwrap();
        let gate = Arc::new(Gate(Notify::new()));
        let runtime = Runtime::builder()
            .with_arc(Arc::clone(&gate))
            .with(crate::fixtures::Ledger::default())
            .build();
        let executor = Executor::builder(schema.pool().clone(), registry())
            .runtime(runtime)
            .config(options.config)
            .build()
            .unwrap();
        let mut api = HttpApi::new(executor.clone()).limits(options.limits);
        if let Some(tokens) = options.auth {
            api = api.auth(tokens);
        }
        let api = api.router();
        let app = if options.prefix.is_empty() {
            api
        } else {
            axum::Router::new().nest(options.prefix, api)
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer {
            base: format!("http://{addr}{}", options.prefix),
            executor,
            gate,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            schema,
            server,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// `POST path` without a body.
    pub(crate) async fn post(&self, path: &str) -> reqwest::Response {
        self.client.post(self.url(path)).send().await.unwrap()
    }

    pub(crate) async fn delete(&self, path: &str) -> reqwest::Response {
        self.client.delete(self.url(path)).send().await.unwrap()
    }

    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Starts a run with `?wait=true` and returns its final record.
    pub(crate) async fn run(&self, workflow: &str, params: serde_json::Value) -> workflows::Run {
        let response = self
            .post_json(&format!("/workflows/{workflow}/execute?wait=true"), &params)
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub(crate) async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.executor.shutdown(Duration::from_secs(5)).await;
        self.schema.drop_schema().await.unwrap();
    }
}

/// One Server-Sent Event: its name and its data parsed as JSON.
#[derive(Debug)]
pub(crate) struct Sse {
    pub(crate) event: String,
    pub(crate) data: serde_json::Value,
}

/// The events' names, in order.
pub(crate) fn names(events: &[Sse]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

/// Reads a progress stream's events as they arrive, until the stream ends.
pub(crate) struct SseReader {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buffer: String,
}

impl SseReader {
    pub(crate) fn new(response: reqwest::Response) -> Self {
        SseReader {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event; `None` when the stream has ended.
    pub(crate) async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = name.trim().to_owned();
                    } else if let Some(text) = line.strip_prefix("data:") {
                        data.push(text.strip_prefix(' ').unwrap_or(text).to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data.join("\n")).unwrap();
                return Some(Sse { event, data });
            }
            let chunk = self.body.next().await?.unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Every remaining event.
    pub(crate) async fn rest(&mut self) -> Vec<Sse> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// `nodes` nodes in a line, each adding 50 KB to the state: events that grow large.
async fn heavy(
    g: &mut workflows::GraphBuilder,
    p: workflows::Params,
) -> Result<workflows::State, workflows::BoxError> {
    let nodes: usize = p.get("nodes")?.unwrap_or(30);
    for i in 0..nodes {
        g.add_node(
            format!("n{i}"),
            move |mut state: workflows::State, _: workflows::NodeContext| async move {
                state.set(format!("k{i}"), "x".repeat(50_000));
                Ok(state)
            },
        );
        if i > 0 {
            g.add_edge(format!("n{}", i - 1), format!("n{i}"));
        }
    }
    g.set_entry_point("n0")
        .add_exit_point(format!("n{}", nodes - 1));
    Ok(workflows::State::new())
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    for def in [
        WorkflowDef::new("linear", "a, b, c", |g, r, p| Box::pin(linear(g, r, p))),
        WorkflowDef::new("route", "routes on kind", |g, r, p| {
            Box::pin(route(g, r, p))
        }),
        WorkflowDef::new(
            "gated",
            "waits at the gate in `wait` (stops when cancelled if `polite`)",
            |g, r, p| Box::pin(gated(g, r, p)),
        ),
        WorkflowDef::new("flaky", "fails at b the first time", |g, r, p| {
            Box::pin(flaky(g, r, p))
        }),
        WorkflowDef::new("asking", "asks ok, then records the answer", |g, r, p| {
            Box::pin(crate::fixtures::asking(g, r, p))
        }),
        crate::fixtures::tally(),
        WorkflowDef::new(
            "heavy",
            "`nodes` nodes (default 30), each adding 50 KB to the state",
            |g, _, p| Box::pin(heavy(g, p)),
        ),
    ] {
        registry.register(def).unwrap();
    }
    registry
}
