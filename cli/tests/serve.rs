//! `workflows serve` as a process: it serves the API, and on SIGTERM lets runs finish within
//! the drain period or cancels them.
#![allow(clippy::unwrap_used)] // test helpers panic on failure, which is what a test wants

mod common;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use workflows::testing::IsolatedSchema;

use common::WorkerProcess;

/// The progress stream's event names, and the last event's data, read to the end.
async fn read_stream(response: reqwest::Response) -> (Vec<String>, Value) {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let mut names = Vec::new();
    let mut last = Value::Null;
    for block in text.split("\n\n").filter(|b| b.contains("data:")) {
        for line in block.lines() {
            if let Some(name) = line.strip_prefix("event: ") {
                names.push(name.to_owned());
            } else if let Some(data) = line.strip_prefix("data: ") {
                last = serde_json::from_str(data).unwrap();
            }
        }
    }
    (names, last)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sigterm_a_running_run_finishes_within_the_drain_period() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(schema.database_url(), &["--drain-secs", "30"]);
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/workflows/chain/execute"))
        .json(&json!({"nodes": 3, "delay_ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stream = tokio::spawn(read_stream(response));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let (status, report) = tokio::task::spawn_blocking(move || server.stop_with_report())
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(report, "stopped (0 runs cancelled)");
    let (names, last) = stream.await.unwrap();
    assert_eq!(
        names.last().map(String::as_str),
        Some("complete"),
        "{names:?}"
    );
    assert_eq!(
        (last["status"].as_str(), last["result"]["counter"].as_i64()),
        (Some("completed"), Some(3))
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sigterm_a_run_still_executing_after_the_drain_period_is_cancelled() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(schema.database_url(), &["--drain-secs", "0"]);
    let response = reqwest::Client::new()
        .post(format!("{base}/workflows/chain/execute"))
        .json(&json!({"nodes": 3, "delay_ms": 60000}))
        .send()
        .await
        .unwrap();
    let stream = tokio::spawn(read_stream(response));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let (status, report) = tokio::task::spawn_blocking(move || server.stop_with_report())
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(report, "stopped (1 runs cancelled)");
    let (names, last) = stream.await.unwrap();
    assert_eq!(names.last().map(String::as_str), Some("error"), "{names:?}");
    assert_eq!(last["run"]["status"], "cancelled");
    schema.drop_schema().await.unwrap();
}

#[test]
fn serving_a_non_loopback_address_without_tokens_is_refused_unless_told_insecure() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_workflows"))
        .args(["serve", "--addr", "0.0.0.0:0"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env_remove("WORKFLOWS_API_TOKENS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"invalid --addr "0.0.0.0:0": is reachable from other machines, and no token is given"#
        ) && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );
    // Told, it goes on (and stops at the database this test gives it, which is unreachable).
    let told = std::process::Command::new(env!("CARGO_BIN_EXE_workflows"))
        .args(["serve", "--addr", "0.0.0.0:0", "--insecure-no-auth"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env_remove("WORKFLOWS_API_TOKENS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&told.stderr);
    assert!(stderr.contains("database unavailable"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_with_a_tokens_file_answers_only_requests_with_a_token() {
    let schema = IsolatedSchema::create().await.unwrap();
    let file = std::env::temp_dir().join(format!("workflows-tokens-{}", std::process::id()));
    std::fs::write(
        &file,
        "# the team's tokens\nrw:rw-0123456789abcdef0123\nro:ro-0123456789abcdef0123\n",
    )
    .unwrap();
    let (server, base) = WorkerProcess::serve(
        schema.database_url(),
        &["--tokens-file", file.to_str().unwrap(), "--drain-secs", "0"],
    );
    server
        .expect_line("requests need a bearer token (BearerTokens { read_write: 1, read_only: 1 })");
    let client = reqwest::Client::new();
    let runs = format!("{base}/workflows/runs");
    assert_eq!(client.get(&runs).send().await.unwrap().status(), 401);
    let read = client
        .get(&runs)
        .bearer_auth("ro-0123456789abcdef0123")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let refused = client
        .post(format!("{base}/workflows/chain/execute?wait=true"))
        .bearer_auth("ro-0123456789abcdef0123")
        .json(&json!({"nodes": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let executed = client
        .post(format!("{base}/workflows/chain/execute?wait=true"))
        .bearer_auth("rw-0123456789abcdef0123")
        .json(&json!({"nodes": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(executed.status(), 200);
    std::fs::remove_file(&file).unwrap();
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}

/// The most the server may hold, in KiB, after 100 executes beyond its bound: its memory at
/// rest (about 21 MiB here) and room for the requests, well under what executing them would take.
const REFUSED_RSS_CEILING_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_executes_beyond_the_bound_are_refused_with_503_and_the_memory_stays_bounded() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(
        schema.database_url(),
        &["--max-runs", "2", "--drain-secs", "0"],
    );
    let client = reqwest::Client::new();
    let execute = format!("{base}/workflows/chain/execute");
    // Two runs whose one node pauses a minute hold the bound.
    let mut held = Vec::new();
    for _ in 0..2 {
        let response = client
            .post(&execute)
            .json(&json!({"nodes": 1, "delay_ms": 60_000}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    let before = server.rss_kib();
    // The request that once ran for minutes and took hundreds of MiB inside the server.
    let heavy = json!({"nodes": 200, "payload": 20000});
    let refusals = futures_util::future::join_all((0..100).map(|_| {
        client
            .post(format!("{execute}?wait=true"))
            .json(&heavy)
            .send()
    }))
    .await;
    let after = server.rss_kib();
    for refused in refusals {
        let refused = refused.unwrap();
        assert_eq!(refused.status(), 503);
        assert_eq!(refused.headers()["retry-after"], "1");
    }
    eprintln!("serve RSS: {before} KiB before, {after} KiB after 100 refused executes");
    assert!(after < REFUSED_RSS_CEILING_KIB, "{after} KiB");
    drop(held);
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}

/// `host:port` of a base URL.
fn address(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Whether the server closed `stream` (a read gives 0 bytes, or an error) within `within`,
/// reading and dropping whatever it sends first.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_cut_off_at_the_header_timeout_while_other_requests_are_answered() {
    use tokio::io::AsyncWriteExt;
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(
        schema.database_url(),
        &["--header-timeout-ms", "1000", "--drain-secs", "0"],
    );
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut stream = tokio::net::TcpStream::connect(address(&base))
            .await
            .unwrap();
        stream
            .write_all(b"GET /workflows HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // One more header line each, a second apart, as a slowloris client sends them.
    let dripping = tokio::spawn(async move {
        let mut closed = 0;
        for second in 0..5 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            for stream in &mut slow {
                let _ = stream
                    .write_all(format!("X-Drip-{second}: 1\r\n").as_bytes())
                    .await;
            }
        }
        for stream in &mut slow {
            if closed_within(stream, Duration::from_secs(5)).await {
                closed += 1;
            }
        }
        closed
    });
    // Meanwhile a normal client is answered.
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let asked = Instant::now();
        let answer = client
            .get(format!("{base}/workflows"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        latencies.push(asked.elapsed());
    }
    let closed = dripping.await.unwrap();
    latencies.sort();
    eprintln!(
        "slowloris: {closed} of 40 closed by {:.1} s; normal requests meanwhile: p50 {:?}, max {:?}",
        started.elapsed().as_secs_f64(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert_eq!(closed, 40, "every slow header cut off");
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_sent_a_byte_at_a_time_is_cut_off_with_408_even_where_answers_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(
        schema.database_url(),
        &["--body-timeout-ms", "2000", "--drain-secs", "0"],
    );
    let started = Instant::now();
    let mut uploads = Vec::new();
    for _ in 0..20 {
        let address = address(&base);
        uploads.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"POST /workflows/chain/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
                .await
                .unwrap();
            let mut answer = Vec::new();
            let mut buffer = [0u8; 1024];
            loop {
                tokio::select! {
                    read = stream.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => answer.extend_from_slice(&buffer[..n]),
                    },
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        if stream.write_all(b" ").await.is_err() {
                            break;
                        }
                    }
                }
            }
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    for upload in uploads {
        let answer = tokio::time::timeout(Duration::from_secs(30), upload)
            .await
            .expect("cut off, not left hanging")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("the request body arrived too slowly"),
            "{answer}"
        );
    }
    eprintln!(
        "slow bodies: 20 of 20 cut off with 408 by {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let runs: serde_json::Value = reqwest::get(format!("{base}/workflows/runs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs["total"], 0, "none of them started a run");
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_and_connections_past_the_cap_wait_for_a_free_one() {
    use tokio::io::AsyncWriteExt;
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(
        schema.database_url(),
        &[
            "--header-timeout-ms",
            "1500",
            "--max-connections",
            "3",
            "--drain-secs",
            "0",
        ],
    );
    // Three connections that say nothing take every slot.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            tokio::net::TcpStream::connect(address(&base))
                .await
                .unwrap(),
        );
    }
    let opened = Instant::now();
    // A fourth is answered only once the idle ones are closed, at the header timeout.
    let answer = reqwest::Client::new()
        .get(format!("{base}/workflows"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "answered after {waited:?}"
    );
    for stream in &mut idle {
        assert!(closed_within(stream, Duration::from_secs(5)).await);
    }
    // A kept-alive connection that goes quiet after its request is closed too.
    let mut kept = tokio::net::TcpStream::connect(address(&base))
        .await
        .unwrap();
    kept.write_all(b"GET /workflows HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut kept, Duration::from_secs(10)).await);
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}

/// The most the server may hold, in KiB, while a client that stopped reading a heavy run's
/// progress stream is still connected: its memory at rest, the run's own state (2 MB at the
/// end) and the stream's bounded buffer (8 MiB of events, `STREAM_BUFFER_BYTES`).
const STALLED_STREAM_RSS_CEILING_KIB: u64 = 96 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_progress_stream_nobody_reads_is_disconnected_with_memory_bounded_and_its_run_completes()
{
    use tokio::io::AsyncWriteExt;
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(
        schema.database_url(),
        &["--write-timeout-ms", "2000", "--drain-secs", "0"],
    );
    let body = r#"{"nodes": 100, "payload": 20000}"#;
    let mut stream = tokio::net::TcpStream::connect(address(&base))
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "POST /workflows/chain/execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Read nothing while the run goes (every event carries its state: hundreds of MB in all).
    let mut peak = 0;
    let client = reqwest::Client::new();
    let completed = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            peak = peak.max(server.rss_kib());
            let runs: Value = client
                .get(format!("{base}/workflows/runs?status=completed"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if runs["total"] == 1 {
                return runs["data"][0].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the run completes though its client reads nothing");
    assert_eq!(completed["result"]["counter"], 100);
    let waited = Instant::now();
    assert!(
        closed_within(&mut stream, Duration::from_secs(30)).await,
        "the stalled stream is closed"
    );
    eprintln!(
        "stalled stream: peak RSS {peak} KiB while it was open; closed {:.1} s after the run completed",
        waited.elapsed().as_secs_f64()
    );
    assert!(peak < STALLED_STREAM_RSS_CEILING_KIB, "{peak} KiB");
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}
