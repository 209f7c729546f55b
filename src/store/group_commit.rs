//! Group commit: node commits and starts of different runs that are ready at the same time
//! are sent as one statement ([`BatchedCommit`]), so that they share one round trip, one
//! statement's overhead and one WAL flush.
//!
//! A batch gathers while the batch before it is in flight, and goes once that one has ended and
//! its runs have come back: each with its next part (which may complete the run), or with a
//! write that is not batched (a failure, a wait), or after [`GATHER_BOUND`] at the most; a run
//! the batch completed is not waited for, and one it started is waited for until its first
//! commit. Without that wait, the first run of a batch to come back would go alone, the others
//! would gather behind it, and the runs would split into two half-size batches for good
//! (measured with 8 runs in flight: 3.9 parts a batch, against 6.5 with it). At low load a
//! commit waits for nobody: a part that finds no batch in flight is the whole of its batch, and
//! a run executing alone does not batch at all (below). Each run's part is fenced by its own lease, so a part its fence refuses (it
//! writes nothing) refuses only its run. When the statement fails, the fault may be any one
//! part's: every part is then sent again alone by its journal, so that it fails only its own
//! run. When the connection breaks, every part sees a broken write, as its own statement would
//! have, and its journal's retry applies (it asks whether its write landed). A part whose run
//! stopped waiting for it while it was queued (its task was dropped) is left out of its batch.
//!
//! One batch is in flight at a time. Two (each committing task waiting for the runs of its
//! own last batch) were measured with W's 8 runs in flight and were no faster: the batches
//! halved (3.6 parts against 7.5), the statements per run doubled (3.1 against 1.5), and the
//! server's CPU per node step doubled with them (335 µs against 170), since each statement
//! pays its own commit and WAL flush. Measured again once the pool handed out the connection
//! returned last (two groups, each run in the one with fewer runs; 7 interleaved rounds):
//! 0.78–1.25× the runs per second of one group (median 0.96), for 1.2–2× the server's CPU per
//! node step.
//!
//! A run executing alone commits alone: while no other run's journal is open
//! ([`GroupCommit::join`]), its commits do not go through the committing task, which could only
//! wait for it and pass each commit between tasks (measured with W at c=1: 0.55–0.91× the runs
//! per second of separate commits), and a start with no run executing inserts its run alone.
//!
//! A part's run is durable when [`GroupCommit::commit`] returns: the statement has committed.

use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::error::{Error, Result};
use crate::model::{Run, RunId};
use crate::store::batched_commit::{BatchedCommit, NodePart, Part, StartPart, WrittenRun};
use crate::store::lease::Lease;
use crate::store::run_connections::RunConnections;

/// How long a batch waits, at the most, for the runs of the batch before it to come back.
/// Longer than a node of W takes to run and record its part; short beside a node that calls
/// a model or a service, whose run the others then stop waiting for.
pub(crate) const GATHER_BOUND: Duration = Duration::from_millis(1);

/// The node commits of an executor's runs, batched.
pub(crate) struct GroupCommit {
    connections: RunConnections,
    queue: Mutex<Queue>,
    /// Told when the last run the next batch waits for has come back.
    came_back: Notify,
    /// How long the next batch waits for them, at the most.
    gather_bound: Duration,
    /// How many runs' journals are open: each is a [`Member`].
    members: AtomicUsize,
}

/// A run's journal, counted as one of a group commit's members while it is open.
pub(crate) struct Member(Arc<GroupCommit>);

impl Deref for Member {
    type Target = Arc<GroupCommit>;
    fn deref(&self) -> &Arc<GroupCommit> {
        &self.0
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.0.members.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Queue {
    /// The parts gathered for the next batch.
    waiting: Vec<Queued>,
    /// Whether a task is committing batches: it takes the waiting parts when its batch in
    /// flight ends.
    committing: bool,
    /// The runs the last batch wrote that have not come back since.
    away: Vec<RunId>,
}

struct Queued {
    part: Part,
    answer: oneshot::Sender<Result<Grouped>>,
}

/// What a part's batch came to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Grouped {
    /// The batch committed; whether it wrote this part (or its fence refused it).
    Written(bool),
    /// The batch committed and wrote this part, which completed its run: the run as recorded.
    Completed(Box<Run>),
    /// The batch committed and started this part's run: the run as recorded, and its lease
    /// token.
    Started(Box<Run>, uuid::Uuid),
    /// The batch failed for a reason that may be another part's: send this part alone.
    Alone,
}

impl Grouped {
    /// Whether the part's run writes again after this, so that the next batch waits for it:
    /// a run the batch wrote goes on, and one it started has its first node ahead; a run it
    /// completed, or refused, or whose batch failed (its part is sent alone) does not.
    fn comes_back(&self) -> bool {
        matches!(self, Grouped::Written(true) | Grouped::Started(..))
    }
}

impl GroupCommit {
    pub(crate) fn new(connections: RunConnections) -> Self {
        GroupCommit {
            connections,
            queue: Mutex::default(),
            came_back: Notify::new(),
            gather_bound: GATHER_BOUND,
            members: AtomicUsize::new(0),
        }
    }

    /// Counts a run's journal among those that commit through this group, until the member
    /// is dropped.
    pub(crate) fn join(self: &Arc<Self>) -> Member {
        self.members.fetch_add(1, Ordering::Relaxed);
        Member(Arc::clone(self))
    }

    /// Whether a member's commit goes into a batch: only while another run's journal is
    /// open (see the module). One that does not is told as [`GroupCommit::wrote_alone`].
    pub(crate) fn batches_for(&self, run_id: RunId) -> bool {
        let batches = self.members.load(Ordering::Relaxed) > 1;
        if !batches {
            self.wrote_alone(run_id);
        }
        batches
    }

    /// Whether a start goes into a batch: only while some run's journal is open.
    pub(crate) fn batches_starts(&self) -> bool {
        self.members.load(Ordering::Relaxed) > 0
    }

    /// Commits `part` in the next batch.
    pub(crate) async fn commit(self: &Arc<Self>, part: NodePart) -> Result<Grouped> {
        self.enqueue(Part::Node(part)).await
    }

    /// Starts a run in the next batch: the run as recorded and its lease once it is
    /// inserted, or `None` if its batch failed and it is to be inserted alone.
    pub(crate) async fn start(self: &Arc<Self>, part: StartPart) -> Result<Option<(Run, Lease)>> {
        let run_id = part.run_id;
        match self.enqueue(Part::Start(part)).await? {
            Grouped::Started(run, token) => Ok(Some((*run, Lease { run_id, token }))),
            Grouped::Alone => Ok(None),
            Grouped::Written(_) | Grouped::Completed(_) => Err(Error::unavailable(
                format!(
                    "a group commit did not return the run {run_id} it started; this is a bug \
                     in the workflows library"
                ),
                None,
            )),
        }
    }

    async fn enqueue(self: &Arc<Self>, part: Part) -> Result<Grouped> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.queue();
            let run_id = part.run_id();
            queue.waiting.push(Queued { part, answer });
            self.back(&mut queue, run_id);
            !std::mem::replace(&mut queue.committing, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).commit_batches());
        }
        answered
            .await
            .unwrap_or_else(|_| Err(batch_failed("its batch was dropped")))
    }

    /// Run `run_id` writes something that is not batched (it ends, fails or waits): the
    /// next batch does not wait for it.
    pub(crate) fn wrote_alone(&self, run_id: RunId) {
        let mut queue = self.queue();
        self.back(&mut queue, run_id);
    }

    fn back(&self, queue: &mut Queue, run_id: RunId) {
        if let Some(i) = queue.away.iter().position(|away| *away == run_id) {
            queue.away.swap_remove(i);
            if queue.away.is_empty() {
                self.came_back.notify_one();
            }
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Until the runs the last batch wrote have come back, or the bound has passed.
    async fn gather(&self) {
        let deadline = tokio::time::Instant::now() + self.gather_bound;
        loop {
            // Registered before the check, so that a run coming back in between is heard.
            let notified = self.came_back.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.queue().away.is_empty()
                || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                return;
            }
        }
    }

    /// Commits the waiting parts, a batch at a time, until none is waiting.
    async fn commit_batches(self: Arc<Self>) {
        loop {
            self.gather().await;
            let batch: Vec<Queued> = {
                let mut queue = self.queue();
                let batch: Vec<Queued> = std::mem::take(&mut queue.waiting)
                    .into_iter()
                    .filter(|queued| !queued.answer.is_closed())
                    .collect();
                if batch.is_empty() {
                    // Whoever of the last batch has not come back by now is slow: a run that
                    // commits later is not to wait for it.
                    queue.away.clear();
                    queue.committing = false;
                    return;
                }
                batch
            };
            let (answers, parts): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|queued| ((queued.part.run_id(), queued.answer), queued.part))
                .unzip();
            let outcomes: Vec<(RunId, oneshot::Sender<_>, Result<Grouped>)> =
                match self.send(parts).await {
                    Ok(mut written) => answers
                        .into_iter()
                        .map(|(run_id, answer)| {
                            let grouped = take_written(&mut written, run_id);
                            (run_id, answer, Ok(grouped))
                        })
                        .collect(),
                    Err(e) => answers
                        .into_iter()
                        .map(|(run_id, answer)| {
                            let failed = if e.is_connection_lost() {
                                Err(batch_failed(&e.to_string()))
                            } else {
                                Ok(Grouped::Alone)
                            };
                            (run_id, answer, failed)
                        })
                        .collect(),
                };
            // Told before their answers, so that none comes back unheard.
            self.queue().away = outcomes
                .iter()
                .filter(|(_, answer, outcome)| {
                    !answer.is_closed() && matches!(outcome, Ok(grouped) if grouped.comes_back())
                })
                .map(|(run_id, _, _)| *run_id)
                .collect();
            for (_, answer, outcome) in outcomes {
                // A part whose run stopped waiting meanwhile has nobody to tell.
                let _ = answer.send(outcome);
            }
        }
    }

    /// Sends one batch; the runs it wrote, with those it completed or started as recorded.
    async fn send(&self, parts: Vec<Part>) -> Result<Vec<WrittenRun>> {
        let mut conn = self.connections.get().await?;
        Ok(BatchedCommit::new(parts).load(&mut conn).await?)
    }
}

/// What a batch that wrote `written` came to for run `run_id`'s part; its row, if the
/// batch completed or started the run, is taken.
fn take_written(written: &mut Vec<WrittenRun>, run_id: RunId) -> Grouped {
    match written.iter().position(|(id, _, _)| *id == run_id) {
        Some(i) => match written.swap_remove(i) {
            (_, Some(row), Some(token)) => Grouped::Started(Box::new(Run::from(row)), token),
            (_, Some(row), None) => Grouped::Completed(Box::new(Run::from(row))),
            (_, None, _) => Grouped::Written(true),
        },
        None => Grouped::Written(false),
    }
}

fn batch_failed(message: &str) -> Error {
    Error::unavailable(format!("a group commit failed: {message}"), None)
}

#[cfg(test)]
#[cfg(feature = "testing")]
mod tests {
    use std::time::Duration;

    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
    use serde_json::json;

    use super::*;
    use crate::graph::State;
    use crate::model::{JsonText, RunStatus, StageStatus};
    use crate::store::batched_commit::Then;
    use crate::store::journal::{End, Journal, Next, NodeCommit, Transition};
    use crate::store::journal_pg::PgJournal;
    use crate::store::lease::{Lease, LeaseDeadline};
    use crate::store::runs::{self, NewRun};
    use crate::store::schema::stages;
    use crate::testing::IsolatedSchema;

    /// `n` runs executing under leases, each at the `started` stage of node `a`.
    async fn running(schema: &IsolatedSchema, n: usize) -> Vec<Lease> {
        let mut conn = schema.pool().get().await.unwrap();
        let (params, input) = (json!({}), json!({"start": true}));
        let mut leases = Vec::new();
        for _ in 0..n {
            let new = NewRun::random("w", &params);
            let owner = ("test", Duration::from_secs(60));
            let (_, lease) = runs::insert_running(&mut conn, &new, owner, Some(("a", &input)))
                .await
                .unwrap();
            leases.push(lease);
        }
        leases
    }

    /// The commit of node `a` under `lease`, going on to `b`, taking `duration_ms`.
    fn part(lease: Lease, duration_ms: i32) -> NodePart {
        NodePart {
            run_id: lease.run_id,
            lease_token: lease.token,
            node: "a".to_owned(),
            iteration: 1,
            attempt: 1,
            duration_ms,
            state_update: JsonText::of_value(&json!({"set": {"x": 1}})),
            output_snapshot: None,
            to_node: Some("b".to_owned()),
            predicate_name: None,
            predicate_result: None,
            reason: "edge".to_owned(),
            state: JsonText::of_value(&json!({"x": 1})),
            then: Then::Node {
                node: "b".to_owned(),
                iteration: 2,
                input: None,
            },
        }
    }

    /// Per run: its stages (node, status) and the transaction that wrote its stage `b`.
    async fn written(schema: &IsolatedSchema, leases: &[Lease]) -> Vec<(Vec<String>, String)> {
        // A connection of its own: the pool may hold one a test broke.
        let mut conn = AsyncPgConnection::establish(schema.database_url())
            .await
            .unwrap();
        let mut found = Vec::new();
        for lease in leases {
            let rows: Vec<(String, StageStatus, String)> = stages::table
                .filter(stages::run_id.eq(lease.run_id))
                .order_by(stages::iteration)
                .select((
                    stages::node_name,
                    stages::status,
                    diesel::dsl::sql::<diesel::sql_types::Text>("xmin::text"),
                ))
                .load(&mut conn)
                .await
                .unwrap();
            let xmin = rows.get(1).map(|r| r.2.clone()).unwrap_or_default();
            let stages = rows
                .into_iter()
                .map(|(node, status, _)| format!("{node} {}", status.as_str()))
                .collect();
            found.push((stages, xmin));
        }
        found
    }

    /// The transaction that wrote run `run_id`'s stage of `node`.
    async fn stage_xmin(schema: &IsolatedSchema, run_id: RunId, node: &str) -> String {
        let mut conn = AsyncPgConnection::establish(schema.database_url())
            .await
            .unwrap();
        stages::table
            .filter(stages::run_id.eq(run_id))
            .filter(stages::node_name.eq(node))
            .select(diesel::dsl::sql::<diesel::sql_types::Text>("xmin::text"))
            .get_result(&mut conn)
            .await
            .unwrap()
    }

    /// The transaction that last wrote run `run_id`'s row.
    async fn run_xmin(schema: &IsolatedSchema, run_id: RunId) -> String {
        let mut conn = AsyncPgConnection::establish(schema.database_url())
            .await
            .unwrap();
        crate::store::schema::runs::table
            .find(run_id)
            .select(diesel::dsl::sql::<diesel::sql_types::Text>("xmin::text"))
            .get_result(&mut conn)
            .await
            .unwrap()
    }

    fn group_of(schema: &IsolatedSchema) -> Arc<GroupCommit> {
        Arc::new(GroupCommit::new(RunConnections::new(schema.pool().clone())))
    }

    /// A group whose batches wait up to `bound` for the runs of the batch before.
    fn group_waiting(schema: &IsolatedSchema, bound: Duration) -> Arc<GroupCommit> {
        Arc::new(GroupCommit {
            gather_bound: bound,
            ..GroupCommit::new(RunConnections::new(schema.pool().clone()))
        })
    }

    /// A run executing beside the test's runs (as an open journal counts): without one, a
    /// journal alone in its group commits alone.
    fn another_run_executing(group: &Arc<GroupCommit>) -> Member {
        group.join()
    }

    /// The journal of the run `lease` holds, committing through `group`.
    fn journal_of(schema: &IsolatedSchema, group: &Arc<GroupCommit>, lease: Lease) -> PgJournal {
        PgJournal::new(
            RunConnections::new(schema.pool().clone()),
            Some(Arc::clone(group)),
            (true, 1 << 20),
            lease,
            LeaseDeadline::new(tokio::time::Instant::now(), Duration::from_secs(60)),
        )
    }

    /// Longer than any test may take: a batch that waited for it would fail the test.
    const FOREVER: Duration = Duration::from_secs(3600);

    /// `task`'s result, failing the test if it takes longer than 30 s (far less than
    /// [`FOREVER`]).
    async fn within_30s(task: tokio::task::JoinHandle<Result<Grouped>>) -> Grouped {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the commit waited for a run it should not have waited for")
            .unwrap()
            .unwrap()
    }

    /// The commit of node `b` under `lease` (after [`part`]'s `a`), going on to `c`.
    fn next_part(lease: Lease) -> NodePart {
        NodePart {
            node: "b".to_owned(),
            iteration: 2,
            to_node: Some("c".to_owned()),
            then: Then::Node {
                node: "c".to_owned(),
                iteration: 3,
                input: None,
            },
            ..part(lease, 5)
        }
    }

    /// The commit of node `a` (going on to `b`, taking `duration_ms`) by the journal of the run
    /// `lease` holds: whether it was written.
    fn spawn_journal_commit(
        schema: &IsolatedSchema,
        group: &Arc<GroupCommit>,
        lease: Lease,
        duration_ms: i32,
    ) -> tokio::task::JoinHandle<Result<bool>> {
        let journal = journal_of(schema, group, lease);
        tokio::spawn(async move {
            let update = JsonText::of_value(&json!({"set": {"x": 1}}));
            let state = State::new();
            let commit = NodeCommit {
                run_id: lease.run_id,
                node: "a",
                iteration: 1,
                attempt: 1,
                duration_ms,
                update: &update,
                output_snapshot: None,
                next_input: None,
                checkpoint: &state,
                received: None,
                transition: Transition {
                    to: Some("b"),
                    predicate: None,
                    result: None,
                    reason: "edge",
                },
                next: Next::Node {
                    node: "b",
                    iteration: 2,
                },
            };
            journal.node_completed(&commit).await
        })
    }

    /// The commit of node `b` under `lease` (after [`part`]'s `a`) by the run's journal, `b`
    /// being an exit point that ends the run with `end`: whether it was written, and the run
    /// as the journal kept it.
    fn spawn_end_of_run(
        schema: &IsolatedSchema,
        group: &Arc<GroupCommit>,
        lease: Lease,
        end: &'static str,
    ) -> tokio::task::JoinHandle<(bool, Option<Run>)> {
        let journal = journal_of(schema, group, lease);
        tokio::spawn(async move {
            let (update, state, result) = (
                JsonText::of_value(&json!({})),
                State::new(),
                json!({"done": true}),
            );
            let end = match end {
                "complete" => End::Complete { result: &result },
                message => End::Fail { message },
            };
            let commit = NodeCommit {
                run_id: lease.run_id,
                node: "b",
                iteration: 2,
                attempt: 1,
                duration_ms: 5,
                update: &update,
                output_snapshot: None,
                next_input: None,
                checkpoint: &state,
                received: None,
                transition: Transition {
                    to: None,
                    predicate: None,
                    result: None,
                    reason: "exit",
                },
                next: Next::End(end),
            };
            let written = journal.node_completed(&commit).await.unwrap();
            (written, journal.take_ended())
        })
    }

    /// Runs `l[1]` and `l[2]` committed by one batch, behind `l[0]`'s, whose run then wrote
    /// something that is not batched (so that nobody waits for it).
    async fn two_written_together(schema: &IsolatedSchema, group: &Arc<GroupCommit>, l: &[Lease]) {
        let (mut holder, first) = first_in_flight(schema, group, l[0]).await;
        let together = [
            spawn_commit(group, part(l[1], 5)),
            spawn_commit(group, part(l[2], 5)),
        ];
        until_queued(group, 2).await;
        holder.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(within_30s(first).await, Grouped::Written(true));
        group.wrote_alone(l[0].run_id);
        for task in together {
            assert_eq!(within_30s(task).await, Grouped::Written(true));
        }
        let found = written(schema, &l[1..]).await;
        assert_eq!(found[0].1, found[1].1, "one statement wrote both");
    }

    /// After [`two_written_together`], `l[1]`'s node b is an exit point and `l[2]`'s goes on
    /// to c; the batch after theirs waits for both, so one statement writes both. The run
    /// `l[1]`'s journal kept.
    async fn one_completes_one_goes_on(
        schema: &IsolatedSchema,
        group: &Arc<GroupCommit>,
        l: &[Lease],
    ) -> Option<Run> {
        two_written_together(schema, group, l).await;
        let completing = spawn_end_of_run(schema, group, l[1], "complete");
        let going_on = spawn_commit(group, next_part(l[2]));
        let (completed, returned) = tokio::time::timeout(Duration::from_secs(30), completing)
            .await
            .expect("the completion waited for a run it should not have waited for")
            .unwrap();
        assert!(completed, "completed");
        assert_eq!(within_30s(going_on).await, Grouped::Written(true));
        returned
    }

    fn spawn_commit(
        group: &Arc<GroupCommit>,
        part: NodePart,
    ) -> tokio::task::JoinHandle<Result<Grouped>> {
        let group = Arc::clone(group);
        tokio::spawn(async move { group.commit(part).await })
    }

    /// A connection holding run `lease`'s row locked: a batch with its part waits for it, in
    /// flight, while the next batch gathers.
    async fn hold(schema: &IsolatedSchema, lease: Lease) -> AsyncPgConnection {
        let mut conn = AsyncPgConnection::establish(schema.database_url())
            .await
            .unwrap();
        conn.batch_execute(&format!(
            "BEGIN; SELECT 1 FROM runs WHERE id = '{}' FOR UPDATE",
            lease.run_id
        ))
        .await
        .unwrap();
        conn
    }

    /// Waits until `n` parts wait for the next batch (the one before is in flight).
    async fn until_queued(group: &GroupCommit, n: usize) {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if group.queue().waiting.len() == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} parts never waited for the next batch"));
    }

    /// Waits until a statement of the schema's sessions waits for a lock; its process id.
    async fn until_blocked(schema: &IsolatedSchema) -> i32 {
        #[derive(QueryableByName)]
        struct Blocked {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        let mut conn = schema.pool().get().await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let blocked: Option<Blocked> = diesel::sql_query(
                    "SELECT pid FROM pg_stat_activity
                      WHERE application_name = $1 AND wait_event_type = 'Lock' LIMIT 1",
                )
                .bind::<diesel::sql_types::Text, _>(schema.name())
                .get_result(&mut conn)
                .await
                .optional()
                .unwrap();
                if let Some(blocked) = blocked {
                    return blocked.pid;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("no statement ever waited for the lock")
    }

    /// Run `held`'s commit in flight: its statement waits for the row the returned
    /// connection holds locked, so the next batch gathers behind it.
    async fn first_in_flight(
        schema: &IsolatedSchema,
        group: &Arc<GroupCommit>,
        held: Lease,
    ) -> (AsyncPgConnection, tokio::task::JoinHandle<Result<Grouped>>) {
        let holder = hold(schema, held).await;
        let first = spawn_commit(group, part(held, 5));
        until_blocked(schema).await;
        (holder, first)
    }

    /// The first run's commit in flight (its row locked by the test), then `rest` gathered
    /// behind it; the lock released; every part's result, the first's first.
    async fn behind_a_held_batch(
        schema: &IsolatedSchema,
        group: &Arc<GroupCommit>,
        held: Lease,
        rest: Vec<impl Into<Part>>,
    ) -> Vec<Result<Grouped>> {
        let (mut holder, first) = first_in_flight(schema, group, held).await;
        let mut tasks = vec![first];
        let count = rest.len();
        tasks.extend(rest.into_iter().map(|part| {
            let group = Arc::clone(group);
            let part = part.into();
            tokio::spawn(async move { group.enqueue(part).await })
        }));
        until_queued(group, count).await;
        holder.batch_execute("ROLLBACK").await.unwrap();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    fn committed(stages: &[&str]) -> Vec<String> {
        stages.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn commits_ready_together_are_written_by_one_statement() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 3).await;
        let rest = vec![part(l[1], 5), part(l[2], 5)];
        let results = behind_a_held_batch(&schema, &group, l[0], rest).await;
        assert_eq!(
            results.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [const { Grouped::Written(true) }; 3]
        );
        let found = written(&schema, &l).await;
        for (stages, _) in &found {
            assert_eq!(*stages, committed(&["a completed", "b started"]));
        }
        assert_eq!(found[1].1, found[2].1, "one statement wrote both");
        assert_ne!(found[0].1, found[1].1, "the first batch was another");
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn runs_count_as_executing_while_their_journals_are_open() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 2).await;
        assert!(
            !group.batches_starts(),
            "no run executing: a start goes alone"
        );
        let first = journal_of(&schema, &group, l[0]);
        assert!(
            group.batches_starts(),
            "a start joins the executing run's batch"
        );
        assert!(
            !group.batches_for(l[0].run_id),
            "the only run commits alone"
        );
        let second = journal_of(&schema, &group, l[1]);
        assert!(group.batches_for(l[0].run_id));
        drop(second);
        assert!(!group.batches_for(l[0].run_id), "alone again");
        drop(first);
        assert!(!group.batches_starts());
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_run_executing_alone_commits_without_the_committing_task() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 2).await;
        // A batch held in flight (a part sent to the group directly, by no journal).
        let (mut holder, first) = first_in_flight(&schema, &group, l[0]).await;
        // l[1]'s journal is the only one open: its commit does not queue behind that batch.
        let written = tokio::time::timeout(
            Duration::from_secs(30),
            spawn_journal_commit(&schema, &group, l[1], 5),
        )
        .await
        .expect("the lone run's commit waited for the batch in flight")
        .unwrap()
        .unwrap();
        assert!(written, "written while the batch is still in flight");
        assert!(group.queue().waiting.is_empty(), "nothing queued");
        holder.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(within_30s(first).await, Grouped::Written(true));
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_run_executing_beside_another_queues_behind_the_batch_in_flight() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 2).await;
        let _other = another_run_executing(&group);
        let (mut holder, first) = first_in_flight(&schema, &group, l[0]).await;
        let queued = spawn_journal_commit(&schema, &group, l[1], 5);
        until_queued(&group, 1).await;
        holder.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(within_30s(first).await, Grouped::Written(true));
        assert!(queued.await.unwrap().unwrap(), "written by the next batch");
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_lone_commit_goes_at_once_as_a_batch_of_its_own() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 1).await;
        // No other part, no timer: it commits as its own batch at once.
        assert_eq!(
            group.commit(part(l[0], 5)).await.unwrap(),
            Grouped::Written(true)
        );
        assert_eq!(
            written(&schema, &l).await[0].0,
            committed(&["a completed", "b started"])
        );
        assert!(!group.queue().committing, "nobody is left committing");
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_waits_for_the_runs_of_the_batch_before_so_that_they_commit_together_again() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_waiting(&schema, FOREVER);
        let l = running(&schema, 3).await;
        two_written_together(&schema, &group, &l).await;
        // The first to come back finds nothing in flight, yet waits for the other.
        let first_back = spawn_commit(&group, next_part(l[1]));
        until_queued(&group, 1).await;
        let second_back = spawn_commit(&group, next_part(l[2]));
        assert_eq!(within_30s(first_back).await, Grouped::Written(true));
        assert_eq!(within_30s(second_back).await, Grouped::Written(true));
        let found = written(&schema, &l[1..]).await;
        for (stages, _) in &found {
            assert_eq!(
                *stages,
                committed(&["a completed", "b completed", "c started"])
            );
        }
        assert_eq!(found[0].1, found[1].1, "one statement wrote both again");
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_run_whose_next_write_is_not_batched_is_not_waited_for() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_waiting(&schema, FOREVER);
        let l = running(&schema, 3).await;
        two_written_together(&schema, &group, &l).await;
        group.wrote_alone(l[2].run_id);
        assert_eq!(
            within_30s(spawn_commit(&group, next_part(l[1]))).await,
            Grouped::Written(true)
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_run_whose_journal_fails_it_is_not_waited_for() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_waiting(&schema, FOREVER);
        let _other = another_run_executing(&group);
        let l = running(&schema, 3).await;
        two_written_together(&schema, &group, &l).await;
        // l[1]'s node b fails the run, in a statement of its own.
        let (failed, _) = spawn_end_of_run(&schema, &group, l[1], "no way on")
            .await
            .unwrap();
        assert!(failed, "failed");
        assert_eq!(
            within_30s(spawn_commit(&group, next_part(l[2]))).await,
            Grouped::Written(true)
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_completes_a_run_with_another_s_commit_and_returns_it_as_recorded() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_waiting(&schema, FOREVER);
        let _other = another_run_executing(&group);
        let l = running(&schema, 3).await;
        let returned = one_completes_one_goes_on(&schema, &group, &l).await;
        let mut conn = schema.pool().get().await.unwrap();
        let recorded = crate::repository::find_run(&mut conn, l[1].run_id)
            .await
            .unwrap();
        assert_eq!(recorded.status, RunStatus::Completed);
        assert_eq!(
            recorded.result.as_ref().map(|r| r.to_value().unwrap()),
            Some(json!({"done": true}))
        );
        assert!(recorded.completed_at.is_some(), "{recorded:?}");
        assert_eq!(returned, Some(recorded), "the run as the batch returned it");
        drop(conn);
        let stage_c_xmin = stage_xmin(&schema, l[2].run_id, "c").await;
        assert_eq!(
            run_xmin(&schema, l[1].run_id).await,
            stage_c_xmin,
            "one statement wrote both"
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_run_that_a_batch_completed_is_not_waited_for() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_waiting(&schema, FOREVER);
        let _other = another_run_executing(&group);
        let l = running(&schema, 3).await;
        one_completes_one_goes_on(&schema, &group, &l).await;
        // l[1] never comes back: l[2]'s next commit goes without waiting for it.
        let after = NodePart {
            node: "c".to_owned(),
            iteration: 3,
            to_node: Some("d".to_owned()),
            then: Then::Node {
                node: "d".to_owned(),
                iteration: 4,
                input: None,
            },
            ..part(l[2], 5)
        };
        assert_eq!(
            within_30s(spawn_commit(&group, after)).await,
            Grouped::Written(true)
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_completion_whose_lease_is_gone_is_refused_and_the_run_not_completed() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let _other = another_run_executing(&group);
        let l = running(&schema, 1).await;
        assert_eq!(
            within_30s(spawn_commit(&group, part(l[0], 5))).await,
            Grouped::Written(true)
        );
        let taken_over = Lease {
            token: uuid::Uuid::new_v4(),
            ..l[0]
        };
        let (completed, returned) = spawn_end_of_run(&schema, &group, taken_over, "complete")
            .await
            .unwrap();
        assert!(!completed, "refused");
        assert_eq!(returned, None);
        let mut conn = schema.pool().get().await.unwrap();
        let run = crate::repository::find_run(&mut conn, l[0].run_id)
            .await
            .unwrap();
        assert_eq!((run.status, run.result), (RunStatus::Running, None));
        drop(conn);
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_lone_run_that_comes_back_is_not_waited_for() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_waiting(&schema, FOREVER);
        let l = running(&schema, 1).await;
        assert_eq!(
            within_30s(spawn_commit(&group, part(l[0], 5))).await,
            Grouped::Written(true)
        );
        assert_eq!(
            within_30s(spawn_commit(&group, next_part(l[0]))).await,
            Grouped::Written(true)
        );
        assert_eq!(
            written(&schema, &l).await[0].0,
            committed(&["a completed", "b completed", "c started"])
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_run_that_does_not_come_back_holds_the_next_batch_no_longer_than_the_bound() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_waiting(&schema, Duration::from_millis(50));
        let l = running(&schema, 3).await;
        two_written_together(&schema, &group, &l).await;
        // l[2] never comes back: l[1]'s next commit goes once the bound has passed.
        assert_eq!(
            within_30s(spawn_commit(&group, next_part(l[1]))).await,
            Grouped::Written(true)
        );
        let found = written(&schema, &l[1..]).await;
        assert_eq!(
            found[0].0,
            committed(&["a completed", "b completed", "c started"])
        );
        assert_eq!(found[1].0, committed(&["a completed", "b started"]));
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn runs_that_did_not_come_back_within_the_bound_are_not_waited_for_again() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_waiting(&schema, Duration::from_millis(50));
        let l = running(&schema, 3).await;
        two_written_together(&schema, &group, &l).await;
        // Neither comes back: once the bound has passed, nobody is left committing...
        tokio::time::timeout(Duration::from_secs(30), async {
            while group.queue().committing {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the committer stopped");
        // ...and nobody is waited for: a run that commits later goes at once.
        assert!(
            group.queue().away.is_empty(),
            "still waited for: {:?}",
            group.queue().away
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_part_whose_lease_is_gone_is_refused_and_only_its_run() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 3).await;
        let taken_over = Lease {
            token: uuid::Uuid::new_v4(),
            ..l[1]
        };
        let rest = vec![part(taken_over, 5), part(l[2], 5)];
        let results = behind_a_held_batch(&schema, &group, l[0], rest).await;
        assert_eq!(
            results.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [
                Grouped::Written(true),
                Grouped::Written(false),
                Grouped::Written(true)
            ]
        );
        let found = written(&schema, &l).await;
        assert_eq!(found[1].0, committed(&["a started"]), "nothing written");
        assert_eq!(found[2].0, committed(&["a completed", "b started"]));
        schema.drop_schema().await.unwrap();
    }

    /// A run to start, its first node `a`.
    fn start_part(workflow: &str) -> StartPart {
        let (params, input) = (json!({"topic": "x"}), json!({"start": true}));
        let new = NewRun::random(workflow, &params);
        runs::start_part(&new, ("test", Duration::from_secs(60)), ("a", &input))
    }

    #[tokio::test]
    async fn a_start_is_written_with_another_run_s_commit_and_returned_with_its_lease() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 2).await;
        let start = start_part("w");
        let new_id = start.run_id;
        let rest: Vec<Part> = vec![start.into(), part(l[1], 5).into()];
        let results = behind_a_held_batch(&schema, &group, l[0], rest).await;
        let mut results = results.into_iter().map(Result::unwrap);
        assert_eq!(results.next(), Some(Grouped::Written(true)));
        let Some(Grouped::Started(run, token)) = results.next() else {
            panic!("the start was not answered with its run");
        };
        assert_eq!(results.next(), Some(Grouped::Written(true)));
        let mut conn = schema.pool().get().await.unwrap();
        let recorded = crate::repository::find_run(&mut conn, new_id)
            .await
            .unwrap();
        assert_eq!(*run, recorded, "the run as the batch returned it");
        assert_eq!(recorded.status, RunStatus::Running);
        let (stored_token, run_xmin): (Option<uuid::Uuid>, String) =
            crate::store::schema::runs::table
                .find(new_id)
                .select((
                    crate::store::schema::runs::lease_token,
                    diesel::dsl::sql::<diesel::sql_types::Text>("xmin::text"),
                ))
                .get_result(&mut conn)
                .await
                .unwrap();
        assert_eq!(stored_token, Some(token));
        drop(conn);
        let lease = Lease {
            run_id: new_id,
            token,
        };
        let found = written(&schema, &[lease, l[1]]).await;
        assert_eq!(found[0].0, committed(&["a started"]), "its first stage");
        assert_eq!(run_xmin, found[1].1, "one statement wrote both");
        // The lease it returned is the run's: the run's first commit passes the fence.
        assert_eq!(
            within_30s(spawn_commit(&group, part(lease, 5))).await,
            Grouped::Written(true)
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_that_starts_a_run_completes_another_and_moves_a_third_on_writes_all_three() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 3).await;
        let start = start_part("w");
        let new_id = start.run_id;
        let completion = NodePart {
            to_node: None,
            then: Then::Complete {
                result: JsonText::of_value(&json!({"done": true})),
            },
            ..part(l[1], 5)
        };
        let rest: Vec<Part> = vec![start.into(), completion.into(), part(l[2], 5).into()];
        let results: Vec<Grouped> = behind_a_held_batch(&schema, &group, l[0], rest)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(results[0], Grouped::Written(true));
        let Grouped::Started(started, _) = &results[1] else {
            panic!("the start was not answered with its run: {:?}", results[1]);
        };
        assert_eq!((started.id, started.status), (new_id, RunStatus::Running));
        let Grouped::Completed(completed) = &results[2] else {
            panic!(
                "the completion was not answered with its run: {:?}",
                results[2]
            );
        };
        assert_eq!(
            (completed.id, completed.status),
            (l[1].run_id, RunStatus::Completed)
        );
        assert_eq!(results[3], Grouped::Written(true));
        let stage_b = stage_xmin(&schema, l[2].run_id, "b").await;
        assert_eq!(run_xmin(&schema, new_id).await, stage_b, "one statement");
        assert_eq!(
            run_xmin(&schema, l[1].run_id).await,
            stage_b,
            "one statement"
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_run_a_batch_started_is_waited_for_until_its_first_commit() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_waiting(&schema, FOREVER);
        let l = running(&schema, 2).await;
        let (mut holder, first) = first_in_flight(&schema, &group, l[0]).await;
        let start = start_part("w");
        let new_id = start.run_id;
        let started = {
            let group = Arc::clone(&group);
            tokio::spawn(async move { group.start(start).await })
        };
        let other = spawn_commit(&group, part(l[1], 5));
        until_queued(&group, 2).await;
        holder.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(within_30s(first).await, Grouped::Written(true));
        group.wrote_alone(l[0].run_id);
        let Some((_, lease)) = tokio::time::timeout(Duration::from_secs(30), started)
            .await
            .expect("answered within 30 s")
            .unwrap()
            .unwrap()
        else {
            panic!("the start was not answered with its run");
        };
        assert_eq!(within_30s(other).await, Grouped::Written(true));
        // l[1]'s next commit is held for the run the batch started, until its first commit.
        let next = spawn_commit(&group, next_part(l[1]));
        until_queued(&group, 1).await;
        assert_eq!(lease.run_id, new_id);
        let its_first = spawn_commit(&group, part(lease, 5));
        assert_eq!(within_30s(next).await, Grouped::Written(true));
        assert_eq!(within_30s(its_first).await, Grouped::Written(true));
        let found = written(&schema, &[lease, l[1]]).await;
        let stage_c_xmin = stage_xmin(&schema, l[1].run_id, "c").await;
        assert_eq!(found[0].1, stage_c_xmin, "one statement wrote both");
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_start_that_fails_its_batch_is_sent_alone_like_every_other_part() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 2).await;
        // The id of a run that exists: the insert breaks the primary key.
        let start = StartPart {
            run_id: l[1].run_id,
            ..start_part("w")
        };
        let rest: Vec<Part> = vec![start.into(), part(l[1], 5).into()];
        let results = behind_a_held_batch(&schema, &group, l[0], rest).await;
        assert_eq!(
            results.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [Grouped::Written(true), Grouped::Alone, Grouped::Alone]
        );
        let found = written(&schema, &l[1..]).await;
        assert_eq!(
            found[0].0,
            committed(&["a started"]),
            "nothing of the batch"
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_batch_writes_nothing_and_sends_every_part_alone() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 3).await;
        // A negative duration breaks a check constraint: the whole statement fails.
        let rest = vec![part(l[1], -1), part(l[2], 5)];
        let results = behind_a_held_batch(&schema, &group, l[0], rest).await;
        assert_eq!(
            results.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [Grouped::Written(true), Grouped::Alone, Grouped::Alone]
        );
        let found = written(&schema, &l).await;
        assert_eq!(found[1].0, committed(&["a started"]));
        assert_eq!(found[2].0, committed(&["a started"]));
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn in_a_failing_batch_only_the_faulty_run_s_commit_fails_and_the_other_is_written() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 3).await;
        let (mut holder, first) = first_in_flight(&schema, &group, l[0]).await;
        // Two journals' commits gather behind it; one breaks a check constraint, which fails
        // the batch's statement.
        let faulty = spawn_journal_commit(&schema, &group, l[1], -1);
        let innocent = spawn_journal_commit(&schema, &group, l[2], 5);
        until_queued(&group, 2).await;
        holder.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(first.await.unwrap().unwrap(), Grouped::Written(true));
        let failed = faulty.await.unwrap().unwrap_err();
        assert!(
            !failed.is_connection_lost() && failed.to_string().contains("duration_ms"),
            "its own error, from its statement sent alone: {failed}"
        );
        assert!(innocent.await.unwrap().unwrap(), "written alone");
        let found = written(&schema, &l).await;
        assert_eq!(found[1].0, committed(&["a started"]));
        assert_eq!(found[2].0, committed(&["a completed", "b started"]));
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_part_cancelled_while_queued_is_left_out_of_its_batch() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 3).await;
        let (mut holder, first) = first_in_flight(&schema, &group, l[0]).await;
        let cancelled = spawn_commit(&group, part(l[1], 5));
        let kept = spawn_commit(&group, part(l[2], 5));
        until_queued(&group, 2).await;
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());
        holder.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(first.await.unwrap().unwrap(), Grouped::Written(true));
        assert_eq!(kept.await.unwrap().unwrap(), Grouped::Written(true));
        let found = written(&schema, &l).await;
        assert_eq!(found[1].0, committed(&["a started"]), "left out");
        assert_eq!(found[2].0, committed(&["a completed", "b started"]));
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_whose_connection_breaks_fails_every_part_as_a_broken_write() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let l = running(&schema, 3).await;
        let (mut first_holder, first) = first_in_flight(&schema, &group, l[0]).await;
        // The next batch, of two parts, waits for a lock too; then its connection breaks.
        let mut second_holder = hold(&schema, l[1]).await;
        let rest = [
            spawn_commit(&group, part(l[1], 5)),
            spawn_commit(&group, part(l[2], 5)),
        ];
        until_queued(&group, 2).await;
        first_holder.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(first.await.unwrap().unwrap(), Grouped::Written(true));
        let pid = until_blocked(&schema).await;
        let mut admin = schema.pool().get().await.unwrap();
        diesel::sql_query("SELECT pg_terminate_backend($1)")
            .bind::<diesel::sql_types::Integer, _>(pid)
            .execute(&mut admin)
            .await
            .unwrap();
        drop(admin);
        for task in rest {
            let e = task.await.unwrap().unwrap_err();
            assert!(
                e.is_connection_lost(),
                "a broken write, for its journal to check and retry: {e}"
            );
        }
        second_holder.batch_execute("ROLLBACK").await.unwrap();
        let found = written(&schema, &l).await;
        assert_eq!(found[1].0, committed(&["a started"]));
        assert_eq!(found[2].0, committed(&["a started"]));
        schema.drop_schema().await.unwrap();
    }
}
