//! `workflows serve`: the HTTP API, its docs and the run inspector, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use workflows::http::{BearerTokens, HttpApi, HttpLimits};
use workflows::{Executor, PageConfig, Pool, Registry};

use crate::Outcome;
use crate::output::outln;
use crate::worker::stop_signal;

/// How to serve.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    body_limit: usize,
    /// How long a request may take, in milliseconds (streams and waits excepted).
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// On stop, seconds executing runs may take to finish before they are cancelled.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// How long a request's headers may take to arrive, in milliseconds (an idle
    /// connection is closed after as long).
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// How long a request body may take to arrive, in milliseconds; after its first 5 s it
    /// must also keep up --body-min-rate.
    #[arg(long, default_value_t = 30_000)]
    body_timeout_ms: u64,
    /// The bytes a second a request body must keep up after its first 5 s.
    #[arg(long, default_value_t = 1024)]
    body_min_rate: u64,
    /// How long a write may wait for the client to read, in milliseconds; a client that
    /// stops reading (a progress stream it never reads) is disconnected after it.
    #[arg(long, default_value_t = 30_000)]
    write_timeout_ms: u64,
    /// The most connections served at once; more wait until one closes.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// The most runs executing inside the server at once (started or resumed over HTTP);
    /// past it, execute and resume answer 503 with Retry-After.
    #[arg(long, default_value_t = 32)]
    max_runs: usize,
    /// A file of the bearer tokens to accept, one per line: `rw:TOKEN` (read-write) or
    /// `ro:TOKEN` (read-only); `#` starts a comment. WORKFLOWS_API_TOKENS may hold the same
    /// entries, separated by commas.
    #[arg(long)]
    tokens_file: Option<std::path::PathBuf>,
    /// Serve a non-loopback address without tokens: anyone who can reach it may read every
    /// run and execute any workflow.
    #[arg(long)]
    insecure_no_auth: bool,
}

/// The tokens requests need (none: `--insecure-no-auth`, or a loopback address); an error if
/// the address is reachable from other machines and no token is given.
pub(crate) fn access(args: &ServeArgs) -> workflows::Result<Option<BearerTokens>> {
    let tokens = tokens(args)?;
    if tokens.is_none() && !args.addr.ip().is_loopback() && !args.insecure_no_auth {
        return Err(workflows::Error::invalid_input(
            "--addr",
            args.addr.to_string(),
            "is reachable from other machines, and no token is given: anyone could read every run and execute any workflow; give tokens (--tokens-file, or WORKFLOWS_API_TOKENS), serve 127.0.0.1, or say --insecure-no-auth",
        ));
    }
    Ok(tokens)
}

/// The tokens of `--tokens-file` and WORKFLOWS_API_TOKENS, none if neither is given.
fn tokens(args: &ServeArgs) -> workflows::Result<Option<BearerTokens>> {
    let mut text = String::new();
    if let Some(path) = &args.tokens_file {
        text = std::fs::read_to_string(path).map_err(|e| {
            workflows::Error::invalid_input(
                "--tokens-file",
                path.display().to_string(),
                format_args!("cannot be read: {e}"),
            )
        })?;
    }
    if let Ok(from_env) = std::env::var("WORKFLOWS_API_TOKENS") {
        text.push('\n');
        text.push_str(&from_env);
    }
    if text.trim().is_empty() {
        if args.tokens_file.is_some() {
            return Err(workflows::Error::invalid_input(
                "--tokens-file",
                args.tokens_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                "holds no token; add lines `rw:TOKEN` or `ro:TOKEN`",
            ));
        }
        return Ok(None);
    }
    BearerTokens::parse(&text).map(Some)
}

/// Serves until SIGINT or SIGTERM, then stops taking requests, lets runs finish for the
/// drain period, cancels those still executing, and closes the connections left.
pub(crate) async fn serve(
    pool: Pool,
    pages: PageConfig,
    args: ServeArgs,
    tokens: Option<BearerTokens>,
) -> workflows::Result<Outcome> {
    let executor = Executor::builder(pool, Registry::from_compiled()?)
        .runtime(crate::samples::runtime())
        .config(workflows::ExecutorConfig::default().max_runs(args.max_runs))
        .build()?;
    let mut api = HttpApi::new(executor.clone());
    if let Some(tokens) = &tokens {
        api = api.auth(tokens.clone());
    }
    let app = api
        .page_config(pages)
        .limits(
            HttpLimits::default()
                .body_bytes(args.body_limit)
                .request_timeout(Duration::from_millis(args.request_timeout_ms))
                .body_timeout(Duration::from_millis(args.body_timeout_ms))
                .body_min_rate(args.body_min_rate),
        )
        .router();
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| {
            workflows::Error::invalid_input(
                "--addr",
                args.addr.to_string(),
                format_args!("cannot listen: {e}"),
            )
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| workflows::Error::invalid_input("--addr", args.addr.to_string(), e))?;
    // Registered before saying so, so that a signal right after the message is not lost.
    let stop = stop_signal();
    outln!(
        "serving http://{addr}/ (the API under /workflows, its contract at /openapi.json, docs at /docs)"
    );
    match &tokens {
        Some(tokens) => outln!("requests need a bearer token ({tokens:?})"),
        None => outln!("no authentication: every caller may read and change everything"),
    }

    let stopping = tokio::sync::watch::channel(false);
    let stopped = stopping.1.clone();
    let limits = crate::server::ConnectionLimits {
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        write_timeout: Duration::from_millis(args.write_timeout_ms),
        max_connections: args.max_connections,
    };
    let server = tokio::spawn(crate::server::serve(listener, app, limits, stopped));
    stop.await;
    outln!(
        "stopping: no new requests; runs get {} s to finish",
        args.drain_secs
    );
    let _ = stopping.0.send(true);
    let report = executor
        .shutdown(Duration::from_secs(args.drain_secs))
        .await;
    // Streams of cancelled runs end now; give their connections a moment to close.
    let closed = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_ok();
    outln!(
        "stopped ({} runs cancelled{})",
        report.cancelled.len(),
        if closed { "" } else { ", some connections cut" }
    );
    Ok(Outcome::Success)
}
