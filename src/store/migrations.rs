//! Migrations: the embedded migrations that create and upgrade the tables, and the
//! [`Migrator`] that applies them under a lock, adopting the Go service's tables (see
//! [`adoption`](super::adoption)) and refusing rows the integrity migration cannot take until
//! they are repaired (see [`repair`](super::repair)).

use diesel::connection::LoadConnection;
use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel::sql_types::BigInt;
use diesel::{RunQueryDsl, sql_query};
use diesel_async::AsyncConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::adoption::{self, FIRST_MIGRATION};
use super::db::Pool;
use super::repair;
use crate::error::{Error, Result};
use crate::model::{RepairPlan, Repaired};

/// The migrations that create and upgrade this library's tables, embedded in the binary.
///
/// The first reproduces the Go service's `000006_workflows` exactly; later ones add what it
/// lacks. Run them with [`Migrator`] or [`run_pending_migrations`] rather than a bare
/// harness: those take a lock, so several processes starting at once do not collide.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock key migrations run under ("workflow" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x776f_726b_666c_6f77;

/// The integrity migration: the rows it refuses are repaired before it applies.
const INTEGRITY_MIGRATION: &str = "20261125000002";

/// Applies every pending migration, using one connection of `pool`, adopting the Go
/// service's tables if they are there (see [`Migrator::adopt`]). Returns the versions
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
    /// Whether it has been applied (or adopted).
    pub applied: bool,
    /// Whether its tables were adopted (made by the Go service) rather than created by it:
    /// reverting it keeps them, unless [`Migrator::drop_adopted`] says otherwise.
    pub adopted: bool,
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
    drop_adopted: bool,
}

impl<C> Migrator<C>
where
    C: AsyncConnection<Backend = Pg> + 'static,
    SyncConnection<C>: LoadConnection<Backend = Pg> + diesel::migration::MigrationConnection + Send,
{
    /// A migrator working on `conn` (an [`AsyncPgConnection`](diesel_async::AsyncPgConnection) or a [`PooledConnection`](crate::PooledConnection)).
    pub fn new(conn: C) -> Self {
        Migrator {
            conn: Some(AsyncConnectionWrapper::from(conn)),
            drop_adopted: false,
        }
    }

    /// Whether reverting the first migration drops tables it adopted (the Go service's, with
    /// its data). By default it does not: it only forgets them (they are released, as they
    /// were before the adoption).
    pub fn drop_adopted(mut self, drop: bool) -> Self {
        self.drop_adopted = drop;
        self
    }

    /// Adopts the Go service's tables: if the first migration is pending and the seed's four
    /// tables are there, exactly in the seed's shape (columns, types, defaults, indexes,
    /// constraints), records the first migration as applied (and adopted) instead of creating
    /// them. Returns whether it adopted them now. A shape that differs is
    /// [`Error::NotAdoptable`], naming each difference, and nothing is recorded.
    /// [`run_pending`](Self::run_pending) adopts first, so calling this is needed only to
    /// know that it happened.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> workflows::Result<()> {
    /// # let schema = workflows::testing::IsolatedSchema::create_unmigrated().await?;
    /// let mut migrator = workflows::db::Migrator::new(schema.pool().get().await?);
    /// // A database of the Go service's has its tables; this one has none, so they are created.
    /// assert!(!migrator.adopt().await?);
    /// migrator.run_pending().await?;
    /// let first = &migrator.status().await?[0];
    /// assert!(first.applied && !first.adopted);
    /// // Once migrated, there is nothing the integrity migration could refuse.
    /// assert!(migrator.repair_plan().await?.is_empty());
    /// # drop(migrator);
    /// # schema.drop_schema().await?;
    /// # Ok(()) }
    /// ```
    pub async fn adopt(&mut self) -> Result<bool> {
        self.locked(adopt_seed_tables).await
    }

    /// Applies every pending migration (adopting the Go service's tables first, see
    /// [`adopt`](Self::adopt)); returns the versions applied. Before the integrity migration
    /// applies, refuses with [`Error::NeedsRepair`] (applying nothing more) if the tables
    /// hold rows it cannot accept: [`repair_plan`](Self::repair_plan) says what and how,
    /// [`repair`](Self::repair) repairs them.
    pub async fn run_pending(&mut self) -> Result<Vec<String>> {
        self.locked(|conn| {
            adopt_seed_tables(conn)?;
            refuse_rows_to_repair(conn)?;
            let applied = conn
                .run_pending_migrations(MIGRATIONS)
                .map_err(Error::Migration)?;
            Ok(applied.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// What the integrity migration would refuse in the tables, and how
    /// [`repair`](Self::repair) would put each right: empty when nothing needs repairing
    /// (or the integrity migration is applied already).
    pub async fn repair_plan(&mut self) -> Result<RepairPlan> {
        self.locked(|conn| unless_migrated(conn, repair::plan))
            .await
    }

    /// Carries out [`repair_plan`](Self::repair_plan) in one transaction, copying every row
    /// it changes or removes to `workflows_repair_archive` first; returns each repair with
    /// the rows it changed. Nothing is repaired once the integrity migration is applied.
    pub async fn repair(&mut self) -> Result<Vec<Repaired>> {
        self.locked(|conn| unless_migrated(conn, repair::apply))
            .await
    }

    /// Reverts the most recent of this library's applied migrations; returns its version, or
    /// `None` if none is applied. An adopted first migration is released, its tables kept
    /// (see [`drop_adopted`](Self::drop_adopted)).
    pub async fn revert_last(&mut self) -> Result<Option<String>> {
        let drop_adopted = self.drop_adopted;
        self.locked(move |conn| revert_last_applied(conn, drop_adopted))
            .await
    }

    /// Reverts every applied migration of this library, newest first; returns their versions.
    /// Tables of other applications are untouched, and so are adopted tables unless
    /// [`drop_adopted`](Self::drop_adopted) says otherwise.
    pub async fn revert_all(&mut self) -> Result<Vec<String>> {
        let drop_adopted = self.drop_adopted;
        self.locked(move |conn| {
            let mut reverted = Vec::new();
            while let Some(version) = revert_last_applied(conn, drop_adopted)? {
                reverted.push(version);
            }
            Ok(reverted)
        })
        .await
    }

    /// Reverts the most recent applied migration and applies it again; returns its version.
    pub async fn redo(&mut self) -> Result<Option<String>> {
        let drop_adopted = self.drop_adopted;
        self.locked(move |conn| {
            let reverted = revert_last_applied(conn, drop_adopted)?;
            adopt_seed_tables(conn)?;
            conn.run_pending_migrations(MIGRATIONS)
                .map_err(Error::Migration)?;
            Ok(reverted)
        })
        .await
    }

    /// Every migration of this library, oldest first, whether it is applied, and whether
    /// its tables were adopted.
    pub async fn status(&mut self) -> Result<Vec<MigrationStatus>> {
        self.locked(|conn| {
            let applied = conn.applied_migrations().map_err(Error::Migration)?;
            let first_adopted = adoption::is_adopted(conn, FIRST_MIGRATION)?;
            Ok(our_migrations()?
                .iter()
                .map(|m| {
                    let version = m.name().version().to_string();
                    MigrationStatus {
                        adopted: first_adopted && version == FIRST_MIGRATION,
                        applied: applied.contains(&m.name().version()),
                        name: m.name().to_string(),
                        version,
                    }
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

/// Whether `version` of ours is applied.
fn is_applied<Conn: MigrationHarness<Pg>>(conn: &mut Conn, version: &str) -> Result<bool> {
    let applied = conn.applied_migrations().map_err(Error::Migration)?;
    Ok(applied.iter().any(|v| v.to_string() == version))
}

/// See [`Migrator::adopt`].
fn adopt_seed_tables<Conn>(conn: &mut Conn) -> Result<bool>
where
    Conn: MigrationHarness<Pg> + LoadConnection<Backend = Pg> + 'static,
{
    if is_applied(conn, FIRST_MIGRATION)? || adoption::existing_seed_tables(conn)?.is_empty() {
        return Ok(false);
    }
    let differences = adoption::differences_from_seed(conn)?;
    if !differences.is_empty() {
        return Err(Error::NotAdoptable { differences });
    }
    conn.transaction::<_, Error, _>(|conn| {
        adoption::record_adoption(conn)?;
        sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES ($1)")
            .bind::<diesel::sql_types::Text, _>(FIRST_MIGRATION)
            .execute(conn)?;
        Ok(())
    })?;
    Ok(true)
}

/// Whether the integrity migration is still to apply to tables that exist: the rows it
/// would refuse are to be checked first.
fn needs_preflight<Conn>(conn: &mut Conn) -> Result<bool>
where
    Conn: MigrationHarness<Pg> + LoadConnection<Backend = Pg> + 'static,
{
    if is_applied(conn, INTEGRITY_MIGRATION)? {
        return Ok(false);
    }
    if is_applied(conn, FIRST_MIGRATION)? {
        return Ok(true);
    }
    // Not adopted yet: the tables can be repaired if they are the seed's.
    let existing = adoption::existing_seed_tables(conn)?;
    if existing.is_empty() {
        return Ok(false);
    }
    let differences = adoption::differences_from_seed(conn)?;
    if !differences.is_empty() {
        return Err(Error::NotAdoptable { differences });
    }
    Ok(true)
}

/// `op`'s result if the integrity migration is still to apply (to tables that exist), or
/// nothing (the default) if there is nothing it could refuse.
fn unless_migrated<Conn, T: Default>(
    conn: &mut Conn,
    op: impl FnOnce(&mut Conn) -> Result<T>,
) -> Result<T>
where
    Conn: MigrationHarness<Pg> + LoadConnection<Backend = Pg> + 'static,
{
    if needs_preflight(conn)? {
        op(conn)
    } else {
        Ok(T::default())
    }
}

/// [`Error::NeedsRepair`] if the integrity migration is pending and would refuse rows.
fn refuse_rows_to_repair<Conn>(conn: &mut Conn) -> Result<()>
where
    Conn: MigrationHarness<Pg> + LoadConnection<Backend = Pg> + 'static,
{
    if !needs_preflight(conn)? {
        return Ok(());
    }
    let plan = repair::plan(conn)?;
    if plan.is_empty() {
        Ok(())
    } else {
        Err(Error::NeedsRepair { plan })
    }
}

/// Reverts the newest applied migration that is one of ours. An adopted first migration is
/// only forgotten (its tables kept) unless `drop_adopted`.
fn revert_last_applied<Conn>(conn: &mut Conn, drop_adopted: bool) -> Result<Option<String>>
where
    Conn: MigrationHarness<Pg> + LoadConnection<Backend = Pg> + 'static,
{
    let applied = conn.applied_migrations().map_err(Error::Migration)?;
    let newest = our_migrations()?
        .into_iter()
        .filter(|m| applied.contains(&m.name().version()))
        .max_by(|a, b| a.name().version().cmp(&b.name().version()));
    let Some(migration) = newest else {
        return Ok(None);
    };
    if migration.name().version().to_string() == FIRST_MIGRATION
        && adoption::is_adopted(conn, FIRST_MIGRATION)?
    {
        return conn.transaction::<_, Error, _>(|conn| {
            if drop_adopted {
                migration.revert(conn).map_err(Error::Migration)?;
            }
            sql_query("DELETE FROM __diesel_schema_migrations WHERE version = $1")
                .bind::<diesel::sql_types::Text, _>(FIRST_MIGRATION)
                .execute(conn)?;
            adoption::forget_adoption(conn, FIRST_MIGRATION)?;
            Ok(Some(FIRST_MIGRATION.to_owned()))
        });
    }
    let version = conn
        .revert_migration(migration.as_ref())
        .map_err(Error::Migration)?;
    Ok(Some(version.to_string()))
}
