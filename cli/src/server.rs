//! The HTTP server under `workflows serve`: axum's router on hyper, with the bounds a server
//! facing the network needs against slow clients. Headers must arrive within a time limit
//! (an idle kept-alive connection waiting for its next request's headers is closed after
//! it too), and at most so many connections are served at once: past that, new ones wait in
//! the listen queue until one closes. (Slow request bodies are cut off by the router
//! itself, see `HttpLimits`.)

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The bounds on connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// How long a request's headers may take to arrive (and an idle connection may wait).
    pub(crate) header_timeout: Duration,
    /// How many connections are served at once.
    pub(crate) max_connections: usize,
}

/// Serves `app` on `listener` until `stop` says so; then takes no new connection and waits
/// for those open to finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: pause rather than spin.
                    eprintln!("warning: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A connection cut off (a timeout, a client gone) is the client's business.
            let _ = connection.await;
            drop(permit);
        });
    }
    graceful.shutdown().await;
}

/// Once `stop` says so.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped at once: it must not live across an await.
    let _ = stop.wait_for(|stop| *stop).await;
}
