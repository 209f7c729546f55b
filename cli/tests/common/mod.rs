//! What the process tests share: a `workflows worker` process they can signal.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Guards against hangs only.
pub const HANG: Duration = Duration::from_secs(120);

/// A `workflows worker` process, killed if the test ends first.
pub struct WorkerProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl WorkerProcess {
    pub fn start(url: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_workflows"))
            .arg("worker")
            .args(args)
            .env("DATABASE_URL", url)
            .env("WORKFLOWS_CHAIN_LOG", "allow")
            .env("RUST_LOG", "workflows=info")
            .stdout(Stdio::piped())
            // The worker's log, for when a test fails: set WORKFLOWS_TEST_WORKER_LOGS=1.
            .stderr(
                if std::env::var_os("WORKFLOWS_TEST_WORKER_LOGS").is_some() {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                },
            )
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if sender.send(line.unwrap_or_default()).is_err() {
                    return;
                }
            }
        });
        let worker = WorkerProcess { child, lines };
        worker.expect_line("worker ");
        worker
    }

    pub fn expect_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + HANG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        self.expect_line("worker stopped");
        self.child.wait().unwrap()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
