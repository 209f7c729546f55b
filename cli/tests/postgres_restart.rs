//! PostgreSQL restarted under running workers: they reconnect, and every run ends completed,
//! or failed with a clear message; none is left running. The test starts a PostgreSQL of its
//! own (`scripts/dev-db`, private cluster) so that it can restart it.
#![allow(clippy::unwrap_used)] // test helpers panic on failure, which is what a test wants

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use workflows::db::Migrator;
use workflows::schema::{runs, stages};
use workflows::{RunStatus, StageStatus};

mod common;

use common::{HANG, WorkerProcess};

/// Starts a worker with a short lease, so that runs it lost are taken over quickly.
fn worker(url: &str, name: &str) -> WorkerProcess {
    WorkerProcess::start(
        url,
        &[
            "--name",
            name,
            "--concurrency",
            "4",
            "--lease-ms",
            "2000",
            "--heartbeat-ms",
            "400",
            "--poll-ms",
            "200",
        ],
    )
}

/// A private PostgreSQL cluster, stopped and removed when dropped.
struct Cluster {
    dir: PathBuf,
    port: u16,
    url: String,
}

impl Cluster {
    fn dev_db(&self, action: &str) -> std::process::Output {
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dev-db"))
            .arg(action)
            .env_remove("DATABASE_URL")
            .env("WORKFLOWS_DEV_DB", "private")
            .env("WORKFLOWS_DEV_DB_NO_INSTALL", "1")
            .env("WORKFLOWS_DEV_DB_PORT", self.port.to_string())
            .env("WORKFLOWS_DEV_DB_DIR", &self.dir)
            .env("WORKFLOWS_DEV_DB_NAME", "restart_test")
            .output()
            .unwrap()
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("wf-restart-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // The cluster may run as another user (PostgreSQL refuses root): let it in.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cluster = Cluster {
            dir,
            port,
            url: String::new(),
        };
        let up = cluster.dev_db("up");
        assert!(
            up.status.success(),
            "dev-db: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        cluster.url = String::from_utf8(up.stdout).unwrap().trim().to_owned();
        cluster
    }

    fn restart(&self) {
        let restarted = self.dev_db("restart");
        assert!(
            restarted.status.success(),
            "{}",
            String::from_utf8_lossy(&restarted.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.dev_db("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A connection, retried while the server restarts.
async fn connect(url: &str) -> AsyncPgConnection {
    let deadline = Instant::now() + HANG;
    loop {
        match AsyncPgConnection::establish(url).await {
            Ok(conn) => return conn,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot connect: {e}"),
        }
    }
}

async fn count_in(conn: &mut AsyncPgConnection, statuses: &[RunStatus]) -> i64 {
    runs::table
        .filter(runs::status.eq_any(statuses.to_vec()))
        .count()
        .get_result(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_survive_a_postgres_restart_under_running_workers() {
    let cluster = Cluster::start();
    Migrator::new(connect(&cluster.url).await)
        .run_pending()
        .await
        .unwrap();
    let mut conn = connect(&cluster.url).await;
    let rows: Vec<_> = (0..20)
        .map(|_| {
            (
                runs::workflow_name.eq("chain"),
                runs::status.eq(RunStatus::Pending),
                runs::submitted_by_library.eq(true),
                runs::params.eq(json!({"nodes": 6, "delay_ms": 150})),
            )
        })
        .collect();
    diesel::insert_into(runs::table)
        .values(rows)
        .execute(&mut conn)
        .await
        .unwrap();
    let workers = [worker(&cluster.url, "one"), worker(&cluster.url, "two")];

    // Restart once work is well under way.
    let deadline = Instant::now() + HANG;
    loop {
        let done: i64 = stages::table
            .filter(stages::status.eq(StageStatus::Completed))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        if done >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "the workers never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(conn);
    cluster.restart();

    let mut conn = connect(&cluster.url).await;
    let deadline = Instant::now() + HANG;
    while count_in(&mut conn, &[RunStatus::Pending, RunStatus::Running]).await > 0 {
        assert!(
            Instant::now() < deadline,
            "runs are stuck pending or running"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for worker in workers {
        assert!(worker.stop().success());
    }

    let ended: Vec<(RunStatus, Option<String>)> = runs::table
        .select((runs::status, runs::error_message))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(ended.len(), 20);
    for (status, error) in &ended {
        match status {
            RunStatus::Completed => {}
            RunStatus::Failed => assert!(
                error.as_deref().is_some_and(|e| !e.is_empty()),
                "a failure says why"
            ),
            other => panic!("a run ended {other}"),
        }
    }
    let completed = ended
        .iter()
        .filter(|(s, _)| *s == RunStatus::Completed)
        .count();
    eprintln!(
        "after the restart: {completed} of 20 runs completed, the rest failed with a message"
    );
    let leftover: i64 = stages::table
        .filter(stages::status.eq(StageStatus::Started))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(leftover, 0, "no stage is left started");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_worker_rides_out_five_restarts_and_its_long_run_completes_without_a_recovery() {
    let cluster = Cluster::start();
    Migrator::new(connect(&cluster.url).await)
        .run_pending()
        .await
        .unwrap();
    let mut conn = connect(&cluster.url).await;
    let id: workflows::RunId = diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq("chain"),
            runs::status.eq(RunStatus::Pending),
            runs::submitted_by_library.eq(true),
            runs::params.eq(json!({"nodes": 1000, "payload": 1, "delay_ms": 2})),
        ))
        .returning(runs::id)
        .get_result(&mut conn)
        .await
        .unwrap();
    drop(conn);
    // A lease that outlasts a restart: the live worker keeps its run throughout.
    let worker = WorkerProcess::start(
        &cluster.url,
        &[
            "--name",
            "steady",
            "--lease-ms",
            "8000",
            "--heartbeat-ms",
            "500",
            "--poll-ms",
            "200",
        ],
    );
    let completed = async |url: &str| -> i64 {
        let mut conn = connect(url).await;
        stages::table
            .filter(stages::run_id.eq(id))
            .filter(stages::status.eq(StageStatus::Completed))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap()
    };
    for restart in 1..=5 {
        let deadline = Instant::now() + HANG;
        while completed(&cluster.url).await < restart * 150 {
            assert!(Instant::now() < deadline, "the run stopped making progress");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.restart();
    }

    let mut conn = connect(&cluster.url).await;
    let deadline = Instant::now() + HANG;
    loop {
        let status: RunStatus = runs::table
            .find(id)
            .select(runs::status)
            .first(&mut conn)
            .await
            .unwrap();
        if status != RunStatus::Running && status != RunStatus::Pending {
            assert_eq!(status, RunStatus::Completed);
            break;
        }
        assert!(Instant::now() < deadline, "the run never ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(worker.stop().success());
    let (owner, recoveries): (Option<String>, i32) = runs::table
        .find(id)
        .select((runs::owner, runs::recoveries))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!((owner.as_deref(), recoveries), (Some("steady"), 0));
    let steps: Vec<(i32, StageStatus)> = stages::table
        .filter(stages::run_id.eq(id))
        .select((stages::iteration, stages::status))
        .order_by(stages::iteration)
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(steps.len(), 1000, "each node recorded once");
    assert!(
        steps
            .iter()
            .enumerate()
            .all(|(i, (step, status))| *step == i as i32 + 1 && *status == StageStatus::Completed)
    );
    let decided: i64 = workflows::schema::decisions::table
        .filter(workflows::schema::decisions::run_id.eq(id))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(decided, 1000);
}
