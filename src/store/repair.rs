//! Preflight and repair: what the Go service's history leaves in its tables that the
//! integrity migration (the second) refuses, and how each is put right.
//!
//! The Go state graph restarts iteration numbers at 1 on every resume, so a resumed run can
//! repeat a (run, node, iteration); its checkpoint store never deletes checkpoints and keys
//! them by free text, so some belong to no run and some name no UUID; rows may carry a status
//! the library does not know, a negative duration, or no timestamp. Before the second
//! migration applies, [`plan`] finds each of these; the migrator refuses while any is found,
//! with the plan as its report. [`apply`] carries the plan out in one transaction. Nothing is
//! deleted or overwritten without a trace: every row a repair changes or removes is first
//! copied, whole, to `workflows_repair_archive` with the reason, and every repair is counted.

use diesel::connection::LoadConnection;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl, sql_query};

use crate::error::{Error, Result};
use crate::model::{Defect, DefectKind, RepairPlan, Repaired};

/// A check for one kind of defect, and its repair.
struct Check {
    kind: DefectKind,
    /// One column `rows`: how many rows have the defect.
    count: &'static str,
    /// One column `example` per row, at most three.
    examples: &'static str,
    /// The statements that repair it, in order; the last one's row count is the repair's.
    /// Each archives before it changes.
    repair: &'static [&'static str],
}

/// PostgreSQL reads a UUID with or without braces and with a hyphen after any group of four
/// hexadecimal digits; anything else fails the second migration's cast.
macro_rules! uuid_text {
    () => {
        r"'^\{?[0-9a-fA-F]{4}(-?[0-9a-fA-F]{4}){7}\}?$'"
    };
}

/// The condition of a stage repeating an earlier stage's (run, node, iteration).
macro_rules! repeated_stage {
    () => {
        "SELECT id FROM (SELECT id, iteration, row_number() OVER (PARTITION BY run_id, node_name, iteration ORDER BY created_at NULLS FIRST, id) AS nth FROM stages) s WHERE nth > 1 OR iteration < 1"
    };
}

/// The condition of a checkpoint `c` whose run id is a UUID of no run (compared as text, so
/// that no cast can fail).
macro_rules! orphan {
    () => {
        concat!(
            "c.run_id ~ ",
            uuid_text!(),
            " AND NOT EXISTS (SELECT FROM runs r WHERE replace(r.id::text, '-', '') = lower(translate(c.run_id, '-{}', '')))"
        )
    };
}

/// Normalises a status: its lower-case trimmed form, and the American spelling of cancelled.
macro_rules! normalised {
    ($column:literal) => {
        concat!(
            "CASE WHEN lower(btrim(",
            $column,
            ")) = 'canceled' THEN 'cancelled' ELSE lower(btrim(",
            $column,
            ")) END"
        )
    };
}

macro_rules! archive {
    ($table:literal, $alias:literal, $reason:literal, $condition:expr) => {
        concat!(
            "INSERT INTO workflows_repair_archive (table_name, reason, row_data) SELECT '",
            $table,
            "', ",
            $reason,
            ", to_jsonb(",
            $alias,
            ") FROM ",
            $table,
            " ",
            $alias,
            " WHERE ",
            $condition
        )
    };
}

/// The checks, in the order their repairs run: checkpoints that cannot be kept go first (so
/// that the others may cast `run_id`), timestamps before the renumbering that orders by them.
const CHECKS: [Check; 10] = [
    Check {
        kind: DefectKind::NonUuidCheckpoints,
        count: concat!(
            "SELECT count(*) AS rows FROM checkpoints WHERE run_id !~ ",
            uuid_text!()
        ),
        examples: concat!(
            "SELECT format('checkpoint %L (node %s)', run_id, checkpoint_node) AS example FROM checkpoints WHERE run_id !~ ",
            uuid_text!(),
            " ORDER BY run_id LIMIT 3"
        ),
        repair: &[
            archive!(
                "checkpoints",
                "c",
                "'run_id is not a UUID'",
                concat!("c.run_id !~ ", uuid_text!())
            ),
            concat!("DELETE FROM checkpoints WHERE run_id !~ ", uuid_text!()),
        ],
    },
    Check {
        kind: DefectKind::OrphanCheckpoints,
        count: concat!(
            "SELECT count(*) AS rows FROM checkpoints c WHERE ",
            orphan!()
        ),
        examples: concat!(
            "SELECT format('checkpoint %L (node %s)', run_id, checkpoint_node) AS example FROM checkpoints c WHERE ",
            orphan!(),
            " ORDER BY run_id LIMIT 3"
        ),
        repair: &[
            archive!("checkpoints", "c", "'its run does not exist'", orphan!()),
            concat!("DELETE FROM checkpoints c WHERE ", orphan!()),
        ],
    },
    Check {
        kind: DefectKind::UnknownRunStatuses,
        count: "SELECT count(*) AS rows FROM runs WHERE status NOT IN ('pending', 'running', 'completed', 'failed', 'cancelled')",
        examples: "SELECT format('run %s (%L)', id, status) AS example FROM runs WHERE status NOT IN ('pending', 'running', 'completed', 'failed', 'cancelled') ORDER BY created_at NULLS FIRST, id LIMIT 3",
        repair: &[
            archive!(
                "runs",
                "r",
                "format('status %L is unknown', r.status)",
                "r.status NOT IN ('pending', 'running', 'completed', 'failed', 'cancelled')"
            ),
            concat!(
                "UPDATE runs SET status = CASE WHEN ",
                normalised!("status"),
                " IN ('pending', 'running', 'completed', 'failed', 'cancelled') THEN ",
                normalised!("status"),
                " ELSE 'failed' END, error_message = CASE WHEN ",
                normalised!("status"),
                " IN ('pending', 'running', 'completed', 'failed', 'cancelled') THEN error_message ELSE concat_ws('; ', error_message, format('its status was %L, which workflows does not know (set to failed by workflows migrate repair)', status)) END WHERE status NOT IN ('pending', 'running', 'completed', 'failed', 'cancelled')"
            ),
        ],
    },
    Check {
        kind: DefectKind::UnknownStageStatuses,
        count: "SELECT count(*) AS rows FROM stages WHERE status NOT IN ('started', 'completed', 'failed')",
        examples: "SELECT format('stage %s of run %s at %s (%L)', id, run_id, node_name, status) AS example FROM stages WHERE status NOT IN ('started', 'completed', 'failed') ORDER BY created_at NULLS FIRST, id LIMIT 3",
        repair: &[
            archive!(
                "stages",
                "s",
                "format('status %L is unknown', s.status)",
                "s.status NOT IN ('started', 'completed', 'failed')"
            ),
            concat!(
                "UPDATE stages SET status = CASE WHEN ",
                normalised!("status"),
                " IN ('started', 'completed', 'failed') THEN ",
                normalised!("status"),
                " ELSE 'failed' END, error_message = CASE WHEN ",
                normalised!("status"),
                " IN ('started', 'completed', 'failed') THEN error_message ELSE concat_ws('; ', error_message, format('its status was %L, which workflows does not know (set to failed by workflows migrate repair)', status)) END WHERE status NOT IN ('started', 'completed', 'failed')"
            ),
        ],
    },
    Check {
        kind: DefectKind::NegativeDurations,
        count: "SELECT count(*) AS rows FROM stages WHERE duration_ms < 0",
        examples: "SELECT format('stage %s of run %s at %s (%s ms)', id, run_id, node_name, duration_ms) AS example FROM stages WHERE duration_ms < 0 ORDER BY created_at NULLS FIRST, id LIMIT 3",
        repair: &[
            archive!("stages", "s", "'negative duration_ms'", "s.duration_ms < 0"),
            "UPDATE stages SET duration_ms = NULL WHERE duration_ms < 0",
        ],
    },
    Check {
        kind: DefectKind::MissingTimestamps { table: "runs" },
        count: "SELECT count(*) AS rows FROM runs WHERE created_at IS NULL OR updated_at IS NULL",
        examples: "SELECT format('run %s', id) AS example FROM runs WHERE created_at IS NULL OR updated_at IS NULL ORDER BY id LIMIT 3",
        repair: &[
            archive!(
                "runs",
                "r",
                "'created_at or updated_at is NULL'",
                "r.created_at IS NULL OR r.updated_at IS NULL"
            ),
            "UPDATE runs SET created_at = coalesce(created_at, started_at, updated_at, completed_at, now()), updated_at = coalesce(updated_at, completed_at, started_at, created_at, now()) WHERE created_at IS NULL OR updated_at IS NULL",
        ],
    },
    Check {
        kind: DefectKind::MissingTimestamps { table: "stages" },
        count: "SELECT count(*) AS rows FROM stages WHERE created_at IS NULL",
        examples: "SELECT format('stage %s of run %s at %s', id, run_id, node_name) AS example FROM stages WHERE created_at IS NULL ORDER BY id LIMIT 3",
        repair: &[
            archive!(
                "stages",
                "s",
                "'created_at is NULL'",
                "s.created_at IS NULL"
            ),
            "UPDATE stages s SET created_at = coalesce((SELECT r.created_at FROM runs r WHERE r.id = s.run_id), now()) WHERE created_at IS NULL",
        ],
    },
    Check {
        kind: DefectKind::MissingTimestamps { table: "decisions" },
        count: "SELECT count(*) AS rows FROM decisions WHERE created_at IS NULL",
        examples: "SELECT format('decision %s of run %s from %s', id, run_id, from_node) AS example FROM decisions WHERE created_at IS NULL ORDER BY id LIMIT 3",
        repair: &[
            archive!(
                "decisions",
                "d",
                "'created_at is NULL'",
                "d.created_at IS NULL"
            ),
            "UPDATE decisions d SET created_at = coalesce((SELECT r.created_at FROM runs r WHERE r.id = d.run_id), now()) WHERE created_at IS NULL",
        ],
    },
    Check {
        kind: DefectKind::MissingTimestamps {
            table: "checkpoints",
        },
        count: "SELECT count(*) AS rows FROM checkpoints WHERE created_at IS NULL OR updated_at IS NULL",
        examples: "SELECT format('checkpoint %L', run_id) AS example FROM checkpoints WHERE created_at IS NULL OR updated_at IS NULL ORDER BY run_id LIMIT 3",
        repair: &[
            archive!(
                "checkpoints",
                "c",
                "'created_at or updated_at is NULL'",
                "c.created_at IS NULL OR c.updated_at IS NULL"
            ),
            "UPDATE checkpoints SET created_at = coalesce(created_at, updated_at, now()), updated_at = coalesce(updated_at, created_at, now()) WHERE created_at IS NULL OR updated_at IS NULL",
        ],
    },
    Check {
        kind: DefectKind::RepeatedIterations,
        count: concat!(
            "SELECT count(*) AS rows FROM (",
            repeated_stage!(),
            ") repeated"
        ),
        examples: "SELECT format('run %s: %s at iteration %s, %s times', run_id, node_name, iteration, count(*)) AS example FROM stages GROUP BY run_id, node_name, iteration HAVING count(*) > 1 OR iteration < 1 ORDER BY min(created_at) NULLS FIRST, run_id LIMIT 3",
        repair: &[
            "DROP TABLE IF EXISTS pg_temp.workflows_renumbered",
            concat!(
                "CREATE TEMPORARY TABLE workflows_renumbered ON COMMIT DROP AS SELECT id, iteration AS was, row_number() OVER (PARTITION BY run_id ORDER BY created_at, iteration, id)::integer AS becomes FROM stages WHERE run_id IN (SELECT run_id FROM stages WHERE id IN (",
                repeated_stage!(),
                "))"
            ),
            "INSERT INTO workflows_repair_archive (table_name, reason, row_data) SELECT 'stages', format('iteration %s renumbered %s: its run repeats a (run, node, iteration)', n.was, n.becomes), to_jsonb(s) FROM stages s JOIN workflows_renumbered n ON n.id = s.id WHERE n.was <> n.becomes",
            "UPDATE stages s SET iteration = n.becomes FROM workflows_renumbered n WHERE s.id = n.id AND n.was <> n.becomes",
        ],
    },
];

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    rows: i64,
}

#[derive(QueryableByName)]
struct Example {
    #[diesel(sql_type = Text)]
    example: String,
}

/// Every defect in the current schema's seed tables.
pub(crate) fn plan<C: LoadConnection<Backend = Pg>>(conn: &mut C) -> Result<RepairPlan> {
    let mut defects = Vec::new();
    for check in &CHECKS {
        let found: Count = sql_query(check.count).get_result(conn)?;
        if found.rows == 0 {
            continue;
        }
        let examples: Vec<Example> = sql_query(check.examples).load(conn)?;
        defects.push(Defect {
            kind: check.kind,
            rows: u64::try_from(found.rows).unwrap_or_default(),
            examples: examples.into_iter().map(|e| e.example).collect(),
        });
    }
    Ok(RepairPlan { defects })
}

/// Carries out every repair in one transaction, archiving each row before it changes it;
/// returns what each repair changed. Rolled back, with an error, if any defect is left.
pub(crate) fn apply<C: LoadConnection<Backend = Pg>>(conn: &mut C) -> Result<Vec<Repaired>> {
    conn.transaction::<_, Error, _>(|conn| {
        sql_query(
            "CREATE TABLE IF NOT EXISTS workflows_repair_archive (
                 id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 table_name TEXT NOT NULL,
                 reason TEXT NOT NULL,
                 row_data JSONB NOT NULL,
                 archived_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp()
             )",
        )
        .execute(conn)?;
        let mut repaired = Vec::new();
        for check in &CHECKS {
            let found: Count = sql_query(check.count).get_result(conn)?;
            if found.rows == 0 {
                continue;
            }
            let mut rows = 0;
            for statement in check.repair {
                rows = sql_query(*statement).execute(conn)?;
            }
            repaired.push(Repaired {
                kind: check.kind,
                rows: u64::try_from(rows).unwrap_or_default(),
            });
        }
        let left = plan(conn)?;
        if !left.is_empty() {
            return Err(Error::Migration(
                format!("the repair left defects behind, so it was rolled back:\n{left}").into(),
            ));
        }
        Ok(repaired)
    })
}
