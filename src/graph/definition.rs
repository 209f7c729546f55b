//! A validated graph, ready to execute.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::{Node, NodePolicy, Predicate, SnapshotPolicy, State, WorkflowState};

/// An edge from one node to another, taken when its predicate holds (or always, without one).
pub struct Edge<S = State> {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) predicate: Option<Predicate<S>>,
}

impl<S> Clone for Edge<S> {
    fn clone(&self) -> Self {
        Edge {
            from: self.from.clone(),
            to: self.to.clone(),
            predicate: self.predicate.clone(),
        }
    }
}

impl<S> fmt::Debug for Edge<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edge")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("predicate", &self.predicate)
            .finish()
    }
}

impl<S> Edge<S> {
    /// The node it leaves.
    pub fn from(&self) -> &str {
        &self.from
    }

    /// The node it leads to.
    pub fn to(&self) -> &str {
        &self.to
    }

    /// Its condition; `None` means it is always taken.
    pub fn predicate(&self) -> Option<&Predicate<S>> {
        self.predicate.as_ref()
    }
}

/// A graph whose nodes, edges, entry and exit points have been checked by
/// [`GraphBuilder::build`](super::GraphBuilder::build). `S` is its state, `D` the
/// dependencies its nodes reach through their context.
pub struct Graph<S: WorkflowState = State, D = ()> {
    pub(crate) nodes: HashMap<String, Node<S, D>>,
    /// Node names in the order they were added.
    pub(crate) node_order: Vec<String>,
    /// Edges leaving each node, in the order they were added.
    pub(crate) edges: HashMap<String, Vec<Edge<S>>>,
    pub(crate) entry_point: String,
    pub(crate) exit_points: Vec<String>,
    /// What the factory set; the executor's default otherwise.
    pub(crate) max_iterations: Option<u32>,
    pub(crate) snapshots: SnapshotPolicy,
    /// Policies of the nodes that have one of their own.
    pub(crate) policies: HashMap<String, NodePolicy>,
    /// The policy of every other node.
    pub(crate) default_policy: NodePolicy,
    pub(crate) run_timeout: Option<Duration>,
}

impl<S: WorkflowState, D> Clone for Graph<S, D> {
    fn clone(&self) -> Self {
        Graph {
            nodes: self.nodes.clone(),
            node_order: self.node_order.clone(),
            edges: self.edges.clone(),
            entry_point: self.entry_point.clone(),
            exit_points: self.exit_points.clone(),
            max_iterations: self.max_iterations,
            snapshots: self.snapshots,
            policies: self.policies.clone(),
            default_policy: self.default_policy.clone(),
            run_timeout: self.run_timeout,
        }
    }
}

impl<S: WorkflowState, D> Graph<S, D> {
    /// How `node` is tried: its own policy, or the graph's default.
    pub fn policy(&self, node: &str) -> &NodePolicy {
        self.policies.get(node).unwrap_or(&self.default_policy)
    }

    /// The longest a run may take from its start, if the factory bounded it.
    pub fn run_timeout(&self) -> Option<Duration> {
        self.run_timeout
    }

    /// The node names, in the order they were added.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.node_order.iter().map(String::as_str)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node<S, D>> {
        self.nodes.get(name)
    }

    /// The edges leaving `node`, in the order they are tried.
    pub fn edges_from(&self, node: &str) -> &[Edge<S>] {
        self.edges.get(node).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Where a run starts.
    pub fn entry_point(&self) -> &str {
        &self.entry_point
    }

    /// Whether reaching `node` completes the run.
    pub fn is_exit_point(&self, node: &str) -> bool {
        self.exit_points.iter().any(|e| e == node)
    }

    /// The nodes whose completion completes the run.
    pub fn exit_points(&self) -> &[String] {
        &self.exit_points
    }

    /// How many node executions a run may make before it fails as a runaway cycle, if the
    /// factory said (otherwise the executor's
    /// [`max_iterations`](crate::ExecutorConfig::max_iterations) applies).
    pub fn max_iterations(&self) -> Option<u32> {
        self.max_iterations
    }

    /// What its runs' stages store.
    pub fn snapshots(&self) -> SnapshotPolicy {
        self.snapshots
    }
}

impl<S: WorkflowState, D> fmt::Debug for Graph<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("nodes", &self.node_order)
            .field("edges", &self.edges.values().flatten().collect::<Vec<_>>())
            .field("entry_point", &self.entry_point)
            .field("exit_points", &self.exit_points)
            .field("max_iterations", &self.max_iterations)
            .field("snapshots", &self.snapshots)
            .finish()
    }
}
