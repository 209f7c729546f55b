//! The `workflows` command, run as a process: listing and migrations.
#![allow(clippy::unwrap_used)] // test helpers panic on failure, which is what a test wants

use std::process::{Command, Output};

use workflows::testing::IsolatedSchema;

fn workflows(args: &[&str], database_url: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_workflows"));
    command.args(args).env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn list_shows_the_sample_workflows_sorted_by_name() {
    let out = stdout(&workflows(&["list"], None));
    let names: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["classify", "flaky", "reasoning", "summarize"]);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.contains("Linear: splits `text` into sentences"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_up_down_redo_and_status() {
    let schema = IsolatedSchema::create_unmigrated().await.unwrap();
    let url = Some(schema.database_url());
    let status = || stdout(&workflows(&["migrate", "status"], url));

    assert_eq!(
        status(),
        "pending  2026-11-25-000001_create_workflows\npending  2026-11-25-000002_workflows_integrity\n"
    );
    assert_eq!(
        stdout(&workflows(&["migrate", "up"], url)),
        "applied 20261125000001\napplied 20261125000002\n"
    );
    assert_eq!(stdout(&workflows(&["migrate", "up"], url)), "up to date\n");
    assert_eq!(
        stdout(&workflows(&["migrate", "redo"], url)),
        "redone 20261125000002\n"
    );
    assert_eq!(
        stdout(&workflows(&["migrate", "down"], url)),
        "reverted 20261125000002\n"
    );
    assert_eq!(
        status(),
        "applied  2026-11-25-000001_create_workflows\npending  2026-11-25-000002_workflows_integrity\n"
    );
    assert_eq!(
        stdout(&workflows(&["migrate", "down", "--all"], url)),
        "reverted 20261125000001\n"
    );
    assert_eq!(
        stdout(&workflows(&["migrate", "down"], url)),
        "nothing to revert\n"
    );
    assert_eq!(
        stdout(&workflows(&["migrate", "up"], url)),
        "applied 20261125000001\napplied 20261125000002\n"
    );
    schema.drop_schema().await.unwrap();
}

#[test]
fn migrate_without_a_database_url_says_what_to_set() {
    let out = workflows(&["migrate", "status"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DATABASE_URL") && stderr.contains("not set"),
        "{stderr}"
    );
}

#[test]
fn migrate_against_an_unreachable_database_fails_clearly() {
    let out = workflows(
        &["migrate", "up"],
        Some("postgres://postgres@127.0.0.1:1/nowhere"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not connect to PostgreSQL"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let out = workflows(&["frobnicate"], None);
    assert_eq!(out.status.code(), Some(2));
}
