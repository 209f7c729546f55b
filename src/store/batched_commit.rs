//! The node commits and starts of several runs as one statement: what group commit sends
//! for a batch.
//!
//! Each run's part is what the journal's node commit writes for one run that goes on to its
//! next node, or completes: its stage completed (from `started` only), its decision, its
//! checkpoint, and then its next node's `started` stage or the run's completion, each
//! written only if the one before was, under the run's lease (see [`fence`](crate::fence)).
//! Here the runs' values travel as arrays, one per column, unnested into one row per run,
//! and every part joins the rows of the part before it: a run whose lease no longer holds,
//! or whose stage is no longer `started`, gets nothing written, while the other runs of the
//! batch do. It also inserts the runs it starts, each `running` under a new lease with its
//! first node's `started` stage, as a run started alone is. The statement returns the runs
//! it wrote, and each run it completed or started as it recorded it (with its lease token,
//! when started), so that nobody reads that run again.
//!
//! A statement holds only the parts its batch needs: the run's completion when a part
//! completes its run, the inserts of new runs when a part starts one. PostgreSQL sets up
//! every part of a data-modifying `WITH` (its table, its indexes, its plan) even when the
//! part writes nothing: a batch of 8 refused parts ran in 57-94 µs as the statement of node
//! commits alone, against 84-125 µs with the parts it did not need. So each of the four
//! shapes ([`BatchShape`]) is a statement of its own, prepared once per connection.
//!
//! This is the one node statement written as SQL text rather than with Diesel's DSL, which
//! cannot join `unnest`; its values are still typed binds, and the tests check that it
//! writes the rows the single-run commit writes.

use std::sync::{LazyLock, OnceLock};

use diesel::dsl::AsSelect;
use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AstPass, Query, QueryBuilder, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::TypeMetadata;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel::{Expression, Selectable, SelectableHelper};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::model::{JsonText, RawJson, RunId, RunStatus, StageStatus};
use crate::store::rows::RunRow;
use crate::store::statement_walk::{collect_binds_into_room, walked_sql};

/// One run's node commit, owned, so that the task committing a batch can send it.
#[derive(Debug, Clone)]
pub(crate) struct NodePart {
    pub(crate) run_id: RunId,
    pub(crate) lease_token: uuid::Uuid,
    pub(crate) node: String,
    pub(crate) iteration: i32,
    pub(crate) attempt: i32,
    pub(crate) duration_ms: i32,
    pub(crate) state_update: JsonText,
    pub(crate) output_snapshot: Option<RawJson>,
    pub(crate) to_node: Option<String>,
    pub(crate) predicate_name: Option<String>,
    pub(crate) predicate_result: Option<bool>,
    pub(crate) reason: String,
    pub(crate) state: JsonText,
    pub(crate) then: Then,
}

/// A run to insert `running` under a new lease, with its first node's `started` stage: what
/// [`insert_running`](crate::store::runs::insert_running) writes, owned.
#[derive(Debug, Clone)]
pub(crate) struct StartPart {
    pub(crate) run_id: RunId,
    pub(crate) workflow: String,
    pub(crate) params: RawJson,
    pub(crate) owner: String,
    /// How long the lease lasts, in microseconds.
    pub(crate) lease_us: i64,
    pub(crate) node: String,
    pub(crate) input: RawJson,
}

/// One run's part of a batch: a node commit, or a start.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    Node(NodePart),
    Start(StartPart),
}

impl From<NodePart> for Part {
    fn from(part: NodePart) -> Self {
        Part::Node(part)
    }
}

impl From<StartPart> for Part {
    fn from(part: StartPart) -> Self {
        Part::Start(part)
    }
}

impl Part {
    /// The run it writes.
    pub(crate) fn run_id(&self) -> RunId {
        match self {
            Part::Node(part) => part.run_id,
            Part::Start(part) => part.run_id,
        }
    }
}

/// What a batch wrote of one run: its id; the run as recorded, if the batch completed or
/// started it; and the token of the lease it started it under.
pub(crate) type WrittenRun = (RunId, Option<RunRow>, Option<uuid::Uuid>);

/// What a part writes after its checkpoint.
#[derive(Debug, Clone)]
pub(crate) enum Then {
    /// The `started` stage of the run's next node, at its step, with its input.
    Node {
        node: String,
        iteration: i32,
        input: Option<RawJson>,
    },
    /// The run's completion, with its result.
    Complete { result: JsonText },
}

/// The statement committing `parts` (of different runs); its rows are the ids of the runs
/// it wrote, each with the run as recorded if the part completed or started it (and then,
/// if started, its lease token).
#[derive(Debug, Default)]
pub(crate) struct BatchedCommit {
    run_ids: Vec<RunId>,
    lease_tokens: Vec<uuid::Uuid>,
    nodes: Vec<String>,
    iterations: Vec<i32>,
    attempts: Vec<i32>,
    durations_ms: Vec<i32>,
    state_updates: Vec<JsonText>,
    output_snapshots: Vec<Option<RawJson>>,
    to_nodes: Vec<Option<String>>,
    predicate_names: Vec<Option<String>>,
    predicate_results: Vec<Option<bool>>,
    reasons: Vec<String>,
    states: Vec<JsonText>,
    next_nodes: Vec<Option<String>>,
    next_iterations: Vec<Option<i32>>,
    next_inputs: Vec<Option<RawJson>>,
    results: Vec<Option<JsonText>>,
    new_run_ids: Vec<RunId>,
    new_workflows: Vec<String>,
    new_params: Vec<RawJson>,
    new_owners: Vec<String>,
    new_leases_us: Vec<i64>,
    new_nodes: Vec<String>,
    new_inputs: Vec<RawJson>,
}

impl BatchedCommit {
    pub(crate) fn new(parts: impl IntoIterator<Item = Part>) -> Self {
        let mut batch = BatchedCommit::default();
        for part in parts {
            let part = match part {
                Part::Node(part) => part,
                Part::Start(start) => {
                    batch.new_run_ids.push(start.run_id);
                    batch.new_workflows.push(start.workflow);
                    batch.new_params.push(start.params);
                    batch.new_owners.push(start.owner);
                    batch.new_leases_us.push(start.lease_us);
                    batch.new_nodes.push(start.node);
                    batch.new_inputs.push(start.input);
                    continue;
                }
            };
            batch.run_ids.push(part.run_id);
            batch.lease_tokens.push(part.lease_token);
            batch.nodes.push(part.node);
            batch.iterations.push(part.iteration);
            batch.attempts.push(part.attempt);
            batch.durations_ms.push(part.duration_ms);
            batch.state_updates.push(part.state_update);
            batch.output_snapshots.push(part.output_snapshot);
            batch.to_nodes.push(part.to_node);
            batch.predicate_names.push(part.predicate_name);
            batch.predicate_results.push(part.predicate_result);
            batch.reasons.push(part.reason);
            batch.states.push(part.state);
            let (node, iteration, input, result) = match part.then {
                Then::Node {
                    node,
                    iteration,
                    input,
                } => (Some(node), Some(iteration), input, None),
                Then::Complete { result } => (None, None, None, Some(result)),
            };
            batch.next_nodes.push(node);
            batch.next_iterations.push(iteration);
            batch.next_inputs.push(input);
            batch.results.push(result);
        }
        batch
    }
}

/// Which optional parts a batch's statement holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchShape {
    /// Whether a part completes its run: the statement updates `runs` and returns the run.
    completes: bool,
    /// Whether a part starts a run: the statement inserts it and its first stage.
    starts: bool,
}

impl BatchShape {
    /// Where the statement's text is kept in [`BATCH_SQL`].
    fn index(self) -> usize {
        usize::from(self.completes) * 2 + usize::from(self.starts)
    }
}

impl BatchedCommit {
    /// The parts its statement needs.
    fn shape(&self) -> BatchShape {
        BatchShape {
            completes: self.results.iter().any(Option::is_some),
            starts: !self.new_run_ids.is_empty(),
        }
    }

    /// Sends the batch as one statement: the runs it wrote, each with the run as recorded
    /// if its part completed or started it.
    pub(crate) async fn load(self, conn: &mut AsyncPgConnection) -> QueryResult<Vec<WrittenRun>> {
        let shape = self.shape();
        match (shape.completes, shape.starts) {
            (false, false) => Shaped::<false, false>(self).load(conn).await,
            (false, true) => Shaped::<false, true>(self).load(conn).await,
            (true, false) => Shaped::<true, false>(self).load(conn).await,
            (true, true) => Shaped::<true, true>(self).load(conn).await,
        }
    }
}

/// A batch as the statement of its shape: a type of its own for each shape, so that each is
/// prepared once per connection under that type.
struct Shaped<const COMPLETES: bool, const STARTS: bool>(BatchedCommit);

impl<const COMPLETES: bool, const STARTS: bool> Shaped<COMPLETES, STARTS> {
    const SHAPE: BatchShape = BatchShape {
        completes: COMPLETES,
        starts: STARTS,
    };
    /// How many values its statement binds, whatever the batch's size (see
    /// [`collect_binds_into_room`]): an array for each of a node part's 17 values and 4
    /// statuses; the completion's status; the starts' 7 arrays and 2 statuses.
    const BINDS: usize = 21 + if COMPLETES { 1 } else { 0 } + if STARTS { 9 } else { 0 };
}

/// Binds `$self`'s arrays, each cast to its type, separated by commas.
macro_rules! arrays {
    ($self:ident, $out:ident: $($field:ident as $st:ty => $cast:literal),+ $(,)?) => {
        let mut first = true;
        $(
            if !std::mem::take(&mut first) {
                $out.push_sql(", ");
            }
            $out.push_bind_param::<Array<$st>, _>(&$self.$field)?;
            $out.push_sql($cast);
        )+
    };
}

impl<const COMPLETES: bool, const STARTS: bool> QueryFragment<Pg> for Shaped<COMPLETES, STARTS> {
    /// The text of every batch of this shape, built once: its values are all binds, so it
    /// does not depend on the batch. Building it walks the whole statement and quotes every
    /// column of a run twice, which the task committing batches would otherwise do for each
    /// batch, between one batch's end and the next one's start.
    fn to_sql(&self, out: &mut PgQueryBuilder, _backend: &Pg) -> QueryResult<()> {
        let cell = &BATCH_SQL[Self::SHAPE.index()];
        let sql = match cell.get() {
            Some(sql) => sql,
            None => {
                let sql = walked_sql(self)?;
                cell.get_or_init(|| sql)
            }
        };
        debug_assert_eq!(
            Some(sql.as_str()),
            walked_sql(self).ok().as_deref(),
            "the batch statement's text depends on more than its shape"
        );
        out.push_sql(sql);
        Ok(())
    }

    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        debug_assert_eq!(self.0.shape(), Self::SHAPE, "a batch sent as another shape");
        self.0.walk(out, Self::SHAPE)
    }

    fn collect_binds<'b>(
        &'b self,
        out: &mut RawBytesBindCollector<Pg>,
        metadata_lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
        backend: &'b Pg,
    ) -> QueryResult<()> {
        collect_binds_into_room(self, Self::BINDS, out, metadata_lookup, backend)
    }

    /// One text whatever the batch's size: prepared once per connection.
    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl BatchedCommit {
    /// Writes the statement of shape `shape` for this batch.
    fn walk<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>, shape: BatchShape) -> QueryResult<()> {
        // The runs held under their leases, each with its values: what every later part
        // reads. Locked in the order of their ids, so that two statements locking some of
        // the same runs cannot deadlock.
        out.push_sql("WITH \"held_run\" AS MATERIALIZED (SELECT p.* FROM runs JOIN unnest(");
        arrays!(self, out:
            run_ids as SqlUuid => "::uuid[]",
            lease_tokens as SqlUuid => "::uuid[]",
            nodes as Text => "::text[]",
            iterations as Integer => "::int4[]",
            attempts as Integer => "::int4[]",
            durations_ms as Integer => "::int4[]",
            state_updates as Jsonb => "::jsonb[]",
            output_snapshots as Nullable<Jsonb> => "::jsonb[]",
            to_nodes as Nullable<Text> => "::text[]",
            predicate_names as Nullable<Text> => "::text[]",
            predicate_results as Nullable<Bool> => "::bool[]",
            reasons as Text => "::text[]",
            states as Jsonb => "::jsonb[]",
            next_nodes as Nullable<Text> => "::text[]",
            next_iterations as Nullable<Integer> => "::int4[]",
            next_inputs as Nullable<Jsonb> => "::jsonb[]",
            results as Nullable<Jsonb> => "::jsonb[]",
        );
        out.push_sql(
            ") AS p(run_id, lease_token, node, iteration, attempt, duration_ms, \
             state_update, output_snapshot, to_node, predicate_name, predicate_result, reason, \
             state_data, next_node, next_iteration, next_input, result) \
             ON runs.id = p.run_id AND runs.lease_token = p.lease_token WHERE runs.status = ",
        );
        out.push_bind_param::<Text, _>(&RunStatus::Running)?;
        out.push_sql(
            " ORDER BY runs.id FOR NO KEY UPDATE OF runs), \
             completed_stage AS MATERIALIZED (UPDATE stages SET status = ",
        );
        out.push_bind_param::<Text, _>(&StageStatus::Completed)?;
        out.push_sql(
            ", duration_ms = p.duration_ms, state_update = p.state_update, \
             output_snapshot = p.output_snapshot FROM \"held_run\" p \
             WHERE stages.run_id = p.run_id AND stages.node_name = p.node \
             AND stages.iteration = p.iteration AND stages.attempt = p.attempt \
             AND stages.status = ",
        );
        out.push_bind_param::<Text, _>(&StageStatus::Started)?;
        out.push_sql(
            " RETURNING stages.run_id), \
             decided AS MATERIALIZED (INSERT INTO decisions (run_id, from_node, to_node, \
             predicate_name, predicate_result, reason) SELECT p.run_id, p.node, p.to_node, \
             p.predicate_name, p.predicate_result, p.reason FROM \"held_run\" p JOIN completed_stage \
             ON completed_stage.run_id = p.run_id RETURNING decisions.run_id), \
             checkpointed AS MATERIALIZED (INSERT INTO checkpoints (run_id, state_data, \
             checkpoint_node) SELECT p.run_id, p.state_data, p.node FROM \"held_run\" p JOIN decided \
             ON decided.run_id = p.run_id ON CONFLICT (run_id) DO UPDATE SET \
             state_data = excluded.state_data, checkpoint_node = excluded.checkpoint_node \
             RETURNING checkpoints.run_id), \
             next_started AS MATERIALIZED (INSERT INTO stages (run_id, node_name, iteration, \
             attempt, status, input_snapshot) \
             SELECT p.run_id, p.next_node, p.next_iteration, 1, ",
        );
        out.push_bind_param::<Text, _>(&StageStatus::Started)?;
        // A run completes only once its checkpoint is saved, as its single commit does.
        out.push_sql(
            ", p.next_input FROM \"held_run\" p JOIN completed_stage \
             ON completed_stage.run_id = p.run_id WHERE p.next_node IS NOT NULL \
             RETURNING stages.run_id)",
        );
        if shape.completes {
            out.push_sql(", ended AS MATERIALIZED (UPDATE runs SET status = ");
            out.push_bind_param::<Text, _>(&RunStatus::Completed)?;
            out.push_sql(
                ", result = p.result, error_message = NULL, completed_at = clock_timestamp() \
                 FROM \"held_run\" p JOIN checkpointed ON checkpointed.run_id = p.run_id \
                 WHERE runs.id = p.run_id AND p.next_node IS NULL RETURNING ",
            );
            RUN_ROW.walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        if shape.starts {
            // The runs it starts: each inserted `running` under a new lease, with its first
            // node's `started` stage (whose foreign key is checked at the end of the
            // statement, when its run exists).
            out.push_sql(", new_parts AS MATERIALIZED (SELECT * FROM unnest(");
            arrays!(self, out:
                new_run_ids as SqlUuid => "::uuid[]",
                new_workflows as Text => "::text[]",
                new_params as Jsonb => "::jsonb[]",
                new_owners as Text => "::text[]",
                new_leases_us as BigInt => "::int8[]",
                new_nodes as Text => "::text[]",
                new_inputs as Jsonb => "::jsonb[]",
            );
            out.push_sql(
                ") AS s(id, workflow, params, owner, lease_us, node, input)), \
                 new_runs AS MATERIALIZED (INSERT INTO runs (id, workflow_name, status, params, \
                 created_at, started_at, submitted_by_library, owner, lease_token, heartbeat_at, \
                 lease_expires_at) SELECT s.id, s.workflow, ",
            );
            out.push_bind_param::<Text, _>(&RunStatus::Running)?;
            out.push_sql(
                ", s.params, statement_timestamp(), statement_timestamp(), true, s.owner, \
                 gen_random_uuid(), clock_timestamp(), \
                 clock_timestamp() + s.lease_us * interval '1 microsecond' FROM new_parts s \
                 RETURNING ",
            );
            RUN_ROW.walk_ast(out.reborrow())?;
            out.push_sql(
                ", runs.lease_token), \
                 first_stages AS MATERIALIZED (INSERT INTO stages (run_id, node_name, iteration, \
                 attempt, status, input_snapshot) SELECT s.id, s.node, 1, 1, ",
            );
            out.push_bind_param::<Text, _>(&StageStatus::Started)?;
            out.push_sql(", s.input FROM new_parts s RETURNING stages.run_id)");
        }
        // The runs it wrote: those whose next stage it started, and those it completed,
        // with their rows. Without completions, the rows are all null: a join on `false`
        // reads no row of `runs`, and gives the columns their types.
        if shape.completes {
            out.push_sql(
                " SELECT p.run_id, ended.*, NULL::uuid FROM \"held_run\" p LEFT JOIN ended \
                 ON ended.id = p.run_id \
                 WHERE ended.id IS NOT NULL \
                 OR p.run_id IN (SELECT next_started.run_id FROM next_started)",
            );
        } else {
            out.push_sql(" SELECT next_started.run_id, ");
            RUN_ROW.walk_ast(out.reborrow())?;
            out.push_sql(", NULL::uuid FROM next_started LEFT JOIN runs ON false");
        }
        if shape.starts {
            out.push_sql(" UNION ALL SELECT new_runs.id, new_runs.* FROM new_runs");
        }
        Ok(())
    }
}

/// The statement's text for each shape, once built (see [`BatchShape::index`]).
static BATCH_SQL: [OnceLock<String>; 4] = [const { OnceLock::new() }; 4];

/// The columns of a run that [`RunRow`] reads: what the statement returns of a run it
/// completed.
static RUN_ROW: LazyLock<AsSelect<RunRow, Pg>> = LazyLock::new(RunRow::as_select);

/// The SQL type of a run as [`RunRow`] reads it.
type RunRowSqlType = <<RunRow as Selectable<Pg>>::SelectExpression as Expression>::SqlType;

impl<const COMPLETES: bool, const STARTS: bool> Query for Shaped<COMPLETES, STARTS> {
    type SqlType = (SqlUuid, Nullable<RunRowSqlType>, Nullable<SqlUuid>);
}

impl<const COMPLETES: bool, const STARTS: bool> QueryId for Shaped<COMPLETES, STARTS> {
    type QueryId = Self;
    // One text per shape whatever the batch: prepared under this type, so that Diesel does
    // not hash and compare the text at every batch.
    const HAS_STATIC_QUERY_ID: bool = true;
}
