//! Declaring a graph, and the checks that make it runnable.

use std::collections::HashMap;
use std::future::Future;

use super::node::node_from_fn;
use super::{BoxError, Edge, Graph, Node, NodeContext, Predicate, State};

/// How many node executions a run may make unless its factory says otherwise.
pub const DEFAULT_MAX_ITERATIONS: u32 = 1000;

/// Why a declared graph cannot run. Every variant names the node concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// No node was added.
    #[error("the graph has no nodes; add some with add_node")]
    NoNodes,
    /// No entry point was set.
    #[error("the graph has no entry point; call set_entry_point")]
    NoEntryPoint,
    /// No exit point was added.
    #[error("the graph has no exit point; call add_exit_point with the node that ends a run")]
    NoExitPoint,
    /// A node name is empty.
    #[error("a node name is empty")]
    EmptyNodeName,
    /// Two nodes share a name.
    #[error("node {0:?} is added twice")]
    DuplicateNode(String),
    /// An edge, the entry point or an exit point names a node that was not added.
    #[error("{role} names node {node:?}, which was not added; nodes: {known}")]
    UnknownNode {
        /// The name used.
        node: String,
        /// Where it was used: `edge source`, `edge target`, `entry point` or `exit point`.
        role: &'static str,
        /// The nodes that exist, comma-separated.
        known: String,
    },
    /// `max_iterations` was set to 0.
    #[error("max_iterations must be at least 1")]
    ZeroMaxIterations,
    /// An exit point has an edge that is always taken, so a run could never end there.
    #[error(
        "node {node:?} is an exit point, but its edge to {to:?} has no predicate, so a run would always take it and never end at {node:?}; give the edge a predicate (a run ends at an exit point when none of its edges holds), or stop making {node:?} an exit point"
    )]
    UnconditionalEdgeFromExit {
        /// The exit point.
        node: String,
        /// Where its unconditional edge leads.
        to: String,
    },
}

/// Collects the nodes, edges, entry and exit points of a graph.
///
/// Methods chain; mistakes are reported all at once by [`GraphBuilder::build`].
///
/// ```
/// use workflows::{GraphBuilder, Predicate, State};
///
/// let mut graph = GraphBuilder::new();
/// graph
///     .add_node("draft", |state: State, _ctx| async move { Ok(state.with("draft", "...")) })
///     .add_node("review", |state: State, _ctx| async move { Ok(state.with("approved", true)) })
///     .add_node("publish", |state: State, _ctx| async move { Ok(state) })
///     .add_edge("draft", "review")
///     .add_conditional_edge("review", "publish", Predicate::key_equals("approved", true))
///     .add_conditional_edge("review", "draft", Predicate::always())
///     .set_entry_point("draft")
///     .add_exit_point("publish")
///     .set_max_iterations(10);
/// let graph = graph.build().unwrap();
/// assert_eq!(graph.edges_from("review").len(), 2);
///
/// let err = GraphBuilder::new().build().unwrap_err();
/// assert_eq!(err.to_string(), "the graph has no nodes; add some with add_node");
/// ```
#[derive(Default)]
pub struct GraphBuilder {
    nodes: HashMap<String, Node>,
    node_order: Vec<String>,
    edges: Vec<Edge>,
    entry_point: Option<String>,
    exit_points: Vec<String>,
    max_iterations: Option<u32>,
    duplicate: Option<String>,
}

impl GraphBuilder {
    /// An empty builder with the default `max_iterations`.
    pub fn new() -> Self {
        GraphBuilder::default()
    }

    /// Adds a node: an async function that takes the state and returns the next one. Its
    /// error is a [`BoxError`], so `?` works on any error type.
    pub fn add_node<F, Fut>(&mut self, name: impl Into<String>, node: F) -> &mut Self
    where
        F: Fn(State, NodeContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<State, BoxError>> + Send + 'static,
    {
        let name = name.into();
        let node = node_from_fn(node);
        if self.nodes.insert(name.clone(), node).is_some() {
            self.duplicate.get_or_insert(name);
        } else {
            self.node_order.push(name);
        }
        self
    }

    /// Adds an edge that is always taken (unless an earlier edge from `from` was).
    pub fn add_edge(&mut self, from: impl Into<String>, to: impl Into<String>) -> &mut Self {
        self.edges.push(Edge {
            from: from.into(),
            to: to.into(),
            predicate: None,
        });
        self
    }

    /// Adds an edge taken when `predicate` holds. Edges leaving a node are tried in the order
    /// they were added.
    pub fn add_conditional_edge(
        &mut self,
        from: impl Into<String>,
        to: impl Into<String>,
        predicate: Predicate,
    ) -> &mut Self {
        self.edges.push(Edge {
            from: from.into(),
            to: to.into(),
            predicate: Some(predicate),
        });
        self
    }

    /// Sets the node a run starts at.
    pub fn set_entry_point(&mut self, node: impl Into<String>) -> &mut Self {
        self.entry_point = Some(node.into());
        self
    }

    /// Adds a node whose completion completes the run.
    pub fn add_exit_point(&mut self, node: impl Into<String>) -> &mut Self {
        self.exit_points.push(node.into());
        self
    }

    /// Bounds how many node executions a run may make (default 1000).
    pub fn set_max_iterations(&mut self, max_iterations: u32) -> &mut Self {
        self.max_iterations = Some(max_iterations);
        self
    }

    /// Checks the declaration and returns the runnable graph.
    pub fn build(self) -> Result<Graph, GraphError> {
        if self.nodes.is_empty() {
            return Err(GraphError::NoNodes);
        }
        if self.nodes.contains_key("") {
            return Err(GraphError::EmptyNodeName);
        }
        if let Some(name) = self.duplicate {
            return Err(GraphError::DuplicateNode(name));
        }
        let max_iterations = self.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS);
        if max_iterations == 0 {
            return Err(GraphError::ZeroMaxIterations);
        }
        let known = |node: &str, role: &'static str| {
            if self.nodes.contains_key(node) {
                Ok(())
            } else {
                Err(GraphError::UnknownNode {
                    node: node.to_owned(),
                    role,
                    known: self.node_order.join(", "),
                })
            }
        };
        for edge in &self.edges {
            known(&edge.from, "edge source")?;
            known(&edge.to, "edge target")?;
        }
        let entry_point = self.entry_point.clone().ok_or(GraphError::NoEntryPoint)?;
        known(&entry_point, "entry point")?;
        if self.exit_points.is_empty() {
            return Err(GraphError::NoExitPoint);
        }
        for exit in &self.exit_points {
            known(exit, "exit point")?;
        }
        let always_leaves_an_exit = self
            .edges
            .iter()
            .find(|e| e.predicate.is_none() && self.exit_points.contains(&e.from));
        if let Some(edge) = always_leaves_an_exit {
            return Err(GraphError::UnconditionalEdgeFromExit {
                node: edge.from.clone(),
                to: edge.to.clone(),
            });
        }

        let mut edges: HashMap<String, Vec<Edge>> = HashMap::new();
        for edge in self.edges {
            edges.entry(edge.from.clone()).or_default().push(edge);
        }
        Ok(Graph {
            nodes: self.nodes,
            node_order: self.node_order,
            edges,
            entry_point,
            exit_points: self.exit_points,
            max_iterations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pass(state: State, _ctx: NodeContext) -> Result<State, BoxError> {
        Ok(state)
    }

    fn two_nodes() -> GraphBuilder {
        let mut g = GraphBuilder::new();
        g.add_node("a", pass).add_node("b", pass).add_edge("a", "b");
        g
    }

    #[test]
    fn a_complete_declaration_builds() {
        let mut g = two_nodes();
        g.set_entry_point("a").add_exit_point("b");
        let graph = g.build().unwrap();
        assert_eq!(graph.node_names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(graph.entry_point(), "a");
        assert!(graph.is_exit_point("b"));
        assert_eq!(graph.max_iterations(), DEFAULT_MAX_ITERATIONS);
    }

    #[test]
    fn each_mistake_has_its_error() {
        let mut g = two_nodes();
        g.add_exit_point("b");
        assert_eq!(g.build().unwrap_err(), GraphError::NoEntryPoint);

        let mut g = two_nodes();
        g.set_entry_point("a");
        assert_eq!(g.build().unwrap_err(), GraphError::NoExitPoint);

        let mut g = two_nodes();
        g.set_entry_point("a")
            .add_exit_point("b")
            .add_node("a", pass);
        assert_eq!(
            g.build().unwrap_err(),
            GraphError::DuplicateNode("a".into())
        );

        let mut g = two_nodes();
        g.set_entry_point("a")
            .add_exit_point("b")
            .set_max_iterations(0);
        assert_eq!(g.build().unwrap_err(), GraphError::ZeroMaxIterations);

        let mut g = two_nodes();
        g.set_entry_point("a")
            .add_exit_point("b")
            .add_node("", pass);
        assert_eq!(g.build().unwrap_err(), GraphError::EmptyNodeName);

        let mut g = two_nodes();
        g.set_entry_point("a")
            .add_exit_point("b")
            .add_edge("b", "a");
        assert_eq!(
            g.build().unwrap_err(),
            GraphError::UnconditionalEdgeFromExit {
                node: "b".into(),
                to: "a".into()
            }
        );
    }

    #[test]
    fn an_exit_point_may_have_conditional_edges() {
        let mut g = two_nodes();
        g.set_entry_point("a")
            .add_exit_point("b")
            .add_conditional_edge("b", "a", Predicate::key_exists("again"));
        assert!(g.build().is_ok());
    }

    #[test]
    fn unknown_nodes_are_named_with_their_role() {
        let mut g = two_nodes();
        g.set_entry_point("a")
            .add_exit_point("b")
            .add_edge("b", "c");
        assert_eq!(
            g.build().unwrap_err().to_string(),
            r#"edge target names node "c", which was not added; nodes: a, b"#
        );

        let mut g = two_nodes();
        g.set_entry_point("start").add_exit_point("b");
        assert_eq!(
            g.build().unwrap_err(),
            GraphError::UnknownNode {
                node: "start".into(),
                role: "entry point",
                known: "a, b".into()
            }
        );

        let mut g = two_nodes();
        g.set_entry_point("a").add_exit_point("end");
        assert!(matches!(
            g.build().unwrap_err(),
            GraphError::UnknownNode {
                role: "exit point",
                ..
            }
        ));
    }

    #[test]
    fn edges_keep_the_order_they_were_added() {
        let mut g = two_nodes();
        g.add_node("c", pass)
            .add_conditional_edge("a", "c", Predicate::key_exists("x"))
            .set_entry_point("a")
            .add_exit_point("b")
            .add_exit_point("c");
        let graph = g.build().unwrap();
        let targets: Vec<_> = graph.edges_from("a").iter().map(|e| e.to()).collect();
        assert_eq!(targets, ["b", "c"]);
        assert_eq!(
            graph.edges_from("a")[1].predicate().map(Predicate::name),
            Some("key_exists(x)")
        );
        assert!(graph.edges_from("c").is_empty());
    }
}
