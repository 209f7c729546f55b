//! One attempt at a run, on its own task: the hot start (params, the factory's graph, where
//! a resumed run continues; for a run started here, made before its insert), the engine,
//! and the post-commit that ends its progress stream with the run as recorded (returned by
//! its last commit, or read).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::engine::{Cursor, Engine, Outcome, shared_data};
use super::events::Event;
use super::execution::read_run;
use super::observer::{ChannelObserver, Observer, Observers};
use super::shared::Inner;
use crate::error::{Error, Result};
use crate::graph::erased::{AnyDeps, AnyGraph};
use crate::graph::node_signals::Given;
use crate::graph::routing::{Step, panic_message};
use crate::model::{Run, RunId, RunStatus};
use crate::store::journal::Journal;
use crate::store::journal_pg::{DuePoint, PgJournal, ResumePoint};
use crate::store::lease::Lease;
use crate::store::lease::LeaseDeadline;
use crate::workflow::params::Params;
use crate::workflow::registry::WorkflowDef;

/// Where an attempt starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// A new run: from the entry point.
    Fresh,
    /// A resumed or recovered run: after its checkpoint. `previous_error` is what the run
    /// had failed with before a resume, kept for the message if the resume fails too.
    Resume { previous_error: Option<String> },
    /// A `waiting` run that came due: the attempt after its last failed one, from its
    /// checkpoint.
    Due,
}

impl Attempt {
    /// A recovery (a takeover): no earlier error to keep.
    pub(crate) const RECOVERY: Attempt = Attempt::Resume {
        previous_error: None,
    };
}

/// A new run's start, made before the run is inserted (so that its first stage is inserted
/// with it, in one statement): its workflow's graph, its state, and the state that first
/// stage stores.
pub(super) enum Prepared {
    /// Ready to run its entry point.
    Ready {
        graph: Arc<dyn AnyGraph>,
        deps: AnyDeps,
        cursor: Cursor,
        input: Arc<Value>,
    },
    /// It cannot start (its factory failed or panicked, its initial state cannot be stored):
    /// it is inserted `running` and failed at once with this message.
    Failed(String),
}

impl Prepared {
    /// The entry point and the state its `started` stage stores, if the run can start.
    pub(super) fn first_stage(&self) -> Option<(&str, &Value)> {
        match self {
            Prepared::Ready { graph, input, .. } => Some((graph.entry_point(), &**input)),
            Prepared::Failed(_) => None,
        }
    }
}

/// Runs `def`'s factory with `params` for a new run `run_id`, and makes its initial state.
pub(super) async fn prepare(
    inner: &Inner,
    def: &WorkflowDef,
    run_id: RunId,
    params: Params,
) -> Prepared {
    let made = AssertUnwindSafe(def.instantiate(&inner.runtime, params))
        .catch_unwind()
        .await;
    let instance = match made {
        Ok(Ok(instance)) => instance,
        Ok(Err(e)) => return Prepared::Failed(e.to_string()),
        Err(panic) => {
            let why = panic_message(panic.as_ref());
            return Prepared::Failed(format!("the run panicked: {why}"));
        }
    };
    match Cursor::fresh(run_id, instance.initial) {
        Ok(cursor) => Prepared::Ready {
            graph: instance.graph,
            deps: instance.deps,
            input: shared_data(&cursor.position),
            cursor,
        },
        Err(e) => Prepared::Failed(format!("its initial state cannot be stored: {e}")),
    }
}

/// Executes one attempt at `run` under `lease`, telling its events to `events` and the
/// executor's observers; returns the run as recorded at the end.
#[allow(clippy::too_many_arguments)]
pub(super) async fn execute(
    inner: Arc<Inner>,
    def: WorkflowDef,
    run: Run,
    lease: Lease,
    deadline: LeaseDeadline,
    (attempt, hold_waits_up_to): (Attempt, Option<std::time::Duration>),
    prepared: Option<Prepared>,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancellationToken,
) -> Result<Run> {
    let observer = Observers::new()
        .with(Arc::new(inner.observers.clone()))
        .with(Arc::new(ChannelObserver(events)));
    let journal = PgJournal::new(
        inner.connections.clone(),
        inner.group_commit.clone(),
        (inner.config.keep_checkpoints, inner.config.max_state_bytes),
        lease,
        deadline,
    );
    // A panic in a factory or an observer fails the run instead of leaving it `running`
    // with no task behind it.
    let attempt = async {
        let at = Context {
            inner: &inner,
            journal: &journal,
            def: &def,
            run: &run,
            observer: &observer,
            cancel: &cancel,
        };
        match prepared {
            None => execute_attempt(at, (attempt, hold_waits_up_to)).await,
            Some(Prepared::Failed(message)) => fail(&journal, run.id, message).await,
            Some(Prepared::Ready {
                graph,
                deps,
                cursor,
                input,
            }) => {
                let from = StartAt {
                    node: graph.entry_point().to_owned(),
                    cursor,
                    iteration: 1,
                    attempt: 1,
                    given: Given::default(),
                    resumed: false,
                };
                run_engine(at, (&*graph, &deps), from, Some(input), hold_waits_up_to).await
            }
        }
    };
    let outcome = match AssertUnwindSafe(attempt).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = format!("the run panicked: {}", panic_message(panic.as_ref()));
            fail(&journal, run.id, message).await
        }
    };
    finish(&inner, &journal, run.id, outcome, &observer).await
}

/// Fails the run with `message` between nodes; `Superseded` if it was no longer this
/// executor's to fail (cancelled or taken over meanwhile).
async fn fail(journal: &PgJournal, run_id: RunId, message: String) -> Result<Outcome> {
    Ok(if journal.run_failed(run_id, &message).await? {
        Outcome::Failed(message)
    } else {
        Outcome::Superseded
    })
}

/// Why a resume could not go on, keeping what the run had failed with before it.
fn resume_failure(why: impl std::fmt::Display, previous_error: Option<&str>) -> String {
    match previous_error {
        Some(previous) => {
            format!(
                "resuming failed: {why} (before this resume, the run had failed with: {previous})"
            )
        }
        None => format!("resuming failed: {why}"),
    }
}

/// What every part of an attempt works with.
#[derive(Clone, Copy)]
struct Context<'a> {
    inner: &'a Inner,
    journal: &'a PgJournal,
    def: &'a WorkflowDef,
    run: &'a Run,
    observer: &'a dyn Observer,
    cancel: &'a CancellationToken,
}

/// Where an attempt's engine starts: at `node`'s attempt `attempt`, step `iteration`, from
/// `cursor`, given `given` (answers and a message); `resumed` if the run went on from a
/// checkpoint or a wait.
struct StartAt {
    node: String,
    cursor: Cursor,
    iteration: u32,
    attempt: u32,
    given: Given,
    resumed: bool,
}

/// Hot start and execution of one attempt. An `Err` is a write that failed.
async fn execute_attempt(
    at: Context<'_>,
    (attempt, hold_waits_up_to): (Attempt, Option<std::time::Duration>),
) -> Result<Outcome> {
    let Context {
        inner,
        journal,
        def,
        run,
        observer,
        ..
    } = at;
    let previous_error = match &attempt {
        Attempt::Resume { previous_error } => previous_error.as_deref(),
        Attempt::Fresh | Attempt::Due => None,
    };
    let params = match run.params.as_ref().map(|p| p.to_value()).transpose() {
        Ok(value) => Params::from_value(value.unwrap_or(Value::Null)),
        Err(e) => Err(Error::Value {
            container: "params",
            key: String::new(),
            reason: format!("as stored, cannot be read: {e}"),
        }),
    };
    let params = match params {
        Ok(params) => params,
        Err(e) => {
            let why = format!("its params cannot be read: {e}");
            return fail(
                journal,
                run.id,
                resume_failure_or(why, &attempt, previous_error),
            )
            .await;
        }
    };
    let instance = match def.instantiate(&inner.runtime, params).await {
        Ok(instance) => instance,
        Err(e) => {
            return fail(
                journal,
                run.id,
                resume_failure_or(e.to_string(), &attempt, previous_error),
            )
            .await;
        }
    };
    let graph = &*instance.graph;
    let max_iterations = graph
        .max_iterations()
        .unwrap_or(inner.config.max_iterations);
    let fresh = |iteration| match Cursor::fresh(run.id, instance.initial) {
        Ok(cursor) => Ok((graph.entry_point().to_owned(), cursor, iteration)),
        Err(e) => Err(format!("its initial state cannot be stored: {e}")),
    };
    let mut first_attempt = 1;

    // A waiting run that came due continues where it waited: at the attempt after a failed
    // one, or (after a node that asked a question or slept) at the next node, like a resume.
    let due = match attempt {
        Attempt::Due => match journal.due_point().await {
            Ok(due) => Some(due),
            Err(e) if e.is_connection_lost() => return Err(e),
            Err(e) => {
                let why = format!("where it waited could not be read: {e}");
                return fail(journal, run.id, why).await;
            }
        },
        _ => None,
    };
    let mut given = Given::default();

    let (node, cursor, iteration, resumed) = match (&attempt, due) {
        (Attempt::Fresh, _) => match fresh(1) {
            Ok((node, cursor, iteration)) => (node, cursor, iteration, false),
            Err(why) => return fail(journal, run.id, why).await,
        },
        (
            Attempt::Due,
            Some(DuePoint {
                node,
                iteration,
                attempt,
                retry: true,
                checkpoint,
                ..
            }),
        ) => {
            let cursor = match checkpoint {
                // It waited at its first node: from its initial state, as before.
                None => fresh(iteration).map(|(_, cursor, _)| cursor),
                Some(saved) => Cursor::resumed(run.id, graph, saved)
                    .map_err(|e| format!("its checkpoint does not fit the workflow's state: {e}")),
            };
            match cursor {
                Ok(cursor) => {
                    first_attempt = attempt + 1;
                    (node, cursor, iteration, true)
                }
                Err(why) => return fail(journal, run.id, why).await,
            }
        }
        (_, _) => {
            let point = match journal.resume_point().await {
                Ok(point) => point,
                Err(e) if e.is_connection_lost() => return Err(e),
                Err(e) => {
                    let why = format!("its checkpoint could not be read: {e}");
                    return fail(journal, run.id, resume_failure(why, previous_error)).await;
                }
            };
            let ResumePoint {
                next_iteration,
                completed,
                checkpoint,
            } = point;
            match checkpoint {
                None if completed > 0 => {
                    let why = Error::NotResumable {
                        run_id: run.id,
                        reason: format!(
                            "{completed} of its nodes completed, but its checkpoint is gone, so it would start again at the entry point and run them all again"
                        ),
                    };
                    return fail(journal, run.id, resume_failure(why, previous_error)).await;
                }
                None => match fresh(next_iteration) {
                    Ok((node, cursor, iteration)) => (node, cursor, iteration, true),
                    Err(why) => {
                        return fail(journal, run.id, resume_failure(why, previous_error)).await;
                    }
                },
                Some(saved) => {
                    let after = saved.checkpoint_node().unwrap_or_default().to_owned();
                    // The node after a question or a wait for a message is given the answers
                    // and the message, however it comes to run (due, recovered, resumed).
                    given = match journal.given_after(saved.iteration()).await {
                        Ok(given) => given,
                        Err(e) if e.is_connection_lost() => return Err(e),
                        Err(e) => {
                            let why =
                                format!("what its last node waited for could not be read: {e}");
                            return fail(journal, run.id, resume_failure(why, previous_error))
                                .await;
                        }
                    };
                    observer.on_event(&Event::CheckpointLoaded {
                        run_id: run.id,
                        node: after.clone(),
                        iteration: saved.iteration(),
                    });
                    let cursor = match Cursor::resumed(run.id, graph, saved) {
                        Ok(cursor) => cursor,
                        Err(e) => {
                            let why =
                                format!("its checkpoint does not fit the workflow's state: {e}");
                            return fail(journal, run.id, resume_failure(why, previous_error))
                                .await;
                        }
                    };
                    let next = graph.route(
                        &after,
                        &*cursor.state,
                        cursor.position.steps(),
                        max_iterations,
                    );
                    match (next.step, next.to) {
                        (Step::Continue, Some(to)) => (to, cursor, next_iteration, true),
                        (Step::Fail(message) | Step::CycleBound(message), _) => {
                            return fail(journal, run.id, message).await;
                        }
                        // An exit point's checkpoint belongs to a run that completed (and
                        // could not record it): finish it as it would have finished.
                        _ => {
                            let result = cursor.position.data_value();
                            return Ok(if journal.run_completed(run.id, &result).await? {
                                Outcome::Completed(Arc::new(result))
                            } else {
                                Outcome::Superseded
                            });
                        }
                    }
                }
            }
        }
    };
    if resumed {
        observer.on_event(&Event::Resumed {
            run_id: run.id,
            node: node.clone(),
            iteration,
        });
    }
    let from = StartAt {
        node,
        cursor,
        iteration,
        attempt: first_attempt,
        given,
        resumed,
    };
    run_engine(at, (graph, &instance.deps), from, None, hold_waits_up_to).await
}

/// Executes the run's graph from `from` (a node, the state, a step, an attempt, what it is
/// given, whether that is a resume); `started`: that node's stage was recorded already,
/// with this input.
async fn run_engine(
    at: Context<'_>,
    (graph, deps): (&dyn AnyGraph, &AnyDeps),
    from: StartAt,
    started: Option<Arc<Value>>,
    hold_waits_up_to: Option<std::time::Duration>,
) -> Result<Outcome> {
    let run = at.run;
    let StartAt {
        node,
        cursor,
        iteration,
        attempt,
        given,
        resumed,
    } = from;
    at.observer.on_event(&Event::GraphStarted {
        run_id: run.id,
        workflow: at.def.name().to_owned(),
        node: node.clone(),
        iteration,
        resumed,
    });
    let deadline = graph.run_timeout().map(|limit| {
        // From when the run first started (or now, for a run starting now), across resumes.
        let elapsed = run
            .started_at
            .and_then(|at| (chrono::Utc::now() - at).to_std().ok())
            .unwrap_or_default();
        tokio::time::Instant::now() + limit.saturating_sub(elapsed)
    });
    let engine = Engine {
        graph,
        deps,
        max_iterations: graph
            .max_iterations()
            .unwrap_or(at.inner.config.max_iterations),
        journal: at.journal,
        observer: at.observer,
        cancel: at.cancel,
        run_id: run.id,
        hold_waits_up_to,
        deadline,
    };
    engine
        .run(node, cursor, iteration, attempt, given, started)
        .await
}

/// `why`, as a resume's failure when the attempt is a resume.
fn resume_failure_or(why: String, attempt: &Attempt, previous_error: Option<&str>) -> String {
    match attempt {
        Attempt::Fresh | Attempt::Due => why,
        Attempt::Resume { .. } => resume_failure(why, previous_error),
    }
}

/// Post-commit: makes sure a failed write fails the run (unless the database was out of
/// reach for as long as the lease held: then the run is left to be taken over), reads the
/// run as recorded, and ends the progress stream with [`Event::GraphCompleted`] (or
/// [`Event::Handover`] if the run goes on elsewhere).
async fn finish(
    inner: &Inner,
    journal: &PgJournal,
    run_id: RunId,
    outcome: Result<Outcome>,
    observer: &dyn Observer,
) -> Result<Run> {
    let mut handover = None;
    // Superseded, this attempt did not end the run: if the run has ended all the same, it was
    // cancelled (its end as far as this attempt goes) or another executor, which took it
    // over, ended it (the run went on elsewhere).
    let superseded = matches!(outcome, Ok(Outcome::Superseded));
    if let Err(error) = &outcome {
        if error.is_connection_lost() {
            handover = Some(format!(
                "the database stayed out of reach for as long as the run's lease held ({error}); a worker will take the run over"
            ));
        } else {
            let message = format!("recording the run failed, so it was stopped: {error}");
            match journal.run_failed(run_id, &message).await {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(%run_id, error = %e, "could not mark the run failed; a worker will take it over when its lease expires")
                }
            }
        }
    }
    // The node commit that ended the attempt returned the run, unless it was retried.
    let ended = match &outcome {
        Ok(_) => journal.take_ended(),
        Err(_) => None,
    };
    let run = match ended {
        Some(run) => Ok(run),
        None => read_run(&inner.pool, run_id, inner.config.lease).await,
    };
    match &run {
        Ok(Run {
            status: RunStatus::Waiting,
            wake_at,
            ..
        }) => observer.on_event(&Event::Waiting {
            run_id,
            wake_at: *wake_at,
        }),
        Ok(run)
            if run.status.is_terminal() && !(superseded && run.status != RunStatus::Cancelled) =>
        {
            observer.on_event(&Event::GraphCompleted {
                run_id,
                status: run.status,
                // The result this attempt wrote, shared; read back only when another wrote it.
                result: match &outcome {
                    Ok(Outcome::Completed(result)) if run.status == RunStatus::Completed => {
                        Some(Arc::clone(result))
                    }
                    _ => run.result.as_ref().and_then(|r| r.to_value().ok()).map(Arc::new),
                },
                error: run.error_message.clone(),
            })
        }
        Ok(_) => observer.on_event(&Event::Handover {
            run_id,
            reason: handover.unwrap_or_else(|| {
                "this executor no longer holds the run's lease (it stalled for longer than the lease, and a worker took the run over, or it handed the run back)".to_owned()
            }),
        }),
        Err(e) => observer.on_event(&Event::Handover {
            run_id,
            reason: format!("the run's record could not be read: {e}"),
        }),
    }
    run
}
