//! The connection pool the library's statements run on.

use diesel::QueryableByName;
use diesel::sql_types::Integer;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use workflows::DbConfig;

/// The server process behind `conn`.
async fn backend_pid(conn: &mut AsyncPgConnection) -> i32 {
    #[derive(QueryableByName)]
    struct Backend {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Backend>(conn)
        .await
        .unwrap()
        .pid
}

#[tokio::test]
async fn the_pool_hands_out_the_connection_returned_last() {
    let pool = DbConfig::new(workflows::testing::database_url().unwrap())
        .max_connections(3)
        .build_pool()
        .unwrap();
    let (mut first, mut second) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    let (first_pid, second_pid) = (
        backend_pid(&mut first).await,
        backend_pid(&mut second).await,
    );
    assert_ne!(first_pid, second_pid);

    drop(first);
    drop(second);
    let mut next = pool.get().await.unwrap();
    assert_eq!(backend_pid(&mut next).await, second_pid);

    let mut other = pool.get().await.unwrap();
    let other_pid = backend_pid(&mut other).await;
    assert_eq!(other_pid, first_pid);
    drop(other);
    drop(next);
    let mut last = pool.get().await.unwrap();
    assert_eq!(backend_pid(&mut last).await, second_pid);
}
