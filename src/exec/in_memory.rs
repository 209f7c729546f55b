//! Running a workflow in memory, without a database: for unit tests of a workflow's graph.
//!
//! The engine is the executor's own (the same routing, cycle bound, failures and panics);
//! only its journal keeps each step in memory instead of writing it to the tables.
//!
//! ```
//! use workflows::{run_in_memory, GraphBuilder, Params, Predicate, RunStatus, Runtime, State, WorkflowDef, BoxError};
//!
//! async fn countdown(g: &mut GraphBuilder, _: &Runtime, p: Params) -> Result<State, BoxError> {
//!     g.add_node("tick", |mut s: State, _| async move {
//!         let left: u32 = s.require("left")?;
//!         s.set("left", left - 1);
//!         Ok(s)
//!     })
//!     .add_conditional_edge("tick", "tick", Predicate::new("more", |s: &State| s.value("left") != Some(&0.into())))
//!     .set_entry_point("tick")
//!     .add_exit_point("tick");
//!     Ok(State::new().with("left", p.require::<u32>("from")?))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> workflows::Result<()> {
//! let def = WorkflowDef::new("countdown", "Counts down", |g, r, p| Box::pin(countdown(g, r, p)));
//! let run = run_in_memory(&def, &Runtime::new(), serde_json::json!({"from": 3})).await?;
//! assert_eq!(run.status, RunStatus::Completed);
//! assert_eq!(run.state.require::<u32>("left")?, 0);
//! let path: Vec<_> = run.steps.iter().map(|s| (s.node.as_str(), s.iteration)).collect();
//! assert_eq!(path, [("tick", 1), ("tick", 2), ("tick", 3)]);
//! assert_eq!(run.steps[2].reason, "exit point reached: more did not hold");
//! # Ok(()) }
//! ```

use std::sync::Mutex;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::engine::{Cursor, Engine, Outcome};
use super::observer::{Observer, Observers};
use crate::error::{Error, Result};
use crate::graph::{BoxFuture, DEFAULT_MAX_ITERATIONS, State, WorkflowState};
use crate::model::{RunId, RunStatus, StateUpdate};
use crate::store::journal::{AttemptFailure, Journal, Next, NodeCommit, NodeFailure};
use crate::workflow::params::Params;
use crate::workflow::registry::WorkflowDef;
use crate::workflow::runtime::Runtime;

/// How a run in memory ended, and the steps it took.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemoryRun {
    /// `completed` or `failed`.
    pub status: RunStatus,
    /// The state after the last node that completed.
    pub state: State,
    /// Why the run failed, if it did.
    pub error: Option<String>,
    /// Each node that completed, in order, with the edge taken after it.
    pub steps: Vec<MemoryStep>,
}

/// One completed node of a run in memory, and what followed it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MemoryStep {
    /// The node.
    pub node: String,
    /// What it changed in the state, as its stage would store it.
    pub update: StateUpdate,
    /// Its step number, from 1.
    pub iteration: u32,
    /// The node that followed; `None` when the run ended here.
    pub to: Option<String>,
    /// The predicate of the edge taken, or the last one that did not hold.
    pub predicate: Option<String>,
    /// Why, in words (as a decision records it).
    pub reason: String,
}

/// Runs `def` with `params` to its end, in memory: the factory, then every node, as the
/// executor would, without writing anything anywhere. Bad params and a factory's error are
/// an `Err`, as [`Executor::start`](crate::Executor::start) would report them; a node that
/// fails fails the run (`status: failed`, `error`).
pub async fn run_in_memory(
    def: &WorkflowDef,
    runtime: &Runtime,
    params: Value,
) -> Result<MemoryRun> {
    run_observed(def, runtime, params, &Observers::new()).await
}

/// [`run_in_memory`], telling `observer` of the run's events.
async fn run_observed(
    def: &WorkflowDef,
    runtime: &Runtime,
    params: Value,
    observer: &dyn Observer,
) -> Result<MemoryRun> {
    let params = Params::from_value(params)?;
    def.check_params(&params)?;
    let instance = def.instantiate(runtime, params).await?;
    let run_id = RunId::from_uuid(uuid::Uuid::new_v4());
    let journal = MemoryJournal::default();
    let engine = Engine {
        graph: &*instance.graph,
        deps: &instance.deps,
        max_iterations: instance
            .graph
            .max_iterations()
            .unwrap_or(DEFAULT_MAX_ITERATIONS),
        journal: &journal,
        observer,
        cancel: &CancellationToken::new(),
        run_id,
        // In memory, every backoff is waited out here.
        hold_waits_up_to: None,
        deadline: instance
            .graph
            .run_timeout()
            .map(|limit| tokio::time::Instant::now() + limit),
    };
    let cursor = Cursor::fresh(run_id, instance.initial)?;
    let initial = cursor.position.clone();
    let outcome = engine
        .run(
            instance.graph.entry_point().to_owned(),
            cursor,
            1,
            1,
            crate::graph::node_signals::Given::default(),
            None,
        )
        .await?;
    let recorded = journal.into_inner();
    let (status, error) = match outcome {
        Outcome::Completed(_) => (RunStatus::Completed, None),
        Outcome::Failed(message) => (RunStatus::Failed, Some(message)),
        Outcome::Cancelled | Outcome::Superseded => (RunStatus::Cancelled, None),
        // Not reached: nothing releases a run in memory.
        Outcome::Waiting => (RunStatus::Waiting, None),
    };
    Ok(MemoryRun {
        status,
        state: recorded.state.unwrap_or(initial),
        error,
        steps: recorded.steps,
    })
}

impl MemoryRun {
    /// The final state as the workflow's state type (an error naming the field that does
    /// not fit it).
    pub fn state_as<S: WorkflowState>(&self) -> Result<S> {
        Ok(S::__from_data(self.state.data().clone())?)
    }
}

/// What a run in memory recorded.
#[derive(Default)]
struct Recorded {
    steps: Vec<MemoryStep>,
    state: Option<State>,
}

/// A journal that keeps each step in memory, and never refuses one.
#[derive(Default)]
struct MemoryJournal(Mutex<Recorded>);

impl MemoryJournal {
    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // Steps are pushed whole: a poisoned lock still holds whole ones.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn into_inner(self) -> Recorded {
        self.0
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Journal for MemoryJournal {
    fn node_started<'a>(
        &'a self,
        _run_id: RunId,
        _step: (&'a str, u32, u32),
        _input: &'a Value,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn attempt_failed<'a>(
        &'a self,
        _failure: &'a AttemptFailure<'a>,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn node_completed<'a>(&'a self, commit: &'a NodeCommit<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            // Read back from the text a stage would store.
            let update: StateUpdate =
                serde_json::from_str(commit.update.as_str()).map_err(|e| Error::Value {
                    container: "state",
                    key: commit.node.to_owned(),
                    reason: format!("its update reads back as no update: {e}"),
                })?;
            let mut recorded = self.recorded();
            recorded.steps.push(MemoryStep {
                node: commit.node.to_owned(),
                update,
                iteration: commit.iteration,
                to: match commit.next {
                    Next::Node { node, .. } => Some(node.to_owned()),
                    _ => None,
                },
                predicate: commit.transition.predicate.map(str::to_owned),
                reason: commit.transition.reason.to_owned(),
            });
            recorded.state = Some(commit.checkpoint.clone());
            Ok(true)
        })
    }

    fn node_failed<'a>(&'a self, _failure: &'a NodeFailure<'a>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn run_failed<'a>(&'a self, _run_id: RunId, _message: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn run_completed<'a>(
        &'a self,
        _run_id: RunId,
        _result: &'a Value,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async { Ok(true) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;
    use crate::exec::events::Event;
    use crate::graph::BoxError;
    use crate::graph::GraphBuilder;

    /// Records the events it is told of, and how many of them were step events
    /// ([`Event::is_step`]); says whether it observes steps.
    struct Recorder {
        steps: bool,
        heard: Mutex<Vec<String>>,
        step_events: Mutex<usize>,
    }

    impl Recorder {
        fn observing_steps(steps: bool) -> Self {
            Recorder {
                steps,
                heard: Mutex::default(),
                step_events: Mutex::default(),
            }
        }

        fn heard(&self) -> Vec<String> {
            self.heard.lock().unwrap().clone()
        }
    }

    impl Observer for Recorder {
        fn on_event(&self, event: &Event) {
            if event.is_step() {
                *self.step_events.lock().unwrap() += 1;
            }
            let heard = match event {
                Event::NodeStarted { node, .. } => format!("start {node}"),
                Event::NodeCompleted { node, .. } => format!("done {node}"),
                Event::EdgeTransition { to, .. } => format!("edge {to:?}"),
                Event::CheckpointSaved { node, .. } => format!("checkpoint {node}"),
                Event::CycleDetected { node, .. } => format!("cycle at {node}"),
                other => format!("{other:?}"),
            };
            self.heard.lock().unwrap().push(heard);
        }

        fn observes_steps(&self) -> bool {
            self.steps
        }
    }

    /// Node `again` twice, then the cycle bound (2 steps) stops the run (`never` is never
    /// reached).
    fn twice() -> WorkflowDef {
        WorkflowDef::new("twice", "a cycle bounded at 2 steps", |g, _, _| {
            Box::pin(async move {
                let g: &mut GraphBuilder = g;
                let same = |s: State, _| async move { Ok::<_, BoxError>(s) };
                g.add_node("again", same)
                    .add_node("never", same)
                    .add_edge("again", "again")
                    .set_entry_point("again")
                    .add_exit_point("never")
                    .set_max_iterations(2);
                Ok(State::new())
            })
        })
    }

    async fn heard_by(observers: &[&Arc<Recorder>]) -> MemoryRun {
        let all = observers.iter().fold(Observers::new(), |all, observer| {
            all.with(Arc::clone(observer) as Arc<dyn Observer>)
        });
        run_observed(&twice(), &Runtime::new(), json!({}), &all)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_node_s_update_is_what_it_changed_whether_it_changes_its_state_or_returns_another() {
        let def = WorkflowDef::new("edits", "changes its state, then replaces it", |g, _, _| {
            Box::pin(async move {
                let g: &mut GraphBuilder = g;
                g.add_node("edit", |mut s: State, _| async move {
                    s.set("a", 2);
                    s.set("list", json!([1, 2]));
                    s.remove("gone");
                    s.set("same", 1);
                    Ok::<_, BoxError>(s)
                })
                .add_node("replace", |s: State, _| async move {
                    let a: u32 = s.require("a")?;
                    Ok::<_, BoxError>(State::new().with("c", a + 1))
                })
                .add_edge("edit", "replace")
                .set_entry_point("edit")
                .add_exit_point("replace");
                Ok(State::new()
                    .with("a", 1)
                    .with("list", json!([1]))
                    .with("gone", true)
                    .with("same", 1))
            })
        });
        let run = run_in_memory(&def, &Runtime::new(), json!({}))
            .await
            .unwrap();
        assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
        let updates: Vec<Value> = run
            .steps
            .iter()
            .map(|step| serde_json::to_value(&step.update).unwrap())
            .collect();
        assert_eq!(
            updates,
            [
                json!({"set": {"a": 2}, "append": {"list": [2]}, "remove": ["gone"]}),
                json!({"set": {"c": 3}, "remove": ["a", "list", "same"]}),
            ]
        );
        assert_eq!(Value::Object(run.state.data().clone()), json!({"c": 3}));
    }

    #[tokio::test]
    async fn no_step_events_are_made_when_no_observer_observes_steps() {
        let recorder = Arc::new(Recorder::observing_steps(false));
        let run = heard_by(&[&recorder]).await;
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.steps.len(), 2);
        assert_eq!(recorder.heard(), ["cycle at again"]);
    }

    #[tokio::test]
    async fn step_events_are_made_when_one_observer_observes_steps_and_every_observer_hears_them() {
        let (deaf, listening) = (
            Arc::new(Recorder::observing_steps(false)),
            Arc::new(Recorder::observing_steps(true)),
        );
        heard_by(&[&deaf, &listening]).await;
        let every_event = [
            "start again",
            "done again",
            "edge Some(\"again\")",
            "checkpoint again",
            "start again",
            "done again",
            "edge Some(\"again\")",
            "checkpoint again",
            "cycle at again",
        ];
        assert_eq!(listening.heard(), every_event);
        assert_eq!(deaf.heard(), every_event);
    }

    #[tokio::test]
    async fn the_events_left_unmade_for_an_observer_deaf_to_steps_are_the_step_events() {
        let (deaf, listening) = (
            Arc::new(Recorder::observing_steps(false)),
            Arc::new(Recorder::observing_steps(true)),
        );
        heard_by(&[&deaf]).await;
        heard_by(&[&listening]).await;
        let unmade = listening.heard().len() - deaf.heard().len();
        assert_eq!(unmade, 8, "4 step events for each of 2 steps");
        assert_eq!(*listening.step_events.lock().unwrap(), unmade);
        assert_eq!(*deaf.step_events.lock().unwrap(), 0);
    }
}
