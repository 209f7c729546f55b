//! Test support: real PostgreSQL in `cargo test`, leaving nothing behind.
//!
//! Enabled by the `testing` feature (add `workflows = { version = "...", features =
//! ["testing"] }` to `[dev-dependencies]`). The database is the one `DATABASE_URL` names;
//! this library's migrations are applied to it once per process.
//!
//! - [`connection`] and [`pool`] give a test a connection inside a *test transaction*: a
//!   transaction that is never committed, so whatever the test writes is gone when the
//!   connection closes, and parallel tests never see each other's rows.
//! - [`IsolatedSchema`] is for tests that need several connections at once (row locks,
//!   concurrent writers, cancel from another task), which one transaction cannot hold: a
//!   fresh schema with its own tables, dropped afterwards.
//!
//! ```
//! use workflows::{repository, testing, ErrorKind, RunId};
//!
//! # #[tokio::main]
//! # async fn main() {
//! // In a #[tokio::test] function:
//! let mut conn = testing::connection().await.unwrap();
//! let id = RunId::from_uuid(uuid::Uuid::new_v4());
//! let err = repository::find_run(&mut conn, id).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::NotFound);
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool::managed::{Hook, HookError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, PoolError};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::store::db::{DbConfig, Pool};
use crate::store::migrations::Migrator;

/// How long a test waits to open a connection before failing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The URL of the test database: `DATABASE_URL`.
pub fn database_url() -> Result<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| Error::Config {
            variable: "DATABASE_URL",
            value: String::new(),
            reason: "not set; tests need a PostgreSQL database: run them with ./scripts/test, or \
                     export DATABASE_URL=$(./scripts/dev-db)"
                .to_owned(),
        })
}

/// A new connection to `url`, failing within [`CONNECT_TIMEOUT`].
async fn establish(url: &str) -> Result<AsyncPgConnection> {
    tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(url))
        .await
        .map_err(|_| {
            Error::unavailable(
                format!("no answer from PostgreSQL within {CONNECT_TIMEOUT:?}; check DATABASE_URL"),
                None,
            )
        })?
        .map_err(Error::from)
}

/// Applies the migrations to `url`'s database, once per process.
async fn migrate_once(url: &str) -> Result<()> {
    static MIGRATED: OnceCell<()> = OnceCell::const_new();
    MIGRATED
        .get_or_try_init(|| async {
            Migrator::new(establish(url).await?).run_pending().await?;
            Ok(())
        })
        .await
        .copied()
}

/// A connection to the migrated test database, inside a test transaction: what the test
/// writes is never committed.
pub async fn connection() -> Result<AsyncPgConnection> {
    let url = database_url()?;
    migrate_once(&url).await?;
    let mut conn = establish(&url).await?;
    conn.begin_test_transaction().await?;
    Ok(conn)
}

/// What a test pool's `get()` fails with once its test transaction was lost.
const TRANSACTION_LOST: &str = "the test transaction was lost: a statement failed inside it, \
    which aborts it, and with it everything the test wrote; wrap a statement that is expected \
    to fail in `conn.transaction(...)` (a savepoint), or use testing::IsolatedSchema";

/// A pool of one connection to the migrated test database, inside a test transaction, for
/// code that takes a [`Pool`]. Every `get()` returns that same connection, so all of a test's
/// queries share the transaction; when the pool is dropped, its writes are gone.
///
/// If a statement fails inside the transaction, PostgreSQL aborts it: everything the test
/// wrote is gone, and the connection is discarded. The pool then does not open another
/// (which would silently start over with an empty transaction): every later `get()` fails,
/// saying so.
pub async fn pool() -> Result<Pool> {
    let url = database_url()?;
    migrate_once(&url).await?;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    let opened = Arc::new(AtomicBool::new(false));
    Pool::builder(manager)
        .max_size(1)
        .runtime(deadpool::Runtime::Tokio1)
        .create_timeout(Some(CONNECT_TIMEOUT))
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .post_create(Hook::async_fn(move |conn: &mut AsyncPgConnection, _| {
            let first = !opened.swap(true, Ordering::SeqCst);
            Box::pin(async move {
                if !first {
                    return Err(HookError::message(TRANSACTION_LOST));
                }
                conn.begin_test_transaction()
                    .await
                    .map_err(|e| HookError::Backend(PoolError::QueryError(e)))
            })
        }))
        .build()
        .map_err(|e| Error::unavailable(e.to_string(), None))
}

/// A schema of its own in the test database, with this library's tables, for tests that
/// need several connections at once. Its connections see only its tables. The schema is
/// dropped with the value (or explicitly with [`IsolatedSchema::drop_schema`]).
///
/// ```
/// use diesel_async::RunQueryDsl;
/// # #[tokio::main]
/// # async fn main() -> workflows::Result<()> {
/// let schema = workflows::testing::IsolatedSchema::create().await?;
/// let (mut a, mut b) = (schema.pool().get().await?, schema.pool().get().await?);
/// diesel::sql_query("INSERT INTO runs (workflow_name) VALUES ('seen')").execute(&mut a).await?;
/// let seen = diesel::sql_query("SELECT 1 FROM runs").execute(&mut b).await?;
/// assert_eq!(seen, 1, "a write committed on one connection is seen on the other");
/// schema.drop_schema().await?;
/// # Ok(()) }
/// ```
pub struct IsolatedSchema {
    name: String,
    base_url: String,
    url: String,
    pool: Pool,
    dropped: bool,
}

impl IsolatedSchema {
    /// Creates a uniquely named schema and applies the migrations in it.
    pub async fn create() -> Result<Self> {
        let schema = Self::create_unmigrated().await?;
        Migrator::new(schema.pool.get().await?)
            .run_pending()
            .await?;
        Ok(schema)
    }

    /// Creates a uniquely named, empty schema: for tests of the migrations themselves.
    pub async fn create_unmigrated() -> Result<Self> {
        let base_url = database_url()?;
        let name = format!("wf_test_{}", uuid::Uuid::new_v4().simple());
        establish(&base_url)
            .await?
            .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .await?;
        let url = url_with_search_path(&base_url, &name);
        let schema = IsolatedSchema {
            pool: DbConfig::new(url.clone())
                .max_connections(16)
                .build_pool()?,
            name,
            base_url,
            url,
            dropped: false,
        };
        Ok(schema)
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL whose connections use this schema, for code (or processes) that connect by URL.
    pub fn database_url(&self) -> &str {
        &self.url
    }

    /// A pool of up to 16 connections using this schema; their writes are committed.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Drops the schema and everything in it.
    pub async fn drop_schema(mut self) -> Result<()> {
        self.dropped = true;
        self.pool.close();
        drop_schema(&self.base_url, &self.name).await
    }
}

impl Drop for IsolatedSchema {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        self.pool.close();
        // Drop cannot await: do it on a thread of its own with its own runtime, and wait so
        // the schema is gone when the test ends.
        let (url, name) = (self.base_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(drop_schema(&url, &name))
                .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(e)) | Err(e) = dropped.map_err(|_| "panicked".to_owned()) {
            tracing::warn!(schema = %self.name, error = %e, "could not drop test schema");
        }
    }
}

/// Drops the schema, first ending every session still connected to it (found by its
/// `application_name`): one a failed test left holding a lock would block the drop forever.
async fn drop_schema(url: &str, name: &str) -> Result<()> {
    establish(url)
        .await?
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = '{name}' AND pid <> pg_backend_pid();
             DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
        ))
        .await?;
    Ok(())
}

/// `url` with `search_path` set to `schema` for every connection made from it, and the
/// schema's name as the connections' `application_name` (so that a test can find its own
/// sessions in `pg_stat_activity`).
fn url_with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}&application_name={schema}")
}
