//! Routing: which edge a completed node takes, or why the run ends there. Pure: it looks at
//! the graph and the state only.

use std::panic::AssertUnwindSafe;

use super::{Graph, WorkflowState};

/// Where a completed node leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) to: Option<String>,
    pub(crate) predicate: Option<String>,
    pub(crate) result: Option<bool>,
    pub(crate) reason: String,
    pub(crate) step: Step,
}

impl Route {
    /// The run cannot go on after the node, for `message`.
    pub(crate) fn failure(message: String) -> Route {
        Route {
            to: None,
            predicate: None,
            result: None,
            reason: message.clone(),
            step: Step::Fail(message),
        }
    }
}

/// What the run does after a completed node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Executes the node `Route::to`.
    Continue,
    /// Completes: the node was an exit point.
    Complete,
    /// Fails with this message (no edge holds, or the cycle bound is reached).
    Fail(String),
    /// Fails because `Route::to` would exceed `max_iterations`.
    CycleBound(String),
}

/// Chooses the edge taken after `node` produced `state`, the run's `steps`-th completed node
/// on its path: the first edge (in the order added) whose predicate holds; if none holds, the
/// run completes when `node` is an exit point and fails otherwise. The run may not complete
/// more than `max_iterations` nodes on its path.
pub(crate) fn route<S: WorkflowState, D>(
    graph: &Graph<S, D>,
    node: &str,
    state: &S,
    steps: u32,
    max_iterations: u32,
) -> Route {
    let mut rejected = Vec::new();
    for edge in graph.edges_from(node) {
        let (predicate, holds) = match edge.predicate() {
            None => (None, true),
            Some(p) => {
                let held = std::panic::catch_unwind(AssertUnwindSafe(|| p.test(state)));
                match held {
                    Ok(held) => (Some(p.name().to_owned()), held),
                    Err(panic) => {
                        let message = format!(
                            "predicate {} on the edge {node} -> {} panicked: {}",
                            p.name(),
                            edge.to(),
                            panic_message(panic.as_ref())
                        );
                        return Route {
                            to: None,
                            predicate: Some(p.name().to_owned()),
                            result: None,
                            reason: message.clone(),
                            step: Step::Fail(message),
                        };
                    }
                }
            }
        };
        if !holds {
            rejected.extend(predicate);
            continue;
        }
        let mut reason = match &predicate {
            Some(p) => format!("{p} held"),
            None => "unconditional edge".to_owned(),
        };
        if !rejected.is_empty() {
            reason.push_str(&format!("; {} did not", rejected.join(", ")));
        }
        let to = edge.to().to_owned();
        let max = max_iterations;
        let step = if steps >= max {
            Step::CycleBound(format!(
                "the run reached max_iterations ({max}) at node {node}: is there a cycle without an exit?"
            ))
        } else {
            Step::Continue
        };
        return Route {
            to: Some(to),
            result: predicate.as_ref().map(|_| true),
            predicate,
            reason,
            step,
        };
    }
    let (reason, step) = if graph.is_exit_point(node) {
        let reason = if rejected.is_empty() {
            "exit point reached".to_owned()
        } else {
            format!("exit point reached: {} did not hold", rejected.join(", "))
        };
        (reason, Step::Complete)
    } else {
        let reason = if rejected.is_empty() {
            format!("node {node} is not an exit point and has no outgoing edge")
        } else {
            format!(
                "no edge from node {node} holds: {} did not",
                rejected.join(", ")
            )
        };
        (reason.clone(), Step::Fail(reason))
    };
    Route {
        to: None,
        predicate: rejected.last().cloned(),
        result: (!rejected.is_empty()).then_some(false),
        reason,
        step,
    }
}

/// The text of a panic, for the error it becomes.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{BoxError, GraphBuilder, NodeContext, Predicate, State};

    async fn pass(state: State, _ctx: NodeContext) -> std::result::Result<State, BoxError> {
        Ok(state)
    }

    /// The route after the first completed node, under the default cycle bound.
    fn at(graph: &Graph, node: &str, state: &State) -> Route {
        route(graph, node, state, 1, 1000)
    }

    fn graph(configure: impl FnOnce(&mut GraphBuilder)) -> Graph {
        let mut g = GraphBuilder::new();
        g.add_node("a", pass)
            .add_node("b", pass)
            .add_node("c", pass)
            .set_entry_point("a")
            .add_exit_point("c");
        configure(&mut g);
        g.build().unwrap()
    }

    #[test]
    fn an_exit_point_takes_an_edge_that_holds_and_completes_when_none_does() {
        let g = graph(|g| {
            g.add_conditional_edge("c", "a", Predicate::key_exists("again"));
        });
        let r = at(&g, "c", &State::new().with("again", true));
        assert_eq!((r.step, r.to.as_deref()), (Step::Continue, Some("a")));
        assert_eq!(r.reason, "key_exists(again) held");

        let r = at(&g, "c", &State::new());
        assert_eq!((r.step, r.to), (Step::Complete, None));
        assert_eq!(
            (r.predicate.as_deref(), r.result),
            (Some("key_exists(again)"), Some(false))
        );
        assert_eq!(
            r.reason,
            "exit point reached: key_exists(again) did not hold"
        );

        let r = at(&graph(|_| {}), "c", &State::new());
        assert_eq!(
            (r.step, r.reason.as_str()),
            (Step::Complete, "exit point reached")
        );
    }

    #[test]
    fn the_first_edge_that_holds_wins_and_earlier_ones_are_named() {
        let g = graph(|g| {
            g.add_conditional_edge("a", "b", Predicate::key_exists("x"))
                .add_conditional_edge("a", "c", Predicate::key_exists("y"))
                .add_edge("a", "b");
        });
        let r = at(&g, "a", &State::new().with("y", 1));
        assert_eq!(r.to.as_deref(), Some("c"));
        assert_eq!(
            (r.predicate.as_deref(), r.result),
            (Some("key_exists(y)"), Some(true))
        );
        assert_eq!(r.reason, "key_exists(y) held; key_exists(x) did not");

        let r = at(&g, "a", &State::new());
        assert_eq!(
            (r.to.as_deref(), r.predicate, r.result),
            (Some("b"), None, None)
        );
        assert_eq!(
            r.reason,
            "unconditional edge; key_exists(x), key_exists(y) did not"
        );
    }

    #[test]
    fn a_node_without_edges_that_is_not_an_exit_fails() {
        let g = graph(|_| {});
        let r = at(&g, "b", &State::new());
        assert_eq!(
            r.step,
            Step::Fail("node b is not an exit point and has no outgoing edge".into())
        );
    }

    #[test]
    fn the_cycle_bound_counts_completed_nodes_on_the_path() {
        let g = graph(|g| {
            g.add_edge("a", "a");
        });
        for steps in 1..3 {
            assert_eq!(route(&g, "a", &State::new(), steps, 3).step, Step::Continue);
        }
        assert!(matches!(
            route(&g, "a", &State::new(), 3, 3).step,
            Step::CycleBound(_)
        ));
    }

    #[test]
    fn a_panicking_predicate_fails_the_run_with_its_name() {
        let g = graph(|g| {
            g.add_conditional_edge(
                "a",
                "b",
                Predicate::new("explodes", |_| panic!("bad predicate")),
            );
        });
        let r = at(&g, "a", &State::new());
        let Step::Fail(message) = r.step else {
            panic!("{r:?}")
        };
        assert_eq!(
            message,
            "predicate explodes on the edge a -> b panicked: bad predicate"
        );
    }
}
