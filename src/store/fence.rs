//! The fence: every write of a run's rows starts by locking the run's row under the
//! writer's lease, and writes nothing when that lock finds no row.
//!
//! A check would not do. In a data-modifying `WITH`, every part reads one snapshot, so a
//! check such as `EXISTS (the run, running under my lease)` can pass on a snapshot taken
//! just before a cancel or a takeover committed, and the write then lands after it.
//! `SELECT … FOR NO KEY UPDATE` instead waits for a concurrent change of the row to commit
//! and then reads the row as it is now (PostgreSQL re-checks the condition on the newest
//! version under READ COMMITTED): a run cancelled or taken over meanwhile is not found, and
//! every part that reads the lock's rows writes nothing. Whoever changes the run after the
//! lock was taken waits until the whole statement has committed.
//!
//! The lock is the first part of an [`AtomicStatement`](crate::store::atomic_statement), named
//! [`HELD_RUN`]; the other parts read it through the pseudo-table [`held_run`], so that
//! Diesel checks their types like any other query. A node commit chains its parts the same
//! way (lock → stage → decision → checkpoint → what follows), each reading the rows the one
//! before returned: a part writes only if the one before did, and PostgreSQL runs them in
//! that order, so every row of a commit is timestamped before the run's end.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::QueryFragment;

use crate::model::{RunId, RunStatus};
use crate::store::lease::Lease;
use crate::store::schema::{checkpoints, decisions, interrupts, messages, runs, stages};
use crate::store::sql_types::StatusLiteral;

/// The name of the part that locks the run: what [`held_run`] reads.
pub(crate) const HELD_RUN: &str = "held_run";
/// The name of the part that completes a node's stage: what [`completed_stage`] reads.
pub(crate) const COMPLETED_STAGE: &str = "completed_stage";
/// The name of the part that fails a retried attempt's stage: what [`failed_stage`] reads.
pub(crate) const FAILED_STAGE: &str = "failed_stage";
/// The name of the part that records an answer: what [`answered`] reads.
pub(crate) const ANSWERED: &str = "answered";
/// The name of the part that records a node's question: what [`asked`] reads.
pub(crate) const ASKED: &str = "asked";
/// The name of the part that records a node's decision: what [`decided`] reads.
pub(crate) const DECIDED: &str = "decided";
/// The name of the part that saves a run's checkpoint: what [`checkpointed`] reads.
pub(crate) const CHECKPOINTED: &str = "checkpointed";

#[allow(unreachable_pub, missing_docs)]
mod pseudo_tables {
    diesel::table! {
        /// The run row a statement locked: the part named `held_run`.
        held_run (id) {
            id -> Uuid,
        }
    }

    diesel::table! {
        /// The stage a node commit completed: the part named `completed_stage`.
        completed_stage (run_id) {
            run_id -> Uuid,
            node_name -> Text,
        }
    }

    diesel::table! {
        /// The stage of an attempt that failed and is tried again: the part named
        /// `failed_stage`.
        failed_stage (run_id) {
            run_id -> Uuid,
        }
    }

    diesel::table! {
        /// The interrupt an answer answered: the part named `answered`.
        answered (run_id) {
            run_id -> Uuid,
        }
    }

    diesel::table! {
        /// The interrupt a node commit recorded: the part named `asked`.
        asked (run_id) {
            run_id -> Uuid,
        }
    }

    diesel::table! {
        /// The decision a node commit recorded: the part named `decided`.
        decided (run_id) {
            run_id -> Uuid,
            from_node -> Text,
        }
    }

    diesel::table! {
        /// The checkpoint a node commit saved: the part named `checkpointed`.
        checkpointed (run_id) {
            run_id -> Uuid,
        }
    }
}

pub(crate) use pseudo_tables::{
    answered, asked, checkpointed, completed_stage, decided, failed_stage, held_run,
};

diesel::allow_tables_to_appear_in_same_query!(held_run, completed_stage);
diesel::allow_tables_to_appear_in_same_query!(held_run, runs);
diesel::allow_tables_to_appear_in_same_query!(held_run, stages);
diesel::allow_tables_to_appear_in_same_query!(held_run, checkpoints);
diesel::allow_tables_to_appear_in_same_query!(held_run, decisions);
diesel::allow_tables_to_appear_in_same_query!(completed_stage, runs);
diesel::allow_tables_to_appear_in_same_query!(completed_stage, stages);
diesel::allow_tables_to_appear_in_same_query!(completed_stage, checkpoints);
diesel::allow_tables_to_appear_in_same_query!(completed_stage, decisions);
diesel::allow_tables_to_appear_in_same_query!(held_run, failed_stage);
diesel::allow_tables_to_appear_in_same_query!(failed_stage, runs);
diesel::allow_tables_to_appear_in_same_query!(failed_stage, stages);
diesel::allow_tables_to_appear_in_same_query!(decided, runs);
diesel::allow_tables_to_appear_in_same_query!(decided, checkpoints);
diesel::allow_tables_to_appear_in_same_query!(checkpointed, runs);
diesel::allow_tables_to_appear_in_same_query!(checkpointed, interrupts);
diesel::allow_tables_to_appear_in_same_query!(asked, runs);
diesel::allow_tables_to_appear_in_same_query!(asked, messages);
diesel::allow_tables_to_appear_in_same_query!(checkpointed, messages);
diesel::allow_tables_to_appear_in_same_query!(completed_stage, messages);
diesel::allow_tables_to_appear_in_same_query!(held_run, messages);
diesel::allow_tables_to_appear_in_same_query!(answered, runs);
diesel::allow_tables_to_appear_in_same_query!(held_run, interrupts);

/// A lock part: the rows of `runs` it finds, locked until the statement commits.
pub(crate) type Lock = Box<dyn QueryFragment<Pg> + Send + Sync>;

/// Locks the run if it is `running` under `lease`: the fence of every write its executor
/// makes while it executes.
pub(crate) fn running_under(lease: Lease) -> Lock {
    Box::new(
        runs::table
            .find(lease.run_id)
            .filter(runs::status.eq(StatusLiteral(RunStatus::Running)))
            .filter(runs::lease_token.eq(lease.token))
            .select(runs::id)
            .for_no_key_update(),
    )
}

/// Locks the run if it was cancelled while `lease` held it: what its executor needs to close
/// the stage its cancel interrupted (and nothing more).
pub(crate) fn cancelled_under(lease: Lease) -> Lock {
    Box::new(
        runs::table
            .find(lease.run_id)
            .filter(runs::status.eq(RunStatus::Cancelled))
            .filter(runs::lease_token.eq(lease.token))
            .select(runs::id)
            .for_no_key_update(),
    )
}

/// Locks the run if nothing executes it (it is `failed` or `cancelled`): the fence of writes
/// made from outside an execution, such as editing a checkpoint before a resume.
pub(crate) fn resting(run_id: RunId) -> Lock {
    Box::new(
        runs::table
            .find(run_id)
            .filter(runs::status.eq_any([RunStatus::Failed, RunStatus::Cancelled]))
            .select(runs::id)
            .for_no_key_update(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pseudo_tables_are_named_like_the_parts_they_read() {
        let held = held_run::table.select(held_run::id);
        let held = diesel::debug_query::<Pg, _>(&held).to_string();
        assert!(held.contains(&format!("FROM \"{HELD_RUN}\"")), "{held}");
        let completed = completed_stage::table.select(completed_stage::run_id);
        let completed = diesel::debug_query::<Pg, _>(&completed).to_string();
        assert!(
            completed.contains(&format!("FROM \"{COMPLETED_STAGE}\"")),
            "{completed}"
        );
    }
}
