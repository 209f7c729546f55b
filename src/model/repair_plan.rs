//! A repair plan: what the Go service's history left in its tables that the integrity
//! migration refuses, found by the migrator's preflight, and what each repair changed.

use std::fmt;

/// A kind of row the integrity migration refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DefectKind {
    /// Stages that repeat the (run, node, iteration) of an earlier stage of their run (the Go
    /// service restarts iteration numbers on resume), or whose iteration is below 1.
    RepeatedIterations,
    /// Checkpoints whose `run_id` is not a UUID.
    NonUuidCheckpoints,
    /// Checkpoints whose run does not exist (the Go service never deletes checkpoints).
    OrphanCheckpoints,
    /// Runs whose status is none of `pending`, `running`, `completed`, `failed`, `cancelled`.
    UnknownRunStatuses,
    /// Stages whose status is none of `started`, `completed`, `failed`.
    UnknownStageStatuses,
    /// Stages with a negative `duration_ms`.
    NegativeDurations,
    /// Rows of this table with a NULL `created_at` or `updated_at`.
    MissingTimestamps {
        /// The table: `runs`, `stages`, `decisions` or `checkpoints`.
        table: &'static str,
    },
}

/// What one kind of defect is, how many rows have it, and a few of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defect {
    /// Which defect.
    pub kind: DefectKind,
    /// How many rows have it.
    pub rows: u64,
    /// Up to three of them, with their ids.
    pub examples: Vec<String>,
}

/// Every defect found, in the order [`Migrator::repair`](crate::db::Migrator::repair) repairs them; empty when there is nothing to
/// repair. Its `Display` is the report `workflows migrate repair` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairPlan {
    /// The defects found.
    pub defects: Vec<Defect>,
}

impl RepairPlan {
    /// Whether nothing needs repairing.
    pub fn is_empty(&self) -> bool {
        self.defects.is_empty()
    }
}

/// One repair carried out: what, and how many rows it changed, moved or archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// The defect repaired.
    pub kind: DefectKind,
    /// The rows changed (or moved to the archive).
    pub rows: u64,
}

impl DefectKind {
    /// What rows of this kind are, as a sentence's subject.
    fn what(self) -> String {
        match self {
            DefectKind::RepeatedIterations => "stages repeat the (run, node, iteration) of an earlier stage of their run, or have an iteration below 1 (the Go service restarts iteration numbers on resume)".to_owned(),
            DefectKind::NonUuidCheckpoints => "checkpoints have a run_id that is not a UUID".to_owned(),
            DefectKind::OrphanCheckpoints => "checkpoints belong to no run (the Go service never deletes checkpoints)".to_owned(),
            DefectKind::UnknownRunStatuses => "runs have a status other than ('pending', 'running', 'completed', 'failed', 'cancelled')".to_owned(),
            DefectKind::UnknownStageStatuses => "stages have a status other than ('started', 'completed', 'failed')".to_owned(),
            DefectKind::NegativeDurations => "stages have a negative duration_ms".to_owned(),
            DefectKind::MissingTimestamps { table } => format!("rows of {table} have no created_at or updated_at"),
        }
    }

    /// What its repair does.
    pub fn repair(self) -> &'static str {
        match self {
            DefectKind::RepeatedIterations => {
                "every stage of each such run renumbered 1, 2, 3, … in the order it was created (as this library numbers the steps of a resumed run)"
            }
            DefectKind::NonUuidCheckpoints | DefectKind::OrphanCheckpoints => {
                "moved to workflows_repair_archive"
            }
            DefectKind::UnknownRunStatuses => {
                "a known status in other case, spacing or spelling (`Completed`, `canceled`) becomes that status; any other becomes `failed`, its error message saying what the status was"
            }
            DefectKind::UnknownStageStatuses => {
                "a known status in other case or spacing becomes that status; any other becomes `failed`, its error message saying what the status was"
            }
            DefectKind::NegativeDurations => "duration_ms set to NULL (unknown)",
            DefectKind::MissingTimestamps { table: "runs" } => {
                "created_at set to the earliest time the run has (started, updated, completed; now if none), updated_at to the latest"
            }
            DefectKind::MissingTimestamps {
                table: "checkpoints",
            } => "the missing one set to the other (to now if both are missing)",
            DefectKind::MissingTimestamps { .. } => "created_at set to its run's created_at",
        }
    }
}

impl fmt::Display for DefectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what())
    }
}

impl fmt::Display for RepairPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.defects.is_empty() {
            return f.write_str("nothing to repair");
        }
        for (i, defect) in self.defects.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "- {} {}", defect.rows, defect.kind)?;
            writeln!(f, "  e.g. {}", defect.examples.join("; "))?;
            write!(f, "  repair: {}", defect.kind.repair())?;
        }
        Ok(())
    }
}
