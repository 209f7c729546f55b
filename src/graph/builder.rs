//! Declaring a graph, and the checks that make it runnable.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::node::node_from_fn;
use super::{
    BoxError, Edge, Graph, Node, NodeContext, NodePolicy, Predicate, SnapshotPolicy, State,
    WorkflowState,
};

/// How many node executions a run may make unless its factory or executor says otherwise.
pub const DEFAULT_MAX_ITERATIONS: u32 = 1000;

/// Why a declared graph cannot run. Every variant names the node concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// No node was added.
    #[error("the graph has no nodes; add some with node (or add_node)")]
    NoNodes,
    /// No entry point was set.
    #[error("the graph has no entry point; call start_at (or set_entry_point)")]
    NoEntryPoint,
    /// No exit point was added.
    #[error(
        "the graph has no exit point; call end_at (or add_exit_point) with the node that ends a run"
    )]
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
    /// A [`NodeHandle`] of another builder was given.
    #[error(
        "an edge, entry point or exit point was given a node handle from another graph builder; use the handles this builder's `node` returned"
    )]
    ForeignHandle,
    /// `SnapshotPolicy::Every(0)` was set.
    #[error("SnapshotPolicy::Every needs an interval of at least 1 step")]
    ZeroSnapshotInterval,
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

/// A node added with [`GraphBuilder::node`]: what edges, the entry point and exit points
/// take, so that an edge can only lead to a node that exists, of the graph's state type.
pub struct NodeHandle<S = State> {
    builder: u64,
    index: usize,
    state: PhantomData<fn() -> S>,
}

impl<S> Clone for NodeHandle<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for NodeHandle<S> {}

impl<S> fmt::Debug for NodeHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NodeHandle").field(&self.index).finish()
    }
}

/// Tells builders apart, so that a handle of one is refused by another.
static BUILDERS: AtomicU64 = AtomicU64::new(0);

/// Collects the nodes, edges, entry and exit points of a graph whose state is `S` and whose
/// nodes reach dependencies `D` through their [`NodeContext`].
///
/// Nodes are added with [`node`](GraphBuilder::node), which returns a [`NodeHandle`] that
/// edges take, so an edge cannot name a node that was not added:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use workflows::{BoxError, GraphBuilder, NodeContext, Predicate, WorkflowState};
///
/// #[derive(Clone, Default, Serialize, Deserialize, WorkflowState)]
/// struct Doc {
///     draft: String,
///     approved: bool,
/// }
///
/// async fn write(doc: Doc, _: NodeContext) -> Result<DocUpdate, BoxError> {
///     Ok(DocUpdate::default().draft(format!("{}.", doc.draft)))
/// }
///
/// async fn review(doc: Doc, _: NodeContext) -> Result<DocUpdate, BoxError> {
///     Ok(DocUpdate::default().approved(doc.draft.len() > 3))
/// }
///
/// let mut graph: GraphBuilder<Doc> = GraphBuilder::default();
/// let draft = graph.node("draft", write);
/// let check = graph.node("review", review);
/// graph
///     .start_at(draft)
///     .edge(draft, check)
///     .edge_if(check, draft, Predicate::new("rejected", |d: &Doc| !d.approved))
///     .end_at(check);
/// let graph = graph.build().unwrap();
/// assert_eq!(graph.edges_from("review").len(), 1);
/// ```
///
/// Graphs built from data (a JSON workflow's) name their nodes with strings instead:
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
/// assert_eq!(err.to_string(), "the graph has no nodes; add some with node (or add_node)");
/// ```
///
/// Methods chain; mistakes are reported all at once by [`GraphBuilder::build`].
pub struct GraphBuilder<S: WorkflowState = State, D = ()> {
    id: u64,
    nodes: HashMap<String, Node<S, D>>,
    node_order: Vec<String>,
    edges: Vec<Edge<S>>,
    entry_point: Option<String>,
    exit_points: Vec<String>,
    max_iterations: Option<u32>,
    snapshots: SnapshotPolicy,
    policies: Vec<(String, NodePolicy)>,
    default_policy: NodePolicy,
    run_timeout: Option<Duration>,
    duplicate: Option<String>,
    foreign_handle: bool,
}

impl<S: WorkflowState, D> Default for GraphBuilder<S, D> {
    fn default() -> Self {
        GraphBuilder {
            id: BUILDERS.fetch_add(1, Ordering::Relaxed),
            nodes: HashMap::new(),
            node_order: Vec::new(),
            edges: Vec::new(),
            entry_point: None,
            exit_points: Vec::new(),
            max_iterations: None,
            snapshots: SnapshotPolicy::default(),
            policies: Vec::new(),
            default_policy: NodePolicy::default(),
            run_timeout: None,
            duplicate: None,
            foreign_handle: false,
        }
    }
}

impl GraphBuilder {
    /// An empty builder of a graph on the JSON [`State`]. (For another state type, use
    /// `GraphBuilder::<MyState, MyDeps>::default()`.)
    pub fn new() -> Self {
        GraphBuilder::default()
    }
}

impl<S: WorkflowState, D: Send + Sync + 'static> GraphBuilder<S, D> {
    /// Adds a node, and returns its handle for edges: an async function that takes the state
    /// and its context and returns its update (for the JSON [`State`], the next state). Its
    /// error is a [`BoxError`], so `?` works on any error type.
    pub fn node<F, Fut>(&mut self, name: impl Into<String>, node: F) -> NodeHandle<S>
    where
        F: Fn(S, NodeContext<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S::Update, BoxError>> + Send + 'static,
    {
        let name = name.into();
        let node = node_from_fn(node);
        let index = match self.node_order.iter().position(|n| *n == name) {
            Some(index) => {
                self.duplicate.get_or_insert(name);
                index
            }
            None => {
                self.nodes.insert(name.clone(), node);
                self.node_order.push(name);
                self.node_order.len() - 1
            }
        };
        NodeHandle {
            builder: self.id,
            index,
            state: PhantomData,
        }
    }

    /// Adds a node by name (for graphs built from data); see [`GraphBuilder::node`].
    pub fn add_node<F, Fut>(&mut self, name: impl Into<String>, node: F) -> &mut Self
    where
        F: Fn(S, NodeContext<D>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S::Update, BoxError>> + Send + 'static,
    {
        self.node(name, node);
        self
    }
}

impl<S: WorkflowState, D> GraphBuilder<S, D> {
    /// The name of the node `handle` stands for, if it is one of this builder's.
    fn name_of(&mut self, handle: NodeHandle<S>) -> String {
        match self.node_order.get(handle.index) {
            Some(name) if handle.builder == self.id => name.clone(),
            _ => {
                self.foreign_handle = true;
                String::new()
            }
        }
    }

    /// Adds an edge that is always taken (unless an earlier edge from `from` was).
    pub fn edge(&mut self, from: NodeHandle<S>, to: NodeHandle<S>) -> &mut Self {
        let (from, to) = (self.name_of(from), self.name_of(to));
        self.add_edge(from, to)
    }

    /// Adds an edge taken when `predicate` holds. Edges leaving a node are tried in the order
    /// they were added.
    pub fn edge_if(
        &mut self,
        from: NodeHandle<S>,
        to: NodeHandle<S>,
        predicate: Predicate<S>,
    ) -> &mut Self {
        let (from, to) = (self.name_of(from), self.name_of(to));
        self.add_conditional_edge(from, to, predicate)
    }

    /// Sets the node a run starts at.
    pub fn start_at(&mut self, node: NodeHandle<S>) -> &mut Self {
        let node = self.name_of(node);
        self.set_entry_point(node)
    }

    /// Adds a node whose completion completes the run (when none of its edges holds).
    pub fn end_at(&mut self, node: NodeHandle<S>) -> &mut Self {
        let node = self.name_of(node);
        self.add_exit_point(node)
    }

    /// Adds an edge by node names; see [`GraphBuilder::edge`].
    pub fn add_edge(&mut self, from: impl Into<String>, to: impl Into<String>) -> &mut Self {
        self.edges.push(Edge {
            from: from.into(),
            to: to.into(),
            predicate: None,
        });
        self
    }

    /// Adds a conditional edge by node names; see [`GraphBuilder::edge_if`].
    pub fn add_conditional_edge(
        &mut self,
        from: impl Into<String>,
        to: impl Into<String>,
        predicate: Predicate<S>,
    ) -> &mut Self {
        self.edges.push(Edge {
            from: from.into(),
            to: to.into(),
            predicate: Some(predicate),
        });
        self
    }

    /// Sets the entry point by name; see [`GraphBuilder::start_at`].
    pub fn set_entry_point(&mut self, node: impl Into<String>) -> &mut Self {
        self.entry_point = Some(node.into());
        self
    }

    /// Adds an exit point by name; see [`GraphBuilder::end_at`].
    pub fn add_exit_point(&mut self, node: impl Into<String>) -> &mut Self {
        self.exit_points.push(node.into());
        self
    }

    /// Bounds how many node executions a run may make (default: the executor's
    /// [`max_iterations`](crate::ExecutorConfig::max_iterations), 1000 unless set).
    pub fn set_max_iterations(&mut self, max_iterations: u32) -> &mut Self {
        self.max_iterations = Some(max_iterations);
        self
    }

    /// What the stages of its runs store besides each node's update (default: nothing).
    pub fn snapshots(&mut self, policy: SnapshotPolicy) -> &mut Self {
        self.snapshots = policy;
        self
    }

    /// How `node` is tried: its retries and timeouts (see [`NodePolicy`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use workflows::{GraphBuilder, NodePolicy, RetryPolicy, State};
    ///
    /// let mut g = GraphBuilder::new();
    /// let call = g.node("call", |s: State, _| async move { Ok(s) });
    /// g.policy(call, NodePolicy::new().retry(RetryPolicy::attempts(5)).timeout(Duration::from_secs(30)))
    ///     .start_at(call)
    ///     .end_at(call);
    /// let graph = g.build().unwrap();
    /// assert_eq!(graph.policy("call").retries().max_attempts(), 5);
    /// ```
    pub fn policy(&mut self, node: NodeHandle<S>, policy: NodePolicy) -> &mut Self {
        let node = self.name_of(node);
        self.set_node_policy(node, policy)
    }

    /// Sets a node's policy by name; see [`GraphBuilder::policy`].
    pub fn set_node_policy(&mut self, node: impl Into<String>, policy: NodePolicy) -> &mut Self {
        self.policies.push((node.into(), policy));
        self
    }

    /// The policy of every node without one of its own (default: one attempt, no timeout).
    pub fn default_policy(&mut self, policy: NodePolicy) -> &mut Self {
        self.default_policy = policy;
        self
    }

    /// Bounds how long a run may take from its start, across attempts, backoffs and
    /// resumes: past it, the node executing is stopped and the run fails saying so.
    pub fn run_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.run_timeout = Some(timeout);
        self
    }

    /// Checks the declaration and returns the runnable graph.
    pub fn build(self) -> Result<Graph<S, D>, GraphError> {
        if self.nodes.is_empty() {
            return Err(GraphError::NoNodes);
        }
        if self.nodes.contains_key("") {
            return Err(GraphError::EmptyNodeName);
        }
        if let Some(name) = self.duplicate {
            return Err(GraphError::DuplicateNode(name));
        }
        if self.foreign_handle {
            return Err(GraphError::ForeignHandle);
        }
        if self.max_iterations == Some(0) {
            return Err(GraphError::ZeroMaxIterations);
        }
        if self.snapshots == SnapshotPolicy::Every(0) {
            return Err(GraphError::ZeroSnapshotInterval);
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
        for (node, _) in &self.policies {
            known(node, "node policy")?;
        }
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

        let mut edges: HashMap<String, Vec<Edge<S>>> = HashMap::new();
        for edge in self.edges {
            edges.entry(edge.from.clone()).or_default().push(edge);
        }
        Ok(Graph {
            nodes: self.nodes,
            node_order: self.node_order,
            edges,
            entry_point,
            exit_points: self.exit_points,
            max_iterations: self.max_iterations,
            snapshots: self.snapshots,
            policies: self.policies.into_iter().collect(),
            default_policy: self.default_policy,
            run_timeout: self.run_timeout,
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
        assert_eq!(graph.max_iterations(), None);
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
