//! The run inspector page, opened in headless Chromium (Debian's `chromium` package; install
//! it, as `./scripts/test` does, or set WORKFLOWS_SKIP_BROWSER=1 to skip these tests): what it
//! shows of the runs list and of one run.
#![allow(clippy::unwrap_used)] // test helpers panic on failure, which is what a test wants

mod common;

use std::process::Command;

use serde_json::{Value, json};
use workflows::testing::IsolatedSchema;

use common::WorkerProcess;
use common::browser::{self, Browser};

/// The page's DOM once its scripts have loaded what they show, or `None` when the browser
/// tests are skipped.
fn rendered(url: &str) -> Option<String> {
    if std::env::var_os("WORKFLOWS_SKIP_BROWSER").is_some() {
        eprintln!("skipped: WORKFLOWS_SKIP_BROWSER is set");
        return None;
    }
    let profile = std::env::temp_dir().join(format!("workflows-chromium-{}", uuid::Uuid::new_v4()));
    let output = Command::new("chromium")
        .args(browser::HEADLESS)
        .args([
            &format!("--user-data-dir={}", profile.display()),
            // Lets the page's fetches and timers settle before the DOM is taken.
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): install Debian's chromium package, or set WORKFLOWS_SKIP_BROWSER=1")
        });
    let _ = std::fs::remove_dir_all(profile);
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).unwrap())
}

async fn get(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

async fn run(base: &str, workflow: &str, params: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{base}/workflows/{workflow}/execute?wait=true"))
        .json(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runs_list_shows_every_run_and_filters_by_status() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(schema.database_url(), &[]);
    let done = run(
        &base,
        "reasoning",
        json!({"question": "What is 2 + 3?", "delay_ms": 1}),
    )
    .await;
    let failed = run(&base, "flaky", json!({"fail_at": "load", "delay_ms": 1})).await;
    let (done, failed) = (done["id"].as_str().unwrap(), failed["id"].as_str().unwrap());

    let Some(page) = rendered(&format!("{base}/")) else {
        return;
    };
    assert!(page.contains(&format!(r#"data-run-id="{done}""#)), "{page}");
    assert!(
        page.contains(&format!(r#"data-run-id="{failed}""#)),
        "{page}"
    );
    assert!(
        page.contains(r#"id="page-info">page 1 of 1 · 2 runs<"#),
        "{page}"
    );
    for status in [
        "all",
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
    ] {
        assert!(
            page.contains(&format!(r#"data-filter="{status}""#)),
            "no {status} filter"
        );
    }

    let page = rendered(&format!("{base}/#/?status=failed")).unwrap();
    assert!(
        page.contains(&format!(r#"data-run-id="{failed}""#)),
        "{page}"
    );
    assert!(
        !page.contains(&format!(r#"data-run-id="{done}""#)),
        "{page}"
    );
    assert!(
        page.contains(r#"id="page-info">page 1 of 1 · 1 runs<"#),
        "{page}"
    );
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_s_page_shows_its_graph_path_timeline_stages_and_decisions() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(schema.database_url(), &[]);
    let run = run(
        &base,
        "reasoning",
        json!({"question": "What is 2 + 3?", "delay_ms": 1}),
    )
    .await;
    let id = run["id"].as_str().unwrap();

    let Some(page) = rendered(&format!("{base}/#/runs/{id}")) else {
        return;
    };
    assert!(page.contains(&format!(r#"id="run-id">{id}<"#)), "{page}");
    assert!(page.contains(r#"id="run-workflow">reasoning<"#), "{page}");
    assert!(
        page.contains(r#"<span class="badge completed" data-status="completed">completed</span>"#)
    );
    // The graph: a picture with a box per node reached and an arrow per edge taken.
    assert!(page.contains(r#"<svg id="graph""#), "{page}");
    for node in ["analyze", "calculate", "answer"] {
        assert!(
            page.contains(&format!(r#"data-node="{node}" data-status="completed""#)),
            "no {node} box: {page}"
        );
    }
    assert!(
        page.contains(r#"class="edge" data-from="analyze" data-to="calculate""#),
        "{page}"
    );
    assert!(page.contains(r#"id="graph-exit""#), "{page}");
    // The timeline and the tables.
    assert_eq!(page.matches(r#"class="bar-row""#).count(), 3, "{page}");
    assert!(page.contains(r#"<table id="stages">"#) && page.contains(r#"<table id="decisions">"#));
    // Each stage's update, and the state after it (rebuilt by the API) on demand; only the
    // first stage stores the whole state it started from.
    assert_eq!(
        page.matches(r#"data-snapshot="update""#).count(),
        3,
        "{page}"
    );
    for step in 1..=3 {
        assert!(
            page.contains(&format!(r#"data-state-step="{step}""#)),
            "{page}"
        );
    }
    assert_eq!(
        page.matches(r#"data-snapshot="input""#).count(),
        1,
        "{page}"
    );
    // A completed run can be neither cancelled nor resumed.
    assert!(
        page.contains(r#"<button id="cancel" disabled="""#),
        "{page}"
    );
    assert!(
        page.contains(r#"<button id="resume" disabled="""#),
        "{page}"
    );
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_run_s_page_is_live_and_offers_cancel() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(schema.database_url(), &["--drain-secs", "0"]);
    // A run that waits a minute in its first node; its progress stream stays open meanwhile.
    let stream = reqwest::Client::new()
        .post(format!("{base}/workflows/chain/execute"))
        .json(&json!({"nodes": 2, "delay_ms": 60000}))
        .send()
        .await
        .unwrap();
    let id = stream.headers()["x-run-id"].to_str().unwrap().to_owned();

    let Some(page) = rendered(&format!("{base}/#/runs/{id}")) else {
        return;
    };
    assert!(
        page.contains(r#"data-status="running">running</span> (live)"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<button id="cancel">cancel</button>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<button id="resume" disabled="">"#),
        "{page}"
    );
    assert!(
        page.contains(r#"data-node="n0" data-status="started""#),
        "{page}"
    );
    drop(stream);
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_run_s_question_is_answered_by_typing_into_its_page_and_clicking() {
    let schema = IsolatedSchema::create().await.unwrap();
    let (server, base) = WorkerProcess::serve(schema.database_url(), &["--drain-secs", "0"]);
    let waiting = run(&base, "approve", json!({"topic": "rust"})).await;
    assert_eq!(waiting["status"], "waiting");
    let id = waiting["id"].as_str().unwrap().to_owned();

    let Some(page) = rendered(&format!("{base}/#/runs/{id}")) else {
        return;
    };
    assert!(page.contains(r#"<table id="questions">"#), "{page}");
    assert!(page.contains(r#"<tr data-key="approve">"#), "{page}");
    assert!(page.contains("A post about rust"), "{page}");
    assert!(page.contains(r#"<textarea id="answer-approve""#), "{page}");
    assert!(
        page.contains(r#"<button id="send-approve">answer</button>"#),
        "{page}"
    );
    assert!(
        page.contains("the answer must fit this schema"),
        "the question's schema is shown beside its form: {page}"
    );
    assert!(
        page.contains(r#"<button id="cancel">cancel</button>"#),
        "a waiting run can be cancelled: {page}"
    );

    // A person types the answer and clicks: it is recorded, the run is due, and the page
    // shows the answer instead of the form.
    let Some(mut browser) = Browser::open(&format!("{base}/#/runs/{id}")) else {
        return;
    };
    browser.wait_for("document.querySelector('#send-approve')");
    // An answer that does not fit the question's schema (a boolean) is refused beside the
    // form, which stays.
    browser.type_into("#answer-approve", r#""yes""#);
    browser.click("#send-approve");
    browser.wait_for("document.querySelector('#refused-approve').textContent");
    let refused = browser.eval("document.querySelector('#refused-approve').textContent");
    assert!(
        refused.as_str().is_some_and(|r| r.contains(
            r#"the answer to "approve" does not fit its schema: expected boolean, found a string"#
        )),
        "{refused}"
    );
    assert_eq!(
        get(&format!("{base}/workflows/runs/{id}/interrupts")).await[0].get("answer"),
        None
    );
    browser.eval("document.querySelector('#answer-approve').value = ''");
    browser.type_into("#answer-approve", "true");
    browser.click("#send-approve");
    browser.wait_for("document.querySelector('pre.answered')");
    assert_eq!(
        browser.eval("document.querySelector('pre.answered').textContent"),
        json!("true")
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('textarea').length"),
        json!(0)
    );
    let interrupts = get(&format!("{base}/workflows/runs/{id}/interrupts")).await;
    assert_eq!(interrupts[0]["key"], "approve");
    assert_eq!(interrupts[0]["answer"], json!(true));
    let answered = get(&format!("{base}/workflows/runs/{id}")).await;
    assert_eq!(answered["status"], "waiting", "{answered}");
    assert!(
        answered["wake_at"].is_string(),
        "answered, the run is due: {answered}"
    );
    drop(browser);
    let Some(page) = rendered(&format!("{base}/#/runs/{id}")) else {
        return;
    };
    assert!(!page.contains("<textarea"), "{page}");
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_tokens_the_page_asks_for_one_once_and_keeps_it_for_the_session() {
    let schema = IsolatedSchema::create().await.unwrap();
    let file = std::env::temp_dir().join(format!(
        "workflows-inspector-tokens-{}",
        uuid::Uuid::new_v4()
    ));
    std::fs::write(&file, "ro:ro-0123456789abcdef0123\n").unwrap();
    let (server, base) = WorkerProcess::serve(
        schema.database_url(),
        &["--tokens-file", file.to_str().unwrap()],
    );
    let done: Value = reqwest::Client::new()
        .get(format!("{base}/workflows/runs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], 401);

    let Some(mut browser) = Browser::open(&format!("{base}/")) else {
        std::fs::remove_file(&file).unwrap();
        return;
    };
    browser.wait_for("document.querySelector('#token-form')");
    assert_eq!(
        browser.eval("document.querySelector('#token-reason').textContent"),
        json!("this API needs a bearer token: send `Authorization: Bearer <token>`")
    );
    browser.type_into("#token", "ro-0123456789abcdef0123");
    browser.click("#token-save");
    browser.wait_for("document.querySelector('#page-info')");
    assert_eq!(
        browser.eval("document.querySelector('#page-info').textContent"),
        json!("page 1 of 1 · 0 runs")
    );
    // Another view of the same tab: no second prompt.
    browser.eval("location.hash = '#/?status=failed'");
    browser
        .wait_for("location.hash === '#/?status=failed' && document.querySelector('#page-info')");
    assert_eq!(
        browser.eval("document.querySelectorAll('#token-form').length"),
        json!(0)
    );
    assert_eq!(
        browser.eval("sessionStorage.getItem('workflows-token')"),
        json!("ro-0123456789abcdef0123")
    );
    drop(browser);
    std::fs::remove_file(&file).unwrap();
    assert!(server.stop().success());
    schema.drop_schema().await.unwrap();
}
