//! Durable waits: a node asks a question and the run waits holding no worker until someone
//! answers (from anywhere, exactly once), or its question times out; a node sleeps and the
//! run continues when due, whichever worker is free then.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{Value, json};
use workflows::testing::IsolatedSchema;

use crate::fixtures::{HANG, Running, owner_and_token, run_of, until_status};
use workflows::{
    BoxError, Error, Executor, GraphBuilder, NodeContext, Params, Pool, Predicate, Registry, Run,
    RunId, RunStatus, Runtime, State, Worker, WorkerConfig, WorkflowDef, repository,
};

use crate::fence::until_blocked_n;

/// How many drafts `approval` wrote (its side effect), and the gate a `gated` `inbox`
/// waits at before it starts waiting for its message.
#[derive(Default)]
struct Drafts(AtomicUsize, tokio::sync::Notify);

/// A typed answer: what `approval` asks for when `typed`.
#[derive(Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Verdict {
    approved: bool,
    note: Option<String>,
}

/// An answer whose schema the check cannot make (`pattern`): what `approval` asks for when
/// `uncheckable`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Code {
    #[schemars(regex(pattern = "^[A-Z]{3}$"))]
    code: String,
}

/// `draft` (counts a draft, asks `approve`, with a timeout if `timeout_ms`; for a
/// [`Verdict`] if `typed`), then `review` (reads the answer into `approved`). `ask_at_end`:
/// `draft` is the exit point instead.
async fn approval(g: &mut GraphBuilder, rt: &Runtime, p: Params) -> Result<State, BoxError> {
    let drafts = rt.get::<Drafts>()?;
    let timeout = p.get::<u64>("timeout_ms")?.map(Duration::from_millis);
    let typed = p.get::<bool>("typed")?.unwrap_or(false);
    let uncheckable = p.get::<bool>("uncheckable")?.unwrap_or(false);
    let draft = g.node("draft", move |s: State, ctx: NodeContext| {
        let drafts = Arc::clone(&drafts);
        async move {
            let n = drafts.0.fetch_add(1, Ordering::SeqCst) + 1;
            let question = json!({"draft": format!("draft {n}"), "approve?": true});
            match timeout {
                _ if uncheckable => ctx.interrupt_for::<Code>("approve", question)?,
                Some(timeout) if typed => {
                    ctx.interrupt_for_with_timeout::<Verdict>("approve", question, timeout)?
                }
                None if typed => ctx.interrupt_for::<Verdict>("approve", question)?,
                Some(timeout) => ctx.interrupt_with_timeout("approve", question, timeout)?,
                None => ctx.interrupt("approve", question)?,
            }
            Ok(s.with("draft", n))
        }
    });
    if p.get::<bool>("ask_at_end")?.unwrap_or(false) {
        g.start_at(draft).end_at(draft);
        return Ok(State::new());
    }
    let review = g.node("review", move |s: State, ctx: NodeContext| async move {
        if typed {
            let verdict: Option<Verdict> = ctx.answer("approve")?;
            return Ok(s.with("approved", verdict.map(|v| json!([v.approved, v.note]))));
        }
        let approved: Option<bool> = ctx.answer("approve")?;
        Ok(s.with("approved", approved))
    });
    g.edge(draft, review).start_at(draft).end_at(review);
    Ok(State::new())
}

/// `rest` sleeps `sleep_ms` durably, then `wake`.
async fn nap(g: &mut GraphBuilder, _: &Runtime, p: Params) -> Result<State, BoxError> {
    let sleep = Duration::from_millis(p.require("sleep_ms")?);
    let rest = g.node("rest", move |s: State, ctx: NodeContext| async move {
        ctx.continue_after(sleep)?;
        Ok(s.with("rested", true))
    });
    let wake = g.node(
        "wake",
        |s: State, _| async move { Ok(s.with("woke", true)) },
    );
    g.edge(rest, wake).start_at(rest).end_at(wake);
    Ok(State::new())
}

/// `listen` (after the test's gate, if `gated`) waits for a message on `mail` (for
/// `timeout_ms`, if given), `read` appends it
/// to `got`, and the run loops until it has read `count`.
async fn inbox(g: &mut GraphBuilder, rt: &Runtime, p: Params) -> Result<State, BoxError> {
    let timeout = p.get::<u64>("timeout_ms")?.map(Duration::from_millis);
    let count: usize = p.require("count")?;
    let gate = p
        .get::<bool>("gated")?
        .unwrap_or(false)
        .then(|| rt.get::<Drafts>())
        .transpose()?;
    let listen = g.node("listen", move |s: State, ctx: NodeContext| {
        let gate = gate.clone();
        async move {
            if let Some(gate) = gate {
                gate.1.notified().await;
            }
            ctx.wait_for_message("mail", timeout)?;
            Ok(s)
        }
    });
    let read = g.node("read", |s: State, ctx: NodeContext| async move {
        let mut got: Vec<Value> = s.get("got")?.unwrap_or_default();
        got.push(ctx.message::<Value>("mail")?.unwrap_or(Value::Null));
        Ok(s.with("got", got))
    });
    let more = Predicate::new("more to read", move |s: &State| {
        s.get::<Vec<Value>>("got")
            .ok()
            .flatten()
            .is_some_and(|got| got.len() < count)
    });
    g.edge(listen, read)
        .edge_if(read, listen, more)
        .start_at(listen)
        .end_at(read);
    Ok(State::new())
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register(WorkflowDef::new(
            "inbox",
            "listen, read, loop",
            |g, r, p| Box::pin(inbox(g, r, p)),
        ))
        .unwrap();
    registry
        .register(WorkflowDef::new(
            "approval",
            "draft, ask, review",
            |g, r, p| Box::pin(approval(g, r, p)),
        ))
        .unwrap();
    registry
        .register(WorkflowDef::new("nap", "rest, sleep, wake", |g, r, p| {
            Box::pin(nap(g, r, p))
        }))
        .unwrap();
    registry
}

fn executor(pool: &Pool, drafts: &Arc<Drafts>) -> Executor {
    Executor::builder(pool.clone(), registry())
        .runtime(Runtime::builder().with_arc(Arc::clone(drafts)).build())
        .build()
        .unwrap()
}

/// A worker of `concurrency` runs, polling every 50 ms.
fn worker(pool: &Pool, drafts: &Arc<Drafts>, concurrency: usize) -> Running {
    Running::start(Worker::new(
        executor(pool, drafts),
        WorkerConfig::default()
            .concurrency(concurrency)
            .poll_interval(Duration::from_millis(50)),
    ))
}

/// A connection in a transaction that holds run `id`'s row `FOR UPDATE` (every write to the
/// run waits for it) until it commits or rolls back.
async fn hold_run_row(schema: &IsolatedSchema, id: RunId) -> diesel_async::AsyncPgConnection {
    let mut holder = diesel_async::AsyncPgConnection::establish(schema.database_url())
        .await
        .unwrap();
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut holder,
        &format!("BEGIN; SELECT 1 FROM runs WHERE id = '{id}' FOR UPDATE"),
    )
    .await
    .unwrap();
    holder
}

fn result_of(run: &Run) -> Value {
    run.result.as_ref().unwrap().to_value().unwrap()
}

#[tokio::test]
async fn an_approval_waits_holding_no_worker_and_continues_once_answered_from_elsewhere() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let drafts = Arc::new(Drafts::default());
    let submitter = executor(pool, &drafts);
    let approval = submitter.submit("approval", json!({}), None).await.unwrap();
    // One slot only.
    let running = worker(pool, &drafts, 1);

    let waiting = until_status(pool, approval.id, RunStatus::Waiting).await;
    assert_eq!(waiting.wake_at, None, "it waits for an answer, not a time");
    assert_eq!(owner_and_token(pool, approval.id).await, (None, None));
    let mut conn = pool.get().await.unwrap();
    let asked = repository::interrupts(&mut conn, approval.id)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(
        (
            asked.len(),
            asked[0].key.as_str(),
            asked[0].node_name.as_str()
        ),
        (1, "approve", "draft")
    );
    assert_eq!(
        asked[0].payload.to_value().unwrap(),
        json!({"draft": "draft 1", "approve?": true})
    );
    assert_eq!(asked[0].answer, None);

    // The worker's one slot is free: another run completes meanwhile.
    let other = submitter
        .submit("nap", json!({"sleep_ms": 0}), None)
        .await
        .unwrap();
    until_status(pool, other.id, RunStatus::Completed).await;
    assert_eq!(run_of(pool, approval.id).await.status, RunStatus::Waiting);

    // Answered from elsewhere (another executor, as another process would).
    let elsewhere = executor(pool, &Arc::new(Drafts::default()));
    let due = elsewhere
        .answer(approval.id, "approve", json!(true))
        .await
        .unwrap();
    assert_eq!(due.status, RunStatus::Waiting);
    assert!(due.wake_at.is_some(), "an answered run is due");

    let done = until_status(pool, approval.id, RunStatus::Completed).await;
    running.stop().await;
    assert_eq!(result_of(&done), json!({"draft": 1, "approved": true}));
    assert_eq!(
        AtomicUsize::load(&drafts.0, Ordering::SeqCst),
        1,
        "the node before the answer ran once"
    );
    let mut conn = pool.get().await.unwrap();
    let steps: Vec<(String, i32)> = repository::stages(&mut conn, approval.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.node_name, s.iteration))
        .collect();
    assert_eq!(steps, [("draft".to_owned(), 1), ("review".to_owned(), 2)]);
    let asked = repository::interrupts(&mut conn, approval.id)
        .await
        .unwrap();
    assert_eq!(
        asked[0].answer.as_ref().unwrap().to_value().unwrap(),
        json!(true)
    );
    assert!(asked[0].answered_at.is_some());
    drop(conn);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn answers_that_do_not_fit_are_refused_naming_why_and_change_nothing() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let drafts = Arc::new(Drafts::default());
    let executor = executor(pool, &drafts);
    // Started here: it runs `draft`, then waits (nothing continues it: no worker).
    let waiting = executor.run("approval", json!({})).await.unwrap();
    assert_eq!(waiting.status, RunStatus::Waiting);
    let id = waiting.id;

    let wrong_key = executor.answer(id, "nope", json!(1)).await.unwrap_err();
    assert_eq!(
        wrong_key.to_string(),
        format!(
            r#"invalid key "nope": run {id} did not ask "nope"; it waits for an answer to "approve""#
        )
    );
    let nul = executor
        .answer(id, "approve", json!({"note": "a\u{0}b"}))
        .await
        .unwrap_err();
    assert!(matches!(nul, Error::InvalidInput { .. }), "{nul}");
    let nul_key = executor
        .answer(id, "app\u{0}", json!(true))
        .await
        .unwrap_err();
    assert!(matches!(nul_key, Error::InvalidInput { .. }), "{nul_key}");
    let nul_topic = executor.send(id, "m\u{0}", json!(1)).await.unwrap_err();
    assert!(
        matches!(nul_topic, Error::InvalidInput { .. }),
        "{nul_topic}"
    );
    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        repository::interrupts(&mut conn, id).await.unwrap()[0].answer,
        None
    );
    drop(conn);

    executor.answer(id, "approve", json!(false)).await.unwrap();
    let twice = executor
        .answer(id, "approve", json!(true))
        .await
        .unwrap_err();
    assert_eq!(
        twice.to_string(),
        format!(r#"invalid key "approve": run {id} was answered "approve" already"#)
    );
    let mut conn = pool.get().await.unwrap();
    let answer = repository::interrupts(&mut conn, id).await.unwrap()[0]
        .answer
        .clone();
    drop(conn);
    assert_eq!(answer.unwrap().to_value().unwrap(), json!(false));

    executor.cancel(id).await.unwrap();
    let cancelled = executor
        .answer(id, "approve", json!(true))
        .await
        .unwrap_err();
    assert_eq!(
        cancelled.to_string(),
        format!("run {id} is cancelled: cannot answer")
    );
    let unknown = RunId::from_uuid(uuid::Uuid::new_v4());
    assert!(matches!(
        executor.answer(unknown, "approve", json!(true)).await,
        Err(Error::RunNotFound { .. })
    ));
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn an_answer_that_does_not_fit_the_question_s_schema_is_refused_naming_where() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let drafts = Arc::new(Drafts::default());
    let executor = executor(pool, &drafts);
    let id = executor
        .run("approval", json!({"typed": true}))
        .await
        .unwrap()
        .id;
    let mut conn = pool.get().await.unwrap();
    let asked = repository::interrupts(&mut conn, id).await.unwrap();
    drop(conn);
    assert_eq!(
        asked[0].answer_schema.as_ref().unwrap().to_value().unwrap(),
        schemars::schema_for!(Verdict).to_value(),
        "the question is stored with the schema of the answer's type"
    );

    let refused = |answer: Value| {
        let executor = executor.clone();
        async move { executor.answer(id, "approve", answer).await.unwrap_err() }
    };
    let wrong_type = refused(json!({"approved": "yes"})).await;
    assert_eq!(
        wrong_type.to_string(),
        r#"invalid answer.approved "\"yes\"": the answer to "approve" does not fit its schema: expected boolean, found a string"#
    );
    assert_eq!(wrong_type.kind(), workflows::ErrorKind::InvalidInput);
    let missing = refused(json!({"note": "hm"})).await;
    assert_eq!(
        missing.to_string(),
        r#"invalid answer "{\"note\":\"hm\"}": the answer to "approve" does not fit its schema: the field "approved" is required"#
    );
    let extra = refused(json!({"approved": true, "by": "ann"})).await;
    assert!(
        extra
            .to_string()
            .starts_with(r#"invalid answer.by "{\"approved\":true,\"by\":\"ann\"}": the answer to "approve" does not fit its schema: no such field"#),
        "{extra}"
    );
    let not_an_object = refused(json!(true)).await;
    assert!(
        not_an_object
            .to_string()
            .ends_with("expected object, found a boolean"),
        "{not_an_object}"
    );

    // Nothing was recorded: the run still waits for an answer, not due.
    let mut conn = pool.get().await.unwrap();
    assert_eq!(
        repository::interrupts(&mut conn, id).await.unwrap()[0].answer,
        None
    );
    drop(conn);
    let still = run_of(pool, id).await;
    assert_eq!((still.status, still.wake_at), (RunStatus::Waiting, None));

    // One that fits is recorded, and the next node reads it as the type.
    executor
        .answer(id, "approve", json!({"approved": true, "note": "fine"}))
        .await
        .unwrap();
    let running = worker(pool, &drafts, 1);
    let done = until_status(pool, id, RunStatus::Completed).await;
    running.stop().await;
    assert_eq!(
        result_of(&done),
        json!({"draft": 1, "approved": [true, "fine"]})
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_question_whose_schema_cannot_be_checked_fails_its_node_naming_the_keyword() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let drafts = Arc::new(Drafts::default());
    let failed = executor(pool, &drafts)
        .run("approval", json!({"uncheckable": true}))
        .await
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    let message = failed.error_message.unwrap();
    assert!(
        message.contains(r#"the answer to "approve" cannot be checked against the schema of "#)
            && message.contains(
                r#"#/properties/code/pattern: answers cannot be checked against "pattern""#
            ),
        "{message}"
    );
    let mut conn = pool.get().await.unwrap();
    assert!(
        repository::interrupts(&mut conn, failed.id)
            .await
            .unwrap()
            .is_empty()
    );
    drop(conn);
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn of_two_racing_answers_exactly_one_is_recorded() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let drafts = Arc::new(Drafts::default());
    let executor = Arc::new(executor(pool, &drafts));
    let id = executor.run("approval", json!({})).await.unwrap().id;

    // Hold the run's row, so that both answers wait for it, then let them race.
    let mut holder = hold_run_row(&schema, id).await;
    let answers: Vec<_> = [json!("yes"), json!("no")]
        .into_iter()
        .map(|value| {
            let executor = Arc::clone(&executor);
            tokio::spawn(async move { executor.answer(id, "approve", value).await })
        })
        .collect();
    until_blocked_n(&schema, "%interrupts%", 2).await;
    diesel_async::SimpleAsyncConnection::batch_execute(&mut holder, "COMMIT")
        .await
        .unwrap();
    let mut won = 0;
    for answer in answers {
        match answer.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert!(
                e.to_string().ends_with("was answered \"approve\" already"),
                "{e}"
            ),
        }
    }
    assert_eq!(won, 1);
    let mut conn = pool.get().await.unwrap();
    let asked = repository::interrupts(&mut conn, id).await.unwrap();
    drop(conn);
    assert_eq!(asked.len(), 1);
    assert!(asked[0].answer.is_some());
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_question_that_times_out_continues_with_no_answer() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let drafts = Arc::new(Drafts::default());
    let submitted = executor(pool, &drafts)
        .submit("approval", json!({"timeout_ms": 300}), None)
        .await
        .unwrap();
    let running = worker(pool, &drafts, 1);
    let waiting = until_status(pool, submitted.id, RunStatus::Waiting).await;
    let due = waiting
        .wake_at
        .expect("a question with a timeout is due then");
    let done = until_status(pool, submitted.id, RunStatus::Completed).await;
    running.stop().await;
    assert_eq!(result_of(&done), json!({"draft": 1, "approved": null}));
    let mut conn = pool.get().await.unwrap();
    let review = repository::stages(&mut conn, submitted.id).await.unwrap()[1].clone();
    drop(conn);
    assert!(
        review.created_at >= due,
        "continued at {} before {due}",
        review.created_at
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_durable_sleep_continues_when_due_with_its_worker_replaced_meanwhile() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let drafts = Arc::new(Drafts::default());
    let submitted = executor(pool, &drafts)
        .submit("nap", json!({"sleep_ms": 1500}), None)
        .await
        .unwrap();
    let running = worker(pool, &drafts, 1);
    let waiting = until_status(pool, submitted.id, RunStatus::Waiting).await;
    running.stop().await;
    let due = waiting
        .wake_at
        .expect("a sleeping run is due when it wakes");
    assert_eq!(owner_and_token(pool, submitted.id).await, (None, None));

    let running = worker(pool, &drafts, 1);
    let done = until_status(pool, submitted.id, RunStatus::Completed).await;
    running.stop().await;
    assert_eq!(result_of(&done), json!({"rested": true, "woke": true}));
    let mut conn = pool.get().await.unwrap();
    let wake = repository::stages(&mut conn, submitted.id).await.unwrap()[1].clone();
    drop(conn);
    assert_eq!(wake.node_name, "wake");
    assert!(
        wake.created_at >= due,
        "woke at {} before {due}",
        wake.created_at
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_node_that_asks_where_the_run_ends_fails_it_saying_so() {
    let schema = IsolatedSchema::create().await.unwrap();
    let drafts = Arc::new(Drafts::default());
    let run = executor(schema.pool(), &drafts)
        .run("approval", json!({"ask_at_end": true}))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let message = run.error_message.unwrap();
    assert!(
        message.starts_with("node draft asked the run to wait, but the run ends at it"),
        "{message}"
    );
    schema.drop_schema().await.unwrap();
}

/// The messages of a run: (topic, payload, the step that received it).
async fn messages_of(pool: &Pool, id: RunId) -> Vec<(String, Value, Option<i32>)> {
    use workflows::schema::messages;
    let mut conn = pool.get().await.unwrap();
    messages::table
        .filter(messages::run_id.eq(id))
        .order_by(messages::id)
        .select((messages::topic, messages::payload, messages::received_step))
        .load(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn messages_sent_before_and_after_the_wait_are_each_received_once_in_order() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let drafts = Arc::new(Drafts::default());
    let executor = executor(pool, &drafts);
    let submitted = executor
        .submit("inbox", json!({"count": 3}), None)
        .await
        .unwrap();
    // Sent before the run even started: kept for it.
    executor
        .send(submitted.id, "mail", json!("first"))
        .await
        .unwrap();
    executor
        .send(submitted.id, "other", json!("not for it"))
        .await
        .unwrap();
    let running = worker(pool, &drafts, 1);
    // It reads "first", then waits for the second.
    until_status(pool, submitted.id, RunStatus::Waiting).await;
    let mut conn = pool.get().await.unwrap();
    tokio::time::timeout(HANG, async {
        loop {
            let steps = repository::stages(&mut conn, submitted.id)
                .await
                .unwrap()
                .len();
            let run = repository::find_run(&mut conn, submitted.id).await.unwrap();
            if steps == 3 && run.status == RunStatus::Waiting {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the run waits for its second message");
    drop(conn);
    executor
        .send(submitted.id, "mail", json!("second"))
        .await
        .unwrap();
    executor
        .send(submitted.id, "mail", json!("third"))
        .await
        .unwrap();
    let done = until_status(pool, submitted.id, RunStatus::Completed).await;
    running.stop().await;
    assert_eq!(result_of(&done)["got"], json!(["first", "second", "third"]));
    // Each received once, by the `read` of its turn (steps 2, 4, 6); the other topic's not.
    assert_eq!(
        messages_of(pool, submitted.id).await,
        [
            ("mail".to_owned(), json!("first"), Some(2)),
            ("other".to_owned(), json!("not for it"), None),
            ("mail".to_owned(), json!("second"), Some(4)),
            ("mail".to_owned(), json!("third"), Some(6)),
        ]
    );
    let ended = executor
        .send(submitted.id, "mail", json!("late"))
        .await
        .unwrap_err();
    assert_eq!(
        ended.to_string(),
        format!("run {} is completed: cannot send to", submitted.id)
    );
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_wait_for_a_message_times_out_without_one() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let drafts = Arc::new(Drafts::default());
    let submitted = executor(pool, &drafts)
        .submit("inbox", json!({"count": 1, "timeout_ms": 300}), None)
        .await
        .unwrap();
    let running = worker(pool, &drafts, 1);
    let done = until_status(pool, submitted.id, RunStatus::Completed).await;
    running.stop().await;
    assert_eq!(result_of(&done)["got"], json!([null]));
    schema.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_message_committed_while_the_run_starts_waiting_is_still_received() {
    let schema = IsolatedSchema::create().await.unwrap();
    let pool = schema.pool();
    let drafts = Arc::new(Drafts::default());
    let executor = executor(pool, &drafts);
    let execution = executor
        .start("inbox", json!({"count": 1, "gated": true}))
        .await
        .unwrap();
    let id = execution.run_id();

    // Hold the run's row: `listen`'s commit takes its snapshot, then waits for the row.
    let mut holder = hold_run_row(&schema, id).await;
    drafts.1.notify_one();
    until_blocked_n(&schema, "WITH \"held_run\"%", 1).await;
    // A message commits inside that window: the commit's snapshot cannot see it.
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut holder,
        &format!(
            "INSERT INTO messages (run_id, topic, payload) VALUES ('{id}', 'mail', '\"raced\"'); COMMIT"
        ),
    )
    .await
    .unwrap();
    let waiting = execution.wait().await.unwrap();
    assert_eq!(
        (waiting.status, waiting.wake_at),
        (RunStatus::Waiting, None),
        "the statement that made the run wait did not see the message"
    );

    // A worker's claim finds it all the same.
    let running = worker(pool, &drafts, 1);
    let done = until_status(pool, id, RunStatus::Completed).await;
    running.stop().await;
    assert_eq!(result_of(&done)["got"], json!(["raced"]));
    schema.drop_schema().await.unwrap();
}
