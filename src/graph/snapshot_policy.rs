//! How much of a run's state its stages store.

/// What each stage of a workflow's runs stores besides its node's update.
///
/// Every stage stores what its node changed (`stages.state_update`), the first stage of each
/// attempt the whole state it started from (`input_snapshot`), and the run keeps one whole
/// checkpoint; the state at any step is rebuilt from those
/// ([`repository::state_at`](crate::repository::state_at)). Whole snapshots per stage make
/// reading a step's state one row away, at the cost of storing the state again at every step,
/// which for a state that grows every step (a conversation) is quadratic in the run's length.
///
/// ```
/// use workflows::{GraphBuilder, SnapshotPolicy};
/// let mut graph = GraphBuilder::new();
/// graph.snapshots(SnapshotPolicy::Every(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SnapshotPolicy {
    /// Updates only: the default.
    #[default]
    Updates,
    /// Also the whole state before and after every node (`input_snapshot`,
    /// `output_snapshot`), as the Go service stored it.
    Full,
    /// Also the whole state after every k-th completed node (`output_snapshot`); `k` must be
    /// at least 1.
    Every(u32),
}

impl SnapshotPolicy {
    /// Whether the stage that completed the run's `steps`-th node stores the whole state it
    /// produced.
    pub(crate) fn keeps_output(self, steps: u32) -> bool {
        match self {
            SnapshotPolicy::Updates => false,
            SnapshotPolicy::Full => true,
            SnapshotPolicy::Every(k) => k > 0 && steps.is_multiple_of(k),
        }
    }

    /// Whether every stage stores the whole state it started from (not only an attempt's
    /// first).
    pub(crate) fn keeps_every_input(self) -> bool {
        self == SnapshotPolicy::Full
    }
}
