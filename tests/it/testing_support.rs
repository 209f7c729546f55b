//! The `testing` module: test transactions leave nothing behind; isolated schemas are
//! separate and dropped.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use workflows::schema::runs;
use workflows::testing::{self, IsolatedSchema};
use workflows::{RunStatus, repository};

use crate::fixtures::{at, insert_run};

/// A connection outside any test transaction, to see what others committed.
async fn outside() -> AsyncPgConnection {
    AsyncPgConnection::establish(&testing::database_url().unwrap())
        .await
        .unwrap()
}

async fn runs_named(conn: &mut AsyncPgConnection, name: &str) -> i64 {
    runs::table
        .filter(runs::workflow_name.eq(name))
        .count()
        .get_result(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn rows_written_in_a_test_transaction_are_gone_afterwards() {
    let name = format!("gone-{}", uuid::Uuid::new_v4());
    let mut conn = testing::connection().await.unwrap();
    let id = insert_run(&mut conn, &name, RunStatus::Pending, at(0)).await;
    assert_eq!(
        repository::find_run(&mut conn, id)
            .await
            .unwrap()
            .workflow_name,
        name
    );

    let mut other = outside().await;
    assert_eq!(
        runs_named(&mut other, &name).await,
        0,
        "never visible to others"
    );
    drop(conn);
    assert_eq!(
        runs_named(&mut other, &name).await,
        0,
        "and gone after the test"
    );
}

#[tokio::test]
async fn a_test_pool_shares_one_transaction_and_leaves_nothing() {
    let name = format!("pooled-{}", uuid::Uuid::new_v4());
    let pool = testing::pool().await.unwrap();
    {
        let mut conn = pool.get().await.unwrap();
        insert_run(&mut conn, &name, RunStatus::Pending, at(0)).await;
    }
    {
        let mut conn = pool.get().await.unwrap();
        assert_eq!(
            runs_named(&mut conn, &name).await,
            1,
            "the next get() sees it"
        );
    }
    drop(pool);
    assert_eq!(runs_named(&mut outside().await, &name).await, 0);
}

async fn schema_exists(name: &str) -> bool {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1")
        .bind::<Text, _>(name)
        .get_result::<Count>(&mut outside().await)
        .await
        .unwrap()
        .n
        == 1
}

#[tokio::test]
async fn an_isolated_schema_commits_across_connections_and_is_dropped() {
    let schema = IsolatedSchema::create().await.unwrap();
    let name = schema.name().to_owned();
    assert!(schema_exists(&name).await);
    let id = {
        let mut a = schema.pool().get().await.unwrap();
        insert_run(&mut a, "shared", RunStatus::Pending, at(0)).await
    };
    let mut b = AsyncPgConnection::establish(schema.database_url())
        .await
        .unwrap();
    assert_eq!(
        repository::find_run(&mut b, id)
            .await
            .unwrap()
            .workflow_name,
        "shared"
    );
    assert_eq!(
        runs_named(&mut outside().await, "shared").await,
        0,
        "not in the main schema"
    );
    drop(b);

    schema.drop_schema().await.unwrap();
    assert!(!schema_exists(&name).await);
}

#[tokio::test]
async fn an_isolated_schema_is_dropped_when_it_goes_out_of_scope() {
    let name = {
        let schema = IsolatedSchema::create().await.unwrap();
        schema.name().to_owned()
    };
    assert!(!schema_exists(&name).await);
}

#[tokio::test]
async fn a_test_pool_whose_transaction_was_aborted_fails_loudly_instead_of_starting_over() {
    let pool = testing::pool().await.unwrap();
    {
        let mut conn = pool.get().await.unwrap();
        insert_run(&mut conn, "kept?", RunStatus::Pending, at(0)).await;
        // Not wrapped in a savepoint: the failure aborts the test transaction.
        let refused = diesel::insert_into(runs::table)
            .values((runs::workflow_name.eq("x"), runs::status.eq("sleeping")))
            .execute(&mut conn)
            .await;
        assert!(refused.is_err());
    }
    let err = pool.get().await.err().expect("no fresh transaction");
    let message = workflows::Error::from(err).to_string();
    assert!(
        message.contains("the test transaction was lost") && message.contains("savepoint"),
        "{message}"
    );
}
