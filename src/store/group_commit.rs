//! Group commit: node commits of different runs that are ready at the same time are
//! committed in one transaction, their statements pipelined on one connection, so that they
//! share one WAL flush and one `COMMIT`.
//!
//! A batch gathers while the batch before it is in flight, and starts as soon as that one
//! ends: at low load a commit joins an empty queue and goes at once, waiting for nobody (no
//! timer gathers a batch). Each run's statement is its own fenced statement, so a part its
//! fence refuses (it writes nothing) refuses only its run. A part that fails aborts the
//! transaction: the batch is rolled back and every other part is executed again on its own,
//! so one failing commit fails only its run. When the batch as a whole fails (its
//! connection broke, `COMMIT` failed), every part sees the error, as its own statement would
//! have, and nothing of the batch is written.
//!
//! A part's run is durable when its `execute` returns: the batch's `COMMIT` has succeeded.

use std::sync::{Arc, Mutex};

use diesel::pg::Pg;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
    TransactionManager,
};
use tokio::sync::{Notify, Semaphore, watch};

use crate::error::{Error, Result};
use crate::store::run_connections::{RunConnection, RunConnections};

/// The node commits of an executor's runs, batched.
pub(crate) struct GroupCommit {
    connections: RunConnections,
    /// The batch open for joining, if any: it starts when the one in flight ends.
    open: Mutex<Option<Arc<Batch>>>,
    /// One batch in flight at a time: the next one gathers meanwhile.
    flight: Arc<Semaphore>,
}

/// How a batch went, told to every part.
#[derive(Clone)]
enum Phase {
    /// Gathering, or waiting for the batch before it.
    Open,
    /// Started on this connection, in a transaction: execute the part on it.
    Started(Arc<RunConnection>),
    /// Every part has reported: the transaction is being ended.
    Ending,
    /// Committed: every part that succeeded is durable.
    Committed,
    /// A part failed, and the batch was rolled back: execute the others again alone.
    RolledBack,
    /// The batch failed as a whole (this message): nothing of it was written.
    Failed(String),
}

struct Batch {
    phase: watch::Sender<Phase>,
    /// Parts that joined, and how many of them have reported.
    parts: Mutex<Parts>,
    reported: Notify,
}

#[derive(Default)]
struct Parts {
    /// Whether new parts may still join.
    closed: bool,
    joined: usize,
    reported: usize,
    failed: bool,
}

impl GroupCommit {
    pub(crate) fn new(connections: RunConnections) -> Self {
        GroupCommit {
            connections,
            open: Mutex::new(None),
            flight: Arc::new(Semaphore::new(1)),
        }
    }

    /// Executes the statement `build` makes in the next batch; its affected-row count once
    /// the batch has committed.
    pub(crate) async fn commit<S>(&self, build: impl Fn() -> S) -> Result<usize>
    where
        S: QueryFragment<Pg> + QueryId + Send,
    {
        let batch = self.join();
        let mut part = Part {
            batch: &batch,
            executing: false,
            reported: false,
        };
        let mut phase = batch.phase.subscribe();
        let conn = match phase.wait_for(|p| !matches!(p, Phase::Open)).await {
            Ok(started) => match &*started {
                Phase::Started(conn) => Arc::clone(conn),
                Phase::Failed(message) => return Err(batch_failed(message)),
                _ => return Err(batch_failed("it ended before it started")),
            },
            Err(_) => return Err(batch_failed("it was dropped")),
        };
        let shared: &AsyncPgConnection = &conn;
        part.executing = true;
        let executed = build().execute(&mut &*shared).await;
        part.executing = false;
        drop(conn);
        part.report(executed.is_err());
        let outcome = phase
            .wait_for(|p| matches!(p, Phase::Committed | Phase::RolledBack | Phase::Failed(_)))
            .await
            .map(|p| p.clone())
            .unwrap_or_else(|_| Phase::Failed("it was dropped".to_owned()));
        match (outcome, executed) {
            (Phase::Committed, Ok(rows)) => Ok(rows),
            (Phase::Failed(message), _) => Err(batch_failed(&message)),
            // Rolled back (one part failed, maybe this one, maybe another, whose failure
            // aborted the transaction under this one): each part again, alone, as it would
            // have been without a batch.
            _ => {
                let mut conn = self.connections.get().await?;
                Ok(build().execute(&mut *conn).await?)
            }
        }
    }

    /// The open batch, joined; a new one (and the task that runs it) if none is open.
    fn join(&self) -> Arc<Batch> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(batch) = &*open {
            let mut parts = batch.parts.lock().unwrap_or_else(|p| p.into_inner());
            if !parts.closed {
                parts.joined += 1;
                return Arc::clone(batch);
            }
        }
        let batch = Arc::new(Batch {
            phase: watch::Sender::new(Phase::Open),
            parts: Mutex::new(Parts {
                joined: 1,
                ..Parts::default()
            }),
            reported: Notify::new(),
        });
        *open = Some(Arc::clone(&batch));
        tokio::spawn(run_batch(
            Arc::clone(&batch),
            self.connections.clone(),
            Arc::clone(&self.flight),
        ));
        batch
    }
}

/// Runs one batch: waits for its turn, closes it, begins, lets every part execute, commits.
async fn run_batch(batch: Arc<Batch>, connections: RunConnections, flight: Arc<Semaphore>) {
    let Ok(_turn) = flight.acquire_owned().await else {
        batch
            .phase
            .send_replace(Phase::Failed("the executor closed".to_owned()));
        return;
    };
    batch.parts.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
    let (conn, ending) = match begin(&connections).await {
        Ok((conn, ending)) => (Arc::new(conn), ending),
        Err(e) => {
            batch.phase.send_replace(Phase::Failed(e.to_string()));
            return;
        }
    };
    batch.phase.send_replace(Phase::Started(Arc::clone(&conn)));
    let failed = loop {
        let notified = batch.reported.notified();
        {
            let parts = batch.parts.lock().unwrap_or_else(|p| p.into_inner());
            if parts.reported == parts.joined {
                break parts.failed;
            }
        }
        notified.await;
    };
    // Every part has reported, so none holds the connection any more (this drops the
    // phase's handle on it).
    batch.phase.send_replace(Phase::Ending);
    let end = if failed {
        ending.rollback
    } else {
        ending.commit
    };
    let ended = match Arc::try_unwrap(conn) {
        Ok(mut conn) => conn.batch_execute(end).await,
        // Not expected (a part lets go of it before it reports), but a connection must
        // never go back to the pool inside the batch's transaction.
        Err(shared) => diesel::sql_query(end)
            .execute(&mut &**shared)
            .await
            .map(drop),
    };
    let outcome = match ended {
        Ok(()) if failed => Phase::RolledBack,
        Ok(()) => Phase::Committed,
        Err(e) => Phase::Failed(Error::from(e).to_string()),
    };
    batch.phase.send_replace(outcome);
}

/// A connection in a new transaction for a batch, and the statements that end it: a
/// savepoint's when the connection is in a transaction already (a test's: committing that
/// would write the test's rows for good).
async fn begin(connections: &RunConnections) -> Result<(RunConnection, Ending)> {
    let mut conn = connections.get().await?;
    let nested = AnsiTransactionManager::transaction_manager_status_mut(&mut *conn)
        .transaction_depth()?
        .is_some();
    let (begin, ending) = if nested {
        (
            "SAVEPOINT group_commit",
            Ending {
                commit: "RELEASE SAVEPOINT group_commit",
                rollback: "ROLLBACK TO SAVEPOINT group_commit",
            },
        )
    } else {
        (
            "BEGIN",
            Ending {
                commit: "COMMIT",
                rollback: "ROLLBACK",
            },
        )
    };
    conn.batch_execute(begin).await?;
    Ok((conn, ending))
}

/// How a batch's transaction ends.
struct Ending {
    commit: &'static str,
    rollback: &'static str,
}

fn batch_failed(message: &str) -> Error {
    Error::unavailable(format!("a group commit failed: {message}"), None)
}

/// A part of a batch, which reports to it once, even when its run's task is dropped.
struct Part<'b> {
    batch: &'b Batch,
    /// Its statement was sent and has not answered: dropped now, nobody would see it fail,
    /// and a `COMMIT` after a failed statement rolls back without an error.
    executing: bool,
    reported: bool,
}

impl Part<'_> {
    fn report(&mut self, failed: bool) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        let mut parts = self.batch.parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.reported += 1;
        parts.failed |= failed;
        drop(parts);
        self.batch.reported.notify_one();
    }
}

impl Drop for Part<'_> {
    fn drop(&mut self) {
        // Dropped with its statement under way: whether it failed is unknown, so the batch
        // is rolled back and its other parts executed alone.
        self.report(self.executing);
    }
}

#[cfg(test)]
#[cfg(feature = "testing")]
mod tests {
    use std::time::Duration;

    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

    use super::*;
    use crate::model::{RunId, RunStatus};
    use crate::store::schema::runs;
    use crate::testing::IsolatedSchema;

    fn s(text: &str) -> String {
        text.to_owned()
    }

    async fn runs_of(schema: &IsolatedSchema, n: usize) -> Vec<RunId> {
        let mut conn = schema.pool().get().await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(
                diesel::insert_into(runs::table)
                    .values((
                        runs::workflow_name.eq("w"),
                        runs::status.eq(RunStatus::Pending),
                    ))
                    .returning(runs::id)
                    .get_result(&mut conn)
                    .await
                    .unwrap(),
            );
        }
        ids
    }

    /// A statement that sets run `id`'s error message to `note`.
    fn note(id: RunId, note: &str) -> impl QueryFragment<Pg> + QueryId + Send + '_ {
        diesel::update(runs::table.find(id)).set(runs::error_message.eq(note))
    }

    async fn notes(schema: &IsolatedSchema, ids: &[RunId]) -> Vec<(Option<String>, String)> {
        let mut conn = schema.pool().get().await.unwrap();
        let mut found = Vec::new();
        for id in ids {
            found.push(
                runs::table
                    .find(*id)
                    .select((
                        runs::error_message,
                        diesel::dsl::sql::<diesel::sql_types::Text>("xmin::text"),
                    ))
                    .first(&mut conn)
                    .await
                    .unwrap(),
            );
        }
        found
    }

    /// The notes of `ids`, alone.
    async fn notes_only(schema: &IsolatedSchema, ids: &[RunId]) -> Vec<Option<String>> {
        notes(schema, ids)
            .await
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// A task committing `text` as run `id`'s note in `group`'s next batch.
    fn spawn_note(
        group: &Arc<GroupCommit>,
        id: RunId,
        text: &str,
    ) -> tokio::task::JoinHandle<Result<usize>> {
        let (group, text) = (Arc::clone(group), text.to_owned());
        tokio::spawn(async move { group.commit(|| note(id, &text)).await })
    }

    /// A connection holding run `id`'s row locked: a batch whose part writes it waits, in
    /// flight, while the next batch gathers.
    async fn hold(schema: &IsolatedSchema, id: RunId) -> AsyncPgConnection {
        let mut conn = AsyncPgConnection::establish(schema.database_url())
            .await
            .unwrap();
        conn.batch_execute(&format!(
            "BEGIN; SELECT 1 FROM runs WHERE id = '{id}' FOR UPDATE"
        ))
        .await
        .unwrap();
        conn
    }

    /// Waits until the open batch is as `wanted` says.
    async fn until_open_batch(group: &GroupCommit, what: &str, wanted: impl Fn(&Parts) -> bool) {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let open = group.open.lock().unwrap().clone();
                if open.is_some_and(|b| wanted(&b.parts.lock().unwrap())) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what} never happened"));
    }

    fn group_of(schema: &IsolatedSchema) -> Arc<GroupCommit> {
        Arc::new(GroupCommit::new(RunConnections::new(schema.pool().clone())))
    }

    /// A part noting "first" on run `held`, in flight: its statement waits for the row the
    /// returned connection holds locked, so the next batch gathers behind it.
    async fn first_batch_held(
        schema: &IsolatedSchema,
        group: &Arc<GroupCommit>,
        held: RunId,
    ) -> (AsyncPgConnection, tokio::task::JoinHandle<Result<usize>>) {
        let holder = hold(schema, held).await;
        let first = spawn_note(group, held, "first");
        until_open_batch(group, "the first batch in flight", |p| p.closed).await;
        (holder, first)
    }

    /// A part noting `first` on `held` in flight (its row locked by the test), then `rest`
    /// gathered behind it in one batch; the lock released; every part's result, `held`'s
    /// first.
    async fn behind_a_held_batch(
        schema: &IsolatedSchema,
        group: &Arc<GroupCommit>,
        held: RunId,
        rest: Vec<(RunId, String)>,
    ) -> Vec<Result<usize>> {
        let (mut holder, first) = first_batch_held(schema, group, held).await;
        let mut tasks = vec![first];
        let count = rest.len();
        for (id, text) in rest {
            tasks.push(spawn_note(group, id, &text));
        }
        until_open_batch(group, "the next batch gathered", |p| {
            !p.closed && p.joined == count
        })
        .await;
        holder.batch_execute("ROLLBACK").await.unwrap();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    #[tokio::test]
    async fn commits_ready_together_are_committed_in_one_transaction() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let ids = runs_of(&schema, 3).await;
        let results = behind_a_held_batch(
            &schema,
            &group,
            ids[0],
            vec![(ids[1], "a".to_owned()), (ids[2], "b".to_owned())],
        )
        .await;
        assert_eq!(
            results.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [1, 1, 1]
        );
        assert_eq!(
            notes_only(&schema, &ids).await,
            [Some(s("first")), Some(s("a")), Some(s("b"))]
        );
        let written = notes(&schema, &ids).await;
        assert_eq!(written[1].1, written[2].1, "one transaction wrote both");
        assert_ne!(written[0].1, written[1].1, "the first batch was another");
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_lone_commit_is_committed_as_a_batch_of_its_own() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let ids = runs_of(&schema, 1).await;
        // No other part, no timer: it commits as its own batch at once.
        assert_eq!(group.commit(|| note(ids[0], "alone")).await.unwrap(), 1);
        assert_eq!(notes(&schema, &ids).await[0].0.as_deref(), Some("alone"));
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_part_that_writes_nothing_refuses_only_its_own_run() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let ids = runs_of(&schema, 2).await;
        let nobody = RunId::from_uuid(uuid::Uuid::new_v4());
        let results = behind_a_held_batch(
            &schema,
            &group,
            ids[0],
            vec![(nobody, "refused".to_owned()), (ids[1], "kept".to_owned())],
        )
        .await;
        assert_eq!(
            results.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            [1, 0, 1]
        );
        assert_eq!(
            notes(&schema, &ids[1..]).await[0].0.as_deref(),
            Some("kept")
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_part_that_fails_fails_only_its_own_run() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let ids = runs_of(&schema, 3).await;
        // PostgreSQL refuses a NUL character in text: that part's statement fails, and the
        // transaction under the others with it.
        let results = behind_a_held_batch(
            &schema,
            &group,
            ids[0],
            vec![
                (ids[1], "bad\u{0}".to_owned()),
                (ids[2], "innocent".to_owned()),
            ],
        )
        .await;
        let mut results = results.into_iter();
        assert_eq!(results.next().unwrap().unwrap(), 1);
        let failed = results.next().unwrap().unwrap_err();
        assert!(
            !failed.is_connection_lost(),
            "its own error, not the batch's: {failed}"
        );
        assert_eq!(results.next().unwrap().unwrap(), 1);
        assert_eq!(
            notes_only(&schema, &ids).await,
            [Some(s("first")), None, Some(s("innocent"))]
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_part_dropped_while_queued_leaves_the_batch_to_commit_the_rest() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let ids = runs_of(&schema, 3).await;
        let (mut holder, first) = first_batch_held(&schema, &group, ids[0]).await;
        let dropped = spawn_note(&group, ids[1], "dropped");
        let kept = spawn_note(&group, ids[2], "kept");
        until_open_batch(&group, "the next batch gathered", |p| p.joined == 2).await;
        dropped.abort();
        assert!(dropped.await.unwrap_err().is_cancelled());
        holder.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(kept.await.unwrap().unwrap(), 1);
        assert_eq!(
            notes_only(&schema, &ids).await,
            [Some(s("first")), None, Some(s("kept"))]
        );
        schema.drop_schema().await.unwrap();
    }

    /// Waits until a statement of the schema's sessions waits for a lock.
    async fn until_blocked(schema: &IsolatedSchema) {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = schema.pool().get().await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let waiting: Count = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_stat_activity
                      WHERE application_name = $1 AND wait_event_type = 'Lock'",
                )
                .bind::<diesel::sql_types::Text, _>(schema.name())
                .get_result(&mut conn)
                .await
                .unwrap();
                if waiting.n > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("no statement ever waited for the lock");
    }

    #[tokio::test]
    async fn a_part_dropped_with_its_statement_under_way_rolls_the_batch_back_and_the_rest_go_alone()
     {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let ids = runs_of(&schema, 3).await;
        let (mut first_holder, first) = first_batch_held(&schema, &group, ids[0]).await;
        // In the next batch: one part whose statement will wait for a lock, one that will not.
        let mut second_holder = hold(&schema, ids[1]).await;
        let dropped = spawn_note(&group, ids[1], "dropped");
        let kept = spawn_note(&group, ids[2], "kept");
        until_open_batch(&group, "the next batch gathered", |p| p.joined == 2).await;
        first_holder.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        until_blocked(&schema).await;
        dropped.abort();
        assert!(dropped.await.unwrap_err().is_cancelled());
        second_holder.batch_execute("ROLLBACK").await.unwrap();
        // Whether the dropped part's statement failed is unknown: the batch was rolled
        // back, and the other part executed alone.
        assert_eq!(kept.await.unwrap().unwrap(), 1);
        assert_eq!(
            notes_only(&schema, &ids).await,
            [Some(s("first")), None, Some(s("kept"))]
        );
        schema.drop_schema().await.unwrap();
    }

    #[tokio::test]
    async fn a_batch_whose_commit_fails_fails_every_part_and_writes_nothing() {
        let schema = IsolatedSchema::create().await.unwrap();
        let group = group_of(&schema);
        let ids = runs_of(&schema, 3).await;
        // Checked at COMMIT only: a note "deferred" fails the transaction as it commits.
        let mut conn = schema.pool().get().await.unwrap();
        conn.batch_execute(
            "CREATE FUNCTION refuse_deferred() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.error_message = 'deferred' THEN RAISE EXCEPTION 'refused at commit'; END IF;
                 RETURN NULL;
             END $$;
             CREATE CONSTRAINT TRIGGER refuse_deferred AFTER UPDATE ON runs
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_deferred();",
        )
        .await
        .unwrap();
        drop(conn);
        let results = behind_a_held_batch(
            &schema,
            &group,
            ids[0],
            vec![(ids[1], "deferred".to_owned()), (ids[2], "lost".to_owned())],
        )
        .await;
        let mut results = results.into_iter();
        assert_eq!(results.next().unwrap().unwrap(), 1);
        for failed in results {
            let e = failed.unwrap_err();
            assert!(
                e.is_connection_lost() && e.to_string().contains("refused at commit"),
                "every part sees the batch's error, to retry as a broken write: {e}"
            );
        }
        assert_eq!(
            notes_only(&schema, &ids).await,
            [Some(s("first")), None, None]
        );
        schema.drop_schema().await.unwrap();
    }
}
