//! What the process tests share: `workflows worker` and `workflows serve` processes they can
//! signal.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod browser;

/// Guards against hangs only.
pub const HANG: Duration = Duration::from_secs(120);

/// A `workflows worker` or `workflows serve` process, killed if the test ends first.
pub struct WorkerProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    seen: std::sync::Mutex<Vec<String>>,
    /// What it prints when it has stopped.
    stopped: &'static str,
}

impl WorkerProcess {
    /// `workflows worker ARGS`, once it has started.
    pub fn start(url: &str, args: &[&str]) -> Self {
        let worker = Self::spawn(url, "worker", args, "worker stopped", false);
        worker.expect_line("worker ");
        worker
    }

    /// `workflows worker ARGS` at once, whether or not it can start; its standard error's
    /// lines come with its output's, each prefixed `stderr: `.
    pub fn launch(url: &str, args: &[&str]) -> Self {
        Self::spawn(url, "worker", args, "worker stopped", true)
    }

    /// `workflows worker ARGS`, once it has started, logging each node it starts (see
    /// [`WorkerProcess::node_starts`]).
    pub fn start_logging_nodes(url: &str, args: &[&str]) -> Self {
        let worker = Self::spawn(url, "worker", args, "worker stopped", true);
        worker.expect_line("worker ");
        worker
    }

    /// How many times this process started each node of `run`, from its log: every start
    /// of a node's function is logged just before it is called.
    pub fn node_starts(&self, run: impl std::fmt::Display) -> Vec<String> {
        let run = format!("run_id={run}");
        let mut seen = self.seen.lock().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
        seen.iter()
            .filter(|line| line.contains("node started") && line.contains(&run))
            .filter_map(|line| line.split(" node=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|node| node.trim_matches('"').to_owned())
            .collect()
    }

    /// `workflows serve --addr 127.0.0.1:0 ARGS`, once it listens, and its base URL.
    pub fn serve(url: &str, args: &[&str]) -> (Self, String) {
        let mut all = vec!["--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let server = Self::spawn(url, "serve", &all, "stopped", false);
        let line = server.expect_line("serving ");
        let base = line["serving ".len()..]
            .split('/')
            .take(3)
            .collect::<Vec<_>>()
            .join("/");
        (server, base)
    }

    fn spawn(
        url: &str,
        command: &str,
        args: &[&str],
        stopped: &'static str,
        read_stderr: bool,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_workflows"))
            .arg(command)
            .args(args)
            .env("DATABASE_URL", url)
            .env(
                "RUST_LOG",
                if read_stderr {
                    "workflows=info,workflows::exec::observer=debug"
                } else {
                    "workflows=info"
                },
            )
            .stdout(Stdio::piped())
            // The worker's log, for when a test fails: set WORKFLOWS_TEST_WORKER_LOGS=1.
            .stderr(if read_stderr {
                Stdio::piped()
            } else if std::env::var_os("WORKFLOWS_TEST_WORKER_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        if let Some(stderr) = child.stderr.take() {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let line = format!("stderr: {}", line.unwrap_or_default());
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if sender.send(line.unwrap_or_default()).is_err() {
                    return;
                }
            }
        });
        WorkerProcess {
            child,
            lines,
            seen: std::sync::Mutex::new(Vec::new()),
            stopped,
        }
    }

    pub fn expect_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + HANG;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => {
                    self.seen.lock().unwrap().push(line.clone());
                    return line;
                }
                Ok(line) => {
                    self.seen.lock().unwrap().push(line.clone());
                    seen.push(line);
                }
                Err(e) => panic!(
                    "no line starting with {prefix:?}: {e}; the lines before:\n{}",
                    seen[seen.len().saturating_sub(30)..].join("\n")
                ),
            }
        }
    }

    /// Its resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// SIGTERM, then the exit status.
    pub fn stop(self) -> std::process::ExitStatus {
        self.stop_with_report().0
    }

    /// SIGTERM, then the exit status and the line that reported the stop.
    pub fn stop_with_report(mut self) -> (std::process::ExitStatus, String) {
        self.signal("-TERM");
        let report = self.expect_line(self.stopped);
        (self.child.wait().unwrap(), report)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
