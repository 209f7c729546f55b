//! The heartbeat: renews the leases of the attempts executing in this process.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::shared::Inner;
use crate::store::backoff::Backoff;
use crate::store::runs;

/// How soon a lease skipped because its row was locked (by the run's own node commit, which
/// takes milliseconds) is renewed again, and how often.
const BUSY_RETRY: Duration = Duration::from_millis(25);
const BUSY_RETRIES: u32 = 8;

/// Renews the leases of the attempts executing here, every `heartbeat`. An attempt whose
/// lease is no longer held (its run was cancelled, or taken over after this process stalled)
/// is interrupted. A lease whose row a node commit had locked is renewed again shortly after
/// (a run that commits as often as the heartbeat beats would otherwise keep missing it).
/// When the database cannot be reached, renewals are retried sooner (with backoff), and an
/// attempt is interrupted only once its lease has surely run out.
pub(super) async fn heartbeat(inner: std::sync::Weak<Inner>) {
    let mut retrying: Option<Backoff> = None;
    let (mut busy, mut busy_tries): (HashSet<uuid::Uuid>, u32) = (HashSet::new(), 0);
    loop {
        let (pause, lease, stopped) = match inner.upgrade() {
            Some(inner) => (
                match (&mut retrying, busy.is_empty()) {
                    (Some(backoff), _) => backoff.next_pause(),
                    (None, false) => BUSY_RETRY.min(inner.config.heartbeat),
                    (None, true) => inner.config.heartbeat,
                },
                inner.config.lease,
                inner.stopped.clone(),
            ),
            None => return,
        };
        tokio::select! {
            () = stopped.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        let active: HashSet<uuid::Uuid> = inner.active().keys().copied().collect();
        let asked: HashSet<uuid::Uuid> = if busy.is_empty() {
            active
        } else {
            busy.intersection(&active).copied().collect()
        };
        if asked.is_empty() {
            retrying = None;
            busy.clear();
            continue;
        }
        let sent = Instant::now();
        let renewed = async {
            let mut conn = inner.pool.get().await?;
            let tokens: Vec<uuid::Uuid> = asked.iter().copied().collect();
            runs::renew(&mut conn, &tokens, lease).await
        }
        .await;
        match renewed {
            Ok(renewal) => {
                retrying = None;
                busy_tries = if busy.is_empty() { 0 } else { busy_tries + 1 };
                busy = if busy_tries < BUSY_RETRIES {
                    renewal.busy.iter().copied().collect()
                } else {
                    HashSet::new()
                };
                // Only attempts whose token was asked about: others started during the query.
                for (token, active) in inner.active().iter() {
                    if renewal.renewed.contains(token) {
                        active.deadline.renewed(sent, lease);
                    } else if asked.contains(token) && !renewal.holds(token) {
                        tracing::info!(run_id = %active.run_id, "the run is no longer held by this executor: stopping its attempt");
                        active.cancel.cancel();
                    }
                }
            }
            Err(e) => {
                if retrying.is_none() {
                    tracing::warn!(error = %e, "could not renew leases; retrying");
                    retrying = Some(Backoff::new(
                        Duration::from_millis(100),
                        inner.config.heartbeat,
                    ));
                }
                for active in inner.active().values() {
                    if active.deadline.remaining().is_zero() && !active.cancel.is_cancelled() {
                        tracing::warn!(run_id = %active.run_id, "the run's lease could not be renewed before it ran out: stopping its attempt");
                        active.cancel.cancel();
                    }
                }
            }
        }
    }
}
