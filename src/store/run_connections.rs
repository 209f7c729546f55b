//! The connections an executor's runs share: all of its pool but one, which stays free for
//! renewing their leases.
//!
//! Runs write on every node, and a slow database (or many runs per connection) can keep
//! every connection of a pool busy. If the heartbeat had to queue behind them, leases would
//! expire on a live executor and its runs be taken over. So the runs take turns on at most
//! `max_size - 1` connections (all of a pool of one), and the heartbeat never waits for
//! more than the connection left over.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::store::db::{Pool, PooledConnection};

/// The pool, as runs use it.
#[derive(Clone)]
pub(crate) struct RunConnections {
    pool: Pool,
    turns: Arc<Semaphore>,
}

impl RunConnections {
    /// The runs' share of `pool`.
    pub(crate) fn new(pool: Pool) -> Self {
        let max = pool.status().max_size;
        RunConnections {
            turns: Arc::new(Semaphore::new(if max >= 2 { max - 1 } else { 1 })),
            pool,
        }
    }

    /// A connection, once a run's turn comes.
    pub(crate) async fn get(&self) -> Result<RunConnection> {
        let turn = Arc::clone(&self.turns)
            .acquire_owned()
            .await
            .map_err(|_| Error::unavailable("the executor's connections were closed", None))?;
        Ok(RunConnection {
            conn: self.pool.get().await?,
            _turn: turn,
        })
    }
}

/// A connection a run holds for one statement or read.
pub(crate) struct RunConnection {
    conn: PooledConnection,
    _turn: OwnedSemaphorePermit,
}

impl Deref for RunConnection {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for RunConnection {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}
