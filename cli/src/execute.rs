//! `workflows run`, `resume` and `cancel`: executing runs in this process, with live progress.

use std::time::{Duration, Instant};

use workflows::{Event, Execution, Executor, Pool, Registry, RunId, RunStatus};

use crate::Outcome;
use crate::output::outln;

fn executor(pool: Pool) -> workflows::Result<Executor> {
    Executor::builder(pool, Registry::from_compiled()?)
        .runtime(crate::samples::runtime())
        .build()
}

/// Params given on the command line, as JSON.
pub(crate) fn parse_params(params: &str) -> workflows::Result<serde_json::Value> {
    serde_json::from_str(params).map_err(|e| {
        workflows::Error::invalid_input(
            "--params",
            params,
            format!("not JSON ({e}); give an object like '{{\"text\": \"...\"}}'"),
        )
    })
}

/// Runs `name` with `params` (JSON text) and follows it to its end.
pub(crate) async fn run(pool: Pool, name: &str, params: &str) -> workflows::Result<Outcome> {
    let params = parse_params(params)?;
    let executor = executor(pool)?;
    let execution = executor.start(name, params).await?;
    outln!("run {} ({name})", execution.run_id());
    follow(&executor, execution).await
}

/// Resumes a run and follows it to its end.
pub(crate) async fn resume(pool: Pool, run_id: RunId) -> workflows::Result<Outcome> {
    let executor = executor(pool)?;
    let execution = executor.resume(run_id).await?;
    outln!("resuming run {run_id} ({})", execution.run().workflow_name);
    follow(&executor, execution).await
}

/// Cancels a run, wherever it executes.
pub(crate) async fn cancel(pool: Pool, run_id: RunId) -> workflows::Result<Outcome> {
    let run = executor(pool)?.cancel(run_id).await?;
    outln!("run {} is {}", run.id, run.status);
    Ok(Outcome::Success)
}

/// Sends run `run_id` the JSON `value` on `topic`.
pub(crate) async fn send(
    pool: Pool,
    run_id: RunId,
    topic: &str,
    value: &str,
) -> workflows::Result<Outcome> {
    let value = json_value(value)?;
    let id = executor(pool)?.send(run_id, topic, value).await?;
    outln!("message {id} sent to run {run_id} on {topic}");
    Ok(Outcome::Success)
}

/// `--value`, as JSON.
fn json_value(value: &str) -> workflows::Result<serde_json::Value> {
    serde_json::from_str(value).map_err(|e| {
        workflows::Error::invalid_input(
            "--value",
            value,
            format_args!("must be JSON (a string is '\"yes\"'): {e}"),
        )
    })
}

/// Answers a waiting run's question `key` with the JSON `value`.
pub(crate) async fn answer(
    pool: Pool,
    run_id: RunId,
    key: &str,
    value: &str,
) -> workflows::Result<Outcome> {
    let value = json_value(value)?;
    let run = executor(pool)?.answer(run_id, key, value).await?;
    outln!("run {} answered: a worker continues it", run.id);
    Ok(Outcome::Success)
}

/// Asks the person at the terminal for the answer to `key`, as JSON, until it parses; an
/// empty line (or no terminal) leaves the question open for `workflows answer`.
async fn prompt_for_answer(executor: &Executor, run_id: RunId, key: &str) -> workflows::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(());
    }
    loop {
        print!("answer {key} (JSON, empty to leave it open)> ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty()
        {
            return Ok(());
        }
        // Mistyped JSON is asked again; a refused answer (answered meanwhile, cancelled)
        // is the command's error.
        match json_value(line.trim()) {
            Ok(value) => {
                executor.answer(run_id, key, value).await?;
                outln!("answered");
                return Ok(());
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
}

/// Prints each step of an execution as it happens; Ctrl-C cancels the run.
async fn follow(executor: &Executor, mut execution: Execution) -> workflows::Result<Outcome> {
    let started = Instant::now();
    let run_id = execution.run_id();
    let mut interrupted = false;
    let mut asked = None;
    loop {
        tokio::select! {
            event = execution.next_event() => match event {
                Some(event) => {
                    print_event(&event);
                    if let Event::Interrupted { key, .. } = &event {
                        asked = Some(key.clone());
                    }
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                outln!("  interrupted: cancelling the run");
                if let Err(e) = executor.cancel(run_id).await {
                    eprintln!("error: {e}");
                }
            }
        }
    }
    let run = execution.wait().await?;
    outln!("{} in {} ms", run.status, started.elapsed().as_millis());
    if run.status == RunStatus::Waiting {
        if let Some(key) = asked {
            prompt_for_answer(executor, run_id, &key).await?;
        }
        outln!("a worker (`workflows worker`) continues it once it is answered or due");
        return Ok(Outcome::Success);
    }
    if let Some(result) = &run.result {
        outln!("result: {result}");
    }
    if let Some(error) = &run.error_message {
        outln!("error: {error}");
    }
    Ok(if run.status == RunStatus::Completed {
        Outcome::Success
    } else {
        Outcome::RunDidNotComplete
    })
}

fn print_event(event: &Event) {
    match event {
        Event::Resumed {
            node, iteration, ..
        } => outln!("  resumed at {node} (step {iteration})"),
        Event::NodeStarted {
            node,
            iteration,
            attempt: 1,
            ..
        } => outln!("  ▸ {node} (step {iteration})"),
        Event::NodeStarted {
            node,
            iteration,
            attempt,
            ..
        } => outln!("  ▸ {node} (step {iteration}, attempt {attempt})"),
        Event::NodeRetrying {
            attempt,
            max_attempts,
            retry_in_ms,
            released,
            ..
        } => {
            let secs = Duration::from_millis(*retry_in_ms).as_secs_f64();
            let released = if *released {
                ", released to the workers meanwhile"
            } else {
                ""
            };
            outln!("    retrying in {secs:.1} s (attempt {attempt}/{max_attempts}){released}")
        }
        Event::NodeCompleted {
            node,
            duration_ms,
            error: None,
            ..
        } => {
            outln!("  ✓ {node} {duration_ms} ms")
        }
        Event::NodeCompleted {
            node,
            duration_ms,
            error: Some(error),
            ..
        } => {
            outln!("  ✗ {node} {duration_ms} ms: {error}")
        }
        Event::EdgeTransition {
            to: Some(to),
            reason,
            ..
        } => outln!("  → {to} ({reason})"),
        Event::Interrupted {
            run_id,
            node,
            key,
            question,
            ..
        } => {
            outln!("  ? {node} asks {key}: {question}");
            outln!("    answer with: workflows answer {run_id} {key} --value JSON");
        }
        Event::AwaitingMessage {
            run_id,
            node,
            topic,
            ..
        } => {
            outln!("  ✉ {node} waits for a message on {topic}");
            outln!("    send one with: workflows send {run_id} {topic} --value JSON");
        }
        Event::Sleeping { node, for_ms, .. } => {
            let secs = Duration::from_millis(*for_ms).as_secs_f64();
            outln!("  … {node} sleeps {secs:.1} s (no worker held)")
        }
        Event::CycleDetected { max_iterations, .. } => {
            outln!("  ✗ stopped: max_iterations ({max_iterations}) reached")
        }
        _ => {}
    }
}
