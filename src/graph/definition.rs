//! A validated graph, ready to execute.

use std::collections::HashMap;
use std::fmt;

use super::{Node, Predicate};

/// An edge from one node to another, taken when its predicate holds (or always, without one).
#[derive(Clone, Debug)]
pub struct Edge {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) predicate: Option<Predicate>,
}

impl Edge {
    /// The node it leaves.
    pub fn from(&self) -> &str {
        &self.from
    }

    /// The node it leads to.
    pub fn to(&self) -> &str {
        &self.to
    }

    /// Its condition; `None` means it is always taken.
    pub fn predicate(&self) -> Option<&Predicate> {
        self.predicate.as_ref()
    }
}

/// A graph whose nodes, edges, entry and exit points have been checked by
/// [`GraphBuilder::build`](super::GraphBuilder::build).
#[derive(Clone)]
pub struct Graph {
    pub(crate) nodes: HashMap<String, Node>,
    /// Node names in the order they were added.
    pub(crate) node_order: Vec<String>,
    /// Edges leaving each node, in the order they were added.
    pub(crate) edges: HashMap<String, Vec<Edge>>,
    pub(crate) entry_point: String,
    pub(crate) exit_points: Vec<String>,
    pub(crate) max_iterations: u32,
}

impl Graph {
    /// The node names, in the order they were added.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.node_order.iter().map(String::as_str)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// The edges leaving `node`, in the order they are tried.
    pub fn edges_from(&self, node: &str) -> &[Edge] {
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

    /// How many node executions a run may make before it fails as a runaway cycle.
    pub fn max_iterations(&self) -> u32 {
        self.max_iterations
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("nodes", &self.node_order)
            .field("edges", &self.edges.values().flatten().collect::<Vec<_>>())
            .field("entry_point", &self.entry_point)
            .field("exit_points", &self.exit_points)
            .field("max_iterations", &self.max_iterations)
            .finish()
    }
}
