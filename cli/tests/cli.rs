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
    assert_eq!(
        names,
        [
            "approve",
            "chain",
            "classify",
            "flaky",
            "reasoning",
            "summarize"
        ]
    );
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.contains("Linear: splits `text` into sentences"),
        "{out}"
    );
}

/// The library's migrations, as (directory name, version), in order.
fn migrations() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let version = name.split('_').next().unwrap().replace('-', "");
            (name, version)
        })
        .collect()
}

/// One line per migration: `word` and the version.
fn lines(word: &str, versions: &[&(String, String)]) -> String {
    versions
        .iter()
        .map(|(_, v)| format!("{word} {v}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_up_down_redo_and_status() {
    let schema = IsolatedSchema::create_unmigrated().await.unwrap();
    let url = Some(schema.database_url());
    let status = || stdout(&workflows(&["migrate", "status"], url));
    let all = migrations();
    let every: Vec<_> = all.iter().collect();
    let (last, before_last) = every.split_last().unwrap();
    let listing = |applied: usize| -> String {
        all.iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let word = if i < applied { "applied" } else { "pending" };
                format!("{word}  {name}\n")
            })
            .collect()
    };

    assert_eq!(status(), listing(0));
    assert_eq!(
        stdout(&workflows(&["migrate", "up"], url)),
        lines("applied", &every)
    );
    assert_eq!(stdout(&workflows(&["migrate", "up"], url)), "up to date\n");
    assert_eq!(
        stdout(&workflows(&["migrate", "redo"], url)),
        lines("redone", &[last])
    );
    assert_eq!(
        stdout(&workflows(&["migrate", "down"], url)),
        lines("reverted", &[last])
    );
    assert_eq!(status(), listing(all.len() - 1));
    let reverted: Vec<_> = before_last.iter().rev().copied().collect();
    assert_eq!(
        stdout(&workflows(&["migrate", "down", "--all"], url)),
        lines("reverted", &reverted)
    );
    assert_eq!(
        stdout(&workflows(&["migrate", "down"], url)),
        "nothing to revert\n"
    );
    assert_eq!(
        stdout(&workflows(&["migrate", "up"], url)),
        lines("applied", &every)
    );
    schema.drop_schema().await.unwrap();
}

/// A database as the Go service leaves it: the seed's SQL, a run it resumed (iteration numbers
/// restarted) and a checkpoint of a run it deleted.
const GO_DATABASE: &str = concat!(
    include_str!("../../migrations/2026-11-25-000001_create_workflows/up.sql"),
    "
    INSERT INTO runs (id, workflow_name, status) VALUES ('11111111-1111-4111-8111-111111111111', 'chain', 'completed');
    INSERT INTO stages (run_id, node_name, iteration, status, created_at) VALUES
      ('11111111-1111-4111-8111-111111111111', 'step', 1, 'failed', '2026-01-01T12:00:00Z'),
      ('11111111-1111-4111-8111-111111111111', 'step', 1, 'completed', '2026-01-01T12:01:00Z');
    INSERT INTO checkpoints (run_id, state_data, checkpoint_node) VALUES ('22222222-2222-4222-8222-222222222222', '{}', 'step');
    "
);

#[tokio::test(flavor = "multi_thread")]
async fn migrate_adopts_the_go_service_s_tables_repairs_its_rows_and_keeps_them_on_down() {
    use diesel_async::SimpleAsyncConnection;
    let schema = IsolatedSchema::create_unmigrated().await.unwrap();
    schema
        .pool()
        .get()
        .await
        .unwrap()
        .batch_execute(GO_DATABASE)
        .await
        .unwrap();
    let url = Some(schema.database_url());
    let all = migrations();
    let (first, later) = all.split_first().unwrap();

    let refused = workflows(&["migrate", "up"], url);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stdout),
        format!(
            "adopted {} (the Go service's tables: kept as they are, with their rows)\n",
            first.1
        )
    );
    let report = String::from_utf8_lossy(&refused.stderr);
    for expected in [
        "refuses, so it was not applied and nothing was changed",
        "- 1 checkpoints belong to no run",
        "- 1 stages repeat the (run, node, iteration) of an earlier stage",
        "run 11111111-1111-4111-8111-111111111111: step at iteration 1, 2 times",
        "workflows migrate repair --apply",
    ] {
        assert!(report.contains(expected), "{expected:?} in:\n{report}");
    }
    let status = stdout(&workflows(&["migrate", "status"], url));
    assert_eq!(
        status.lines().next().unwrap(),
        format!("adopted  {}", first.0)
    );
    assert!(
        status.lines().skip(1).all(|l| l.starts_with("pending ")),
        "{status}"
    );

    let plan = stdout(&workflows(&["migrate", "repair"], url));
    assert!(
        plan.contains("repair: moved to workflows_repair_archive")
            && plan.ends_with("run `workflows migrate repair --apply` to carry this out\n"),
        "{plan}"
    );
    let repaired = stdout(&workflows(&["migrate", "repair", "--apply"], url));
    assert!(
        repaired.starts_with(
            "repaired 1 rows: checkpoints belong to no run (the Go service never deletes checkpoints)\nrepaired 1 rows: stages repeat"
        ) && repaired.ends_with("run `workflows migrate up` next\n"),
        "{repaired}"
    );
    assert_eq!(
        stdout(&workflows(&["migrate", "repair"], url)),
        "nothing to repair\n"
    );
    let later_refs: Vec<_> = later.iter().collect();
    assert_eq!(
        stdout(&workflows(&["migrate", "up"], url)),
        lines("applied", &later_refs)
    );

    let reverted: Vec<_> = later.iter().rev().collect();
    assert_eq!(
        stdout(&workflows(&["migrate", "down", "--all"], url)),
        format!(
            "{}released {} (its tables were adopted from the Go service and are kept; --drop-adopted drops them)\n",
            lines("reverted", &reverted),
            first.1
        )
    );
    let mut conn = schema.pool().get().await.unwrap();
    let kept: i64 = diesel_async::RunQueryDsl::get_result(
        diesel::QueryDsl::count(workflows::schema::runs::table),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(kept, 1, "the Go service's run is still there");

    stdout(&workflows(&["migrate", "up"], url));
    let dropped = stdout(&workflows(
        &["migrate", "down", "--all", "--drop-adopted"],
        url,
    ));
    assert!(
        dropped.ends_with(&format!("reverted {}\n", first.1)),
        "{dropped}"
    );
    assert_eq!(
        stdout(&workflows(&["migrate", "status"], url)),
        all.iter()
            .map(|(name, _)| format!("pending  {name}\n"))
            .collect::<String>()
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

/// A migrated schema of its own, and the URL that reaches it.
async fn migrated() -> (IsolatedSchema, String) {
    let schema = IsolatedSchema::create().await.unwrap();
    let url = schema.database_url().to_owned();
    (schema, url)
}

fn run_id_of(output: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the output names the run")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_shows_progress_and_show_and_runs_display_the_record() {
    let (schema, url) = migrated().await;
    let url = Some(url.as_str());
    let out = stdout(&workflows(
        &[
            "run",
            "reasoning",
            "--params",
            r#"{"question": "What is 2 + 3?", "delay_ms": 1}"#,
        ],
        url,
    ));
    assert!(out.contains("  ▸ analyze (step 1)"), "{out}");
    assert!(out.contains("  → calculate (arithmetic held)"), "{out}");
    assert!(out.contains("completed in"), "{out}");
    assert!(out.contains("the numbers add up to 5"), "{out}");
    let id = run_id_of(&out);

    let shown = stdout(&workflows(&["show", &id], url));
    assert!(shown.contains("status    completed"), "{shown}");
    for line in [
        "1     analyze    1        completed",
        "2     calculate  1        completed",
        "3     answer     1        completed",
    ] {
        assert!(shown.contains(line), "{line:?} in {shown}");
    }
    assert!(
        shown.contains("analyze    calculate  arithmetic  true"),
        "{shown}"
    );

    let listed = stdout(&workflows(
        &["runs", "--status", "completed", "--workflow", "reasoning"],
        url,
    ));
    assert!(listed.contains(&id), "{listed}");
    assert!(listed.ends_with("page 1 of 1, 1 runs\n"), "{listed}");
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_node_shows_its_wait_and_its_next_attempt() {
    let (schema, url) = migrated().await;
    let url = Some(url.as_str());
    // Run by a caller, the 6 s backoff is waited out in this process.
    let out = stdout(&workflows(
        &[
            "run",
            "flaky",
            "--params",
            r#"{"fail_at": "extract", "retryable": true, "delay_ms": 1}"#,
        ],
        url,
    ));
    assert!(
        out.contains("extract failed on its first attempt, as asked by fail_at (attempt 1 of 2; trying again in 6.0 s)"),
        "{out}"
    );
    assert!(
        out.contains("    retrying in 6.0 s (attempt 2/2)\n"),
        "{out}"
    );
    assert!(out.contains("  ▸ extract (step 1, attempt 2)"), "{out}");
    assert!(out.contains("completed in"), "{out}");
    let shown = stdout(&workflows(&["show", &run_id_of(&out)], url));
    assert!(
        shown.contains("1     extract    2        completed"),
        "{shown}"
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_asks_prints_its_question_and_answer_makes_a_worker_continue_it() {
    let (schema, url) = migrated().await;
    let url = Some(url.as_str());
    let out = stdout(&workflows(
        &["run", "approve", "--params", r#"{"topic": "rust"}"#],
        url,
    ));
    assert!(
        out.contains(
            r#"  ? draft asks approve: {"answer":"true or false","draft":"A post about rust"}"#
        ),
        "{out}"
    );
    let id = run_id_of(&out);
    assert!(
        out.contains(&format!(
            "answer with: workflows answer {id} approve --value JSON"
        )),
        "{out}"
    );
    assert!(out.contains("waiting in"), "{out}");

    let wrong = workflows(&["answer", &id, "nope", "--value", "true"], url);
    assert!(!wrong.status.success());
    let stderr = String::from_utf8(wrong.stderr).unwrap();
    assert!(stderr.contains(r#"did not ask "nope""#), "{stderr}");
    let bad_json = workflows(&["answer", &id, "approve", "--value", "yes"], url);
    assert!(!bad_json.status.success());
    let stderr = String::from_utf8(bad_json.stderr).unwrap();
    assert!(
        stderr.contains("invalid --value \"yes\": must be JSON"),
        "{stderr}"
    );

    let answered = stdout(&workflows(
        &["answer", &id, "approve", "--value", "true"],
        url,
    ));
    assert!(
        answered.contains("answered: a worker continues it"),
        "{answered}"
    );
    let shown = stdout(&workflows(&["show", &id], url));
    assert!(shown.contains("status    waiting"), "{shown}");
    assert!(shown.contains("approve"), "{shown}");
    assert!(shown.contains("true"), "{shown}");
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn run_in_a_terminal_prompts_for_the_answer_and_asks_again_when_it_is_not_json() {
    let (schema, url) = migrated().await;
    // `script` (util-linux) gives the command a terminal, fed from this test's input.
    let command = format!(
        "{} run approve --params '{{\"topic\": \"rust\"}}'",
        env!("CARGO_BIN_EXE_workflows")
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("DATABASE_URL", &url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux's `script` runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"yes\ntrue\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout).replace('\r', "");
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains(
            "answer approve (JSON, empty to leave it open)> error: invalid --value \"yes\""
        ),
        "{out}"
    );
    assert!(out.contains("> answered\n"), "{out}");
    let id = run_id_of(&out);
    let shown = stdout(&workflows(&["show", &id], Some(&url)));
    assert!(shown.contains("status    waiting"), "{shown}");
    let answers: Vec<_> = shown.lines().filter(|l| l.contains("approve")).collect();
    assert!(
        answers.iter().any(|l| l.trim_end().ends_with("true")),
        "{shown}"
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_exits_3_and_resume_completes_it() {
    let (schema, url) = migrated().await;
    let url = Some(url.as_str());
    let out = workflows(
        &[
            "run",
            "flaky",
            "--params",
            r#"{"fail_at": "load", "delay_ms": 1}"#,
        ],
        url,
    );
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("failed in"), "{text}");
    let id = run_id_of(&text);

    let resumed = stdout(&workflows(&["resume", &id], url));
    assert!(resumed.contains("resumed at load (step 4)"), "{resumed}");
    assert!(
        !resumed.contains("▸ extract"),
        "completed nodes do not run again: {resumed}"
    );
    assert!(resumed.contains("completed in"), "{resumed}");

    let out = workflows(&["resume", &id], url);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is completed: cannot resume"), "{stderr}");
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_from_another_process_stops_a_run() {
    use std::io::{BufRead, BufReader};

    let (schema, url) = migrated().await;
    let items: Vec<String> = (0..50).map(|i| format!("item {i}")).collect();
    let params = serde_json::json!({"items": items, "delay_ms": 200}).to_string();
    let mut runner = Command::new(env!("CARGO_BIN_EXE_workflows"))
        .args(["run", "classify", "--params", &params])
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(runner.stdout.take().unwrap()).lines();
    let id = run_id_of(&lines.next().unwrap().unwrap());
    // Once a node has completed, the run is well under way.
    for line in lines.by_ref() {
        if line.unwrap().starts_with("  ✓") {
            break;
        }
    }

    let cancelled = stdout(&workflows(&["cancel", &id], Some(&url)));
    assert_eq!(cancelled, format!("run {id} is cancelled\n"));
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert_eq!(runner.wait().unwrap().code(), Some(3), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("cancelled in")),
        "{rest:?}"
    );

    let shown = stdout(&workflows(&["show", &id], Some(&url)));
    assert!(shown.contains("status    cancelled"), "{shown}");
    assert!(shown.contains("cancelled while executing"), "{shown}");
    assert!(
        !shown.contains("tally"),
        "the run stopped before its end: {shown}"
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_reported_with_what_was_wrong() {
    let (schema, url) = migrated().await;
    let url = Some(url.as_str());
    for (args, message) in [
        (
            vec!["run", "summarize", "--params", "[1, 2]"],
            "must be a JSON object",
        ),
        (
            vec!["run", "summarize", "--params", "{not json"],
            "invalid --params",
        ),
        (vec!["run", "nope"], r#"workflow "nope" is not registered"#),
        (vec!["show", "42"], r#"invalid run id "42""#),
        (
            vec!["show", "6f5c4286-cbed-4c59-8f5c-4286cbed9c59"],
            "not found",
        ),
        (
            vec!["cancel", "6f5c4286-cbed-4c59-8f5c-4286cbed9c59"],
            "not found",
        ),
        (vec!["runs", "--status", "done"], r#"invalid status "done""#),
        (
            vec!["runs", "--sort", "id;drop table runs"],
            "not a sortable field",
        ),
    ] {
        let out = workflows(&args, url);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_page_by_cursor_to_the_last_page() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use workflows::schema::runs;

    let (schema, url) = migrated().await;
    let mut conn = schema.pool().get().await.unwrap();
    let mut created = Vec::new();
    for minute in 0..5u32 {
        let at =
            chrono::DateTime::from_timestamp(1_767_268_800 + 60 * i64::from(minute), 0).unwrap();
        let id: uuid::Uuid = diesel::insert_into(runs::table)
            .values((
                runs::workflow_name.eq("summarize"),
                runs::status.eq("completed"),
                runs::created_at.eq(at),
            ))
            .returning(runs::id)
            .get_result(&mut conn)
            .await
            .unwrap();
        created.push(id.to_string());
    }
    drop(conn);

    // `--cursor` alone starts at the newest run; each page prints where the next one starts.
    let mut listed = Vec::new();
    let mut args = vec![
        "runs".to_owned(),
        "--page-size=2".to_owned(),
        "--cursor".to_owned(),
    ];
    loop {
        let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = stdout(&workflows(&args_ref, Some(&url)));
        listed.extend(
            out.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next())
                .filter(|w| w.len() == 36)
                .map(str::to_owned),
        );
        let last = out.lines().last().unwrap_or_default();
        match last.strip_prefix("next page: --cursor ") {
            Some(cursor) => {
                args.truncate(2);
                args.extend(["--after".to_owned(), cursor.to_owned()]);
            }
            None => {
                assert_eq!(last, "last page", "{out}");
                break;
            }
        }
    }
    created.reverse();
    assert_eq!(listed, created);

    let out = workflows(&["runs", "--cursor", "page-2"], Some(&url));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"invalid cursor "page-2""#), "{stderr}");
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn show_piped_into_a_reader_that_stops_early_exits_quietly() {
    let (schema, url) = migrated().await;
    let out = stdout(&workflows(
        &[
            "run",
            "summarize",
            "--params",
            r#"{"text": "One. Two.", "delay_ms": 1}"#,
        ],
        Some(&url),
    ));
    let id = run_id_of(&out);
    // `workflows show ID | head -1`: the reader closes the pipe after one line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_workflows"))
        .args(["show", &id])
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.is_empty(), "nothing on stderr, no panic: {stderr}");
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn show_prints_numbers_as_stored() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use workflows::schema::runs;
    let (schema, url) = migrated().await;
    let odd: workflows::RawJson = serde_json::from_str(
        r#"{"big": 123456789012345678901234567890, "price": 1.10, "huge": 1e400}"#,
    )
    .unwrap();
    let id: workflows::RunId = diesel::insert_into(runs::table)
        .values((
            runs::workflow_name.eq("odd"),
            runs::status.eq(workflows::RunStatus::Completed),
            runs::params.eq(&odd),
            runs::result.eq(&odd),
        ))
        .returning(runs::id)
        .get_result(&mut schema.pool().get().await.unwrap())
        .await
        .unwrap();
    let shown = stdout(&workflows(&["show", &id.to_string()], Some(&url)));
    assert!(shown.contains("123456789012345678901234567890"), "{shown}");
    assert!(shown.contains("1.10"), "{shown}");
    let listed = stdout(&workflows(&["runs"], Some(&url)));
    assert!(listed.contains(&id.to_string()), "{listed}");
    schema.drop_schema().await.unwrap();
}

#[test]
fn a_worker_with_a_zero_lease_is_told_what_is_wrong() {
    let out = workflows(
        &["worker", "--lease-ms", "0"],
        Some("postgres://postgres@127.0.0.1:1/nowhere"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"invalid --lease-ms "0": must be above 0"#),
        "{stderr}"
    );
}

/// A sample is what anyone who can reach `workflows serve` may execute with any params: none
/// may reach a file, a process or the environment.
#[test]
fn no_sample_reaches_the_filesystem_a_process_or_the_environment() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/samples");
    let mut read = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let code = std::fs::read_to_string(&path).unwrap();
        for reach in [
            "std::fs",
            "tokio::fs",
            "File::",
            "std::env",
            "std::process",
            "Command::",
        ] {
            assert!(!code.contains(reach), "{} uses {reach}", path.display());
        }
        read += 1;
    }
    assert!(read >= 6, "read {read} samples");
}
