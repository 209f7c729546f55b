//! Connections and migrations: the connection pool, and the embedded migrations that create
//! and upgrade the tables.

use std::time::Duration;

use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel::sql_types::BigInt;
use diesel::{RunQueryDsl, sql_query};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Error, Result};

/// A pool of PostgreSQL connections.
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;

/// A connection borrowed from a [`Pool`]; it derefs to [`AsyncPgConnection`], so it can be
/// passed (as `&mut conn`) wherever a connection is asked for.
pub type PooledConnection = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

/// The migrations that create and upgrade this library's tables, embedded in the binary.
///
/// The first reproduces the Go service's `000006_workflows` exactly; later ones add what it
/// lacks. Run them with [`Migrator`] or [`run_pending_migrations`] rather than a bare
/// harness: those take a lock, so several processes starting at once do not collide.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock key migrations run under ("workflow" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x776f_726b_666c_6f77;

/// How to reach PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConfig {
    /// A `postgres://` URL, e.g. `postgres://user:password@localhost:5432/app`.
    pub url: String,
    /// Most connections the pool opens.
    pub max_connections: usize,
    /// How long opening one connection may take.
    pub connect_timeout: Duration,
    /// How long a caller waits for a free connection before [`Error::Unavailable`].
    pub wait_timeout: Duration,
}

impl DbConfig {
    /// `url` with the default pool size (10) and timeouts (5 s each).
    pub fn new(url: impl Into<String>) -> Self {
        DbConfig {
            url: url.into(),
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(5),
        }
    }

    /// A pool for this configuration. Nothing connects yet; see [`DbConfig::connect`].
    pub fn build_pool(&self) -> Result<Pool> {
        // A pooled connection is checked without a round trip: a closed one is discarded
        // (the client knows it is closed), a live one is not pinged. The default pings on
        // every checkout, which doubles the round trips of a run's writes.
        let mut manager_config = ManagerConfig::default();
        manager_config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            self.url.clone(),
            manager_config,
        );
        Pool::builder(manager)
            .max_size(self.max_connections)
            .runtime(deadpool::Runtime::Tokio1)
            .create_timeout(Some(self.connect_timeout))
            .wait_timeout(Some(self.wait_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| Error::Config {
                variable: "WORKFLOWS_DB_MAX_CONNECTIONS",
                value: self.max_connections.to_string(),
                reason: e.to_string(),
            })
    }

    /// A pool for this configuration, after one successful connection: a wrong URL or an
    /// unreachable server is reported here, within the connect timeout, rather than on first
    /// use.
    pub async fn connect(&self) -> Result<Pool> {
        let pool = self.build_pool()?;
        drop(pool.get().await?);
        Ok(pool)
    }
}

/// Applies every pending migration, using one connection of `pool`. Returns the versions
/// applied (none if the database was up to date).
///
/// ```no_run
/// # async fn example() -> workflows::Result<()> {
/// let pool = workflows::DbConfig::new("postgres://localhost/app").connect().await?;
/// workflows::db::run_pending_migrations(&pool).await?;
/// # Ok(()) }
/// ```
pub async fn run_pending_migrations(pool: &Pool) -> Result<Vec<String>> {
    Migrator::new(pool.get().await?).run_pending().await
}

/// One of this library's migrations and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Its version, e.g. `20261125000001`.
    pub version: String,
    /// Its folder name, e.g. `2026-11-25-000001_create_workflows`.
    pub name: String,
    /// Whether it has been applied.
    pub applied: bool,
}

type SyncConnection<C> = AsyncConnectionWrapper<C>;

/// Applies, reverts and reports this library's migrations on one connection.
///
/// Every operation holds a PostgreSQL advisory lock, so concurrent migrators (several
/// replicas starting at once, parallel test processes) take turns instead of colliding. Only
/// this library's migrations are touched, even when the migrations table is shared with an
/// application's own Diesel migrations. Works on any tokio runtime flavour.
pub struct Migrator<C: 'static> {
    conn: Option<SyncConnection<C>>,
}

impl<C> Migrator<C>
where
    C: AsyncConnection<Backend = Pg> + 'static,
    SyncConnection<C>:
        diesel::Connection<Backend = Pg> + diesel::migration::MigrationConnection + Send,
{
    /// A migrator working on `conn` (an [`AsyncPgConnection`] or a [`PooledConnection`]).
    pub fn new(conn: C) -> Self {
        Migrator {
            conn: Some(AsyncConnectionWrapper::from(conn)),
        }
    }

    /// Applies every pending migration; returns the versions applied.
    pub async fn run_pending(&mut self) -> Result<Vec<String>> {
        self.locked(|conn| {
            let applied = conn
                .run_pending_migrations(MIGRATIONS)
                .map_err(Error::Migration)?;
            Ok(applied.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// Reverts the most recent of this library's applied migrations; returns its version, or
    /// `None` if none is applied.
    pub async fn revert_last(&mut self) -> Result<Option<String>> {
        self.locked(revert_last_applied).await
    }

    /// Reverts every applied migration of this library, newest first; returns their versions.
    /// Tables of other applications are untouched.
    pub async fn revert_all(&mut self) -> Result<Vec<String>> {
        self.locked(|conn| {
            let mut reverted = Vec::new();
            while let Some(version) = revert_last_applied(conn)? {
                reverted.push(version);
            }
            Ok(reverted)
        })
        .await
    }

    /// Reverts the most recent applied migration and applies it again; returns its version.
    pub async fn redo(&mut self) -> Result<Option<String>> {
        self.locked(|conn| {
            let reverted = revert_last_applied(conn)?;
            conn.run_pending_migrations(MIGRATIONS)
                .map_err(Error::Migration)?;
            Ok(reverted)
        })
        .await
    }

    /// Every migration of this library, oldest first, and whether it is applied.
    pub async fn status(&mut self) -> Result<Vec<MigrationStatus>> {
        self.locked(|conn| {
            let applied = conn.applied_migrations().map_err(Error::Migration)?;
            Ok(our_migrations()?
                .iter()
                .map(|m| MigrationStatus {
                    version: m.name().version().to_string(),
                    name: m.name().to_string(),
                    applied: applied.contains(&m.name().version()),
                })
                .collect())
        })
        .await
    }

    /// The connection back.
    pub fn into_inner(self) -> Result<C> {
        self.conn
            .map(AsyncConnectionWrapper::into_inner)
            .ok_or_else(lost)
    }

    /// Runs `op` on a blocking thread (Diesel's migration harness is synchronous) while
    /// holding the migration lock.
    async fn locked<T, F>(&mut self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut SyncConnection<C>) -> Result<T> + Send + 'static,
    {
        let mut conn = self.conn.take().ok_or_else(lost)?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = with_migration_lock(&mut conn, op);
            (conn, result)
        })
        .await
        .map_err(|e| Error::Migration(Box::new(e)))?;
        self.conn = Some(conn);
        result
    }
}

fn lost() -> Error {
    Error::Migration("the migrator's connection was lost when an earlier operation panicked".into())
}

fn with_migration_lock<Conn, T>(
    conn: &mut Conn,
    op: impl FnOnce(&mut Conn) -> Result<T>,
) -> Result<T>
where
    Conn: diesel::Connection<Backend = Pg>,
{
    sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(conn)?;
    let result = op(conn);
    let unlocked = sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(conn);
    let value = result?;
    unlocked?;
    Ok(value)
}

fn our_migrations() -> Result<Vec<Box<dyn Migration<Pg>>>> {
    MigrationSource::<Pg>::migrations(&MIGRATIONS).map_err(Error::Migration)
}

/// Reverts the newest applied migration that is one of ours.
fn revert_last_applied<Conn>(conn: &mut Conn) -> Result<Option<String>>
where
    Conn: MigrationHarness<Pg>,
{
    let applied = conn.applied_migrations().map_err(Error::Migration)?;
    let newest = our_migrations()?
        .into_iter()
        .filter(|m| applied.contains(&m.name().version()))
        .max_by(|a, b| a.name().version().cmp(&b.name().version()));
    let Some(migration) = newest else {
        return Ok(None);
    };
    let version = conn
        .revert_migration(migration.as_ref())
        .map_err(Error::Migration)?;
    Ok(Some(version.to_string()))
}
