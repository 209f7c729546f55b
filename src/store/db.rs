//! Connections: how to reach PostgreSQL, and the pool the library's statements run on.

use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};

use crate::error::{Error, Result};

/// A pool of PostgreSQL connections.
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;

/// A connection borrowed from a [`Pool`]; it derefs to [`AsyncPgConnection`], so it can be
/// passed (as `&mut conn`) wherever a connection is asked for.
pub type PooledConnection = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

/// How to reach PostgreSQL: [`DbConfig::new`] and its setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

    /// Most connections the pool opens.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// How long opening one connection may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a caller waits for a free connection.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
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
            // The connection returned last is handed out first, so that a few busy server
            // processes do the work while the pool's others sleep. Handed out in turn
            // (deadpool's default), every statement wakes a process that has slept since its
            // last one: with W's runs committed together, that cost the server 155-175 µs of
            // CPU per node step against 100-115, and a third of the runs per second
            // (`benches/workload.rs`, 4 interleaved rounds).
            .queue_mode(deadpool::managed::QueueMode::Lifo)
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
