//! The checkpoint store: save (upsert), load, delete and list.

use workflows::testing;
use workflows::{Error, PgCheckpointStore, RunStatus, State};

use crate::fixtures::{at, insert_run, unknown_run};

fn state_after(node: &str, iteration: u32, value: i64) -> State {
    let mut state = State::new().with("value", value);
    state.set_checkpoint(node, iteration);
    state
}

async fn behaves_as_a_store(
    store: &PgCheckpointStore,
    first: workflows::RunId,
    second: workflows::RunId,
) {
    assert_eq!(store.get(first).await.unwrap(), None);

    let a = state_after("fetch", 1, 10);
    store.save(first, &a).await.unwrap();
    assert_eq!(store.get(first).await.unwrap(), Some(a));

    let b = state_after("summarize", 2, 20);
    store.save(first, &b).await.unwrap();
    let loaded = store.get(first).await.unwrap().unwrap();
    assert_eq!(loaded, b, "a second save replaces the first");
    assert_eq!(loaded.checkpoint_node(), Some("summarize"));
    assert_eq!(loaded.iteration(), 2);

    store.save(second, &state_after("x", 1, 1)).await.unwrap();
    let listed: Vec<_> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.run_id, c.checkpoint_node))
        .collect();
    assert!(
        listed.contains(&(first, "summarize".to_owned())),
        "{listed:?}"
    );
    assert!(listed.contains(&(second, "x".to_owned())), "{listed:?}");

    assert!(store.delete(first).await.unwrap());
    assert!(!store.delete(first).await.unwrap(), "already gone");
    assert_eq!(store.get(first).await.unwrap(), None);

    let err = store.save(second, &State::new()).await.unwrap_err();
    assert!(err.to_string().contains("checkpoint_node"), "{err}");
}

#[tokio::test]
async fn the_postgres_store_saves_loads_deletes_and_lists() {
    let pool = testing::pool().await.unwrap();
    let (first, second) = {
        let mut conn = pool.get().await.unwrap();
        (
            insert_run(&mut conn, "x", RunStatus::Failed, at(0)).await,
            insert_run(&mut conn, "x", RunStatus::Cancelled, at(1)).await,
        )
    };
    behaves_as_a_store(&PgCheckpointStore::new(pool), first, second).await;
}

#[tokio::test]
async fn the_postgres_store_needs_the_run_to_exist() {
    let store = PgCheckpointStore::new(testing::pool().await.unwrap());
    let err = store
        .save(unknown_run(), &state_after("a", 1, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RunNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn the_postgres_store_leaves_executing_runs_to_their_executor() {
    let pool = testing::pool().await.unwrap();
    let store = PgCheckpointStore::new(pool.clone());
    for status in [RunStatus::Pending, RunStatus::Running, RunStatus::Completed] {
        let id = insert_run(&mut pool.get().await.unwrap(), "x", status, at(0)).await;
        let err = store.save(id, &state_after("a", 1, 1)).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidStatus { status: s, .. } if s == status),
            "{status}: {err:?}"
        );
        assert_eq!(store.get(id).await.unwrap(), None, "nothing was saved");
    }
    let running = insert_run(
        &mut pool.get().await.unwrap(),
        "x",
        RunStatus::Running,
        at(0),
    )
    .await;
    let err = store.delete(running).await.unwrap_err();
    assert!(matches!(err, Error::InvalidStatus { .. }), "{err:?}");
}
