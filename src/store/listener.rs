//! Wake-ups from PostgreSQL: LISTEN on a dedicated connection for new pending runs and for
//! cancels, reconnecting with backoff when the connection is lost.
//!
//! Notifications are an optimisation, not a guarantee: they are lost while the connection is
//! down, and unavailable behind a transaction-mode pooler. Workers also poll, so a lost
//! notification delays work by at most the poll interval.

use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::model::RunId;
use crate::store::db::Pool;

/// The channel notified when a run becomes pending (see the workers migration).
const PENDING: &str = "workflows_pending";
/// The channel notified with a run's id when it is cancelled.
const CANCELLED: &str = "workflows_cancelled";

/// What a notification asks of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wakeup {
    /// There may be pending runs to claim (also sent after every reconnect, since
    /// notifications sent while disconnected are lost).
    Pending,
    /// This run was cancelled.
    Cancelled(RunId),
}

/// Listens until `stop`, sending wake-ups to the returned receiver.
pub(crate) fn spawn(pool: Pool, stop: CancellationToken) -> mpsc::Receiver<Wakeup> {
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        loop {
            match listen(&pool, &sender, &stop).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "listening for notifications failed")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
    receiver
}

/// One connection's worth of listening; `Ok` when stopped, `Err` when the connection failed.
async fn listen(
    pool: &Pool,
    sender: &mpsc::Sender<Wakeup>,
    stop: &CancellationToken,
) -> Result<()> {
    // A connection of its own, taken out of the pool: it only listens.
    let mut conn = deadpool::managed::Object::take(pool.get().await?);
    conn.batch_execute(&format!("LISTEN {PENDING}; LISTEN {CANCELLED};"))
        .await?;
    tracing::debug!("listening for notifications");
    if sender.send(Wakeup::Pending).await.is_err() {
        return Ok(());
    }
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    loop {
        let notification = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            next = notifications.next() => next,
        };
        let notification = match notification {
            Some(Ok(notification)) => notification,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(Error::unavailable("the listening connection closed", None)),
        };
        let wakeup = match notification.channel.as_str() {
            CANCELLED => match notification.payload.parse() {
                Ok(run_id) => Wakeup::Cancelled(run_id),
                Err(_) => continue,
            },
            _ => Wakeup::Pending,
        };
        if sender.send(wakeup).await.is_err() {
            return Ok(());
        }
    }
}
