//! Migrations: the embedded migrations that create and upgrade the tables, and the
//! [`Migrator`] that applies them under a lock.

use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel::sql_types::BigInt;
use diesel::{RunQueryDsl, sql_query};
use diesel_async::AsyncConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::db::Pool;
use crate::error::{Error, Result};

/// The migrations that create and upgrade this library's tables, embedded in the binary.
///
/// The first reproduces the Go service's `000006_workflows` exactly; later ones add what it
/// lacks. Run them with [`Migrator`] or [`run_pending_migrations`] rather than a bare
/// harness: those take a lock, so several processes starting at once do not collide.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock key migrations run under ("workflow" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x776f_726b_666c_6f77;

/// Applies every pending migration, using one connection of `pool`. Returns the versions
/// applied (none if the database was up to date).
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> workflows::Result<()> {
/// # let schema = workflows::testing::IsolatedSchema::create_unmigrated().await?;
/// # let url = schema.database_url();
/// let pool = workflows::DbConfig::new(url).connect().await?;
/// let applied = workflows::db::run_pending_migrations(&pool).await?;
/// assert!(applied.contains(&"20261125000001".to_owned()));
/// assert!(workflows::db::run_pending_migrations(&pool).await?.is_empty(), "nothing is left to do");
/// # drop(pool);
/// # schema.drop_schema().await?;
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
    /// A migrator working on `conn` (an [`AsyncPgConnection`](diesel_async::AsyncPgConnection) or a [`PooledConnection`](crate::PooledConnection)).
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
