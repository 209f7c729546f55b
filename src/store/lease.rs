//! A lease: the hold an executor has on a running run (the token every write of the run is
//! fenced by), and until when this process may count on it, by its own monotonic clock.
//!
//! The database reckons a lease's expiry by its own clock, from the moment the statement
//! that granted or renewed it ran. This process cannot see that moment, but it knows when it
//! *sent* the statement, which was earlier: a deadline counted from then ends before the
//! lease does. While the deadline holds, no other worker can have taken the run over, so a
//! write that failed because the database was out of reach may be retried; once it has
//! passed, the run may already be someone else's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::model::RunId;

/// The hold an executor has on a running run: the run, and the token its row carries while
/// this executor holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Lease {
    pub(crate) run_id: RunId,
    pub(crate) token: Uuid,
}

/// A run's lease deadline, shared by the attempt executing the run (which retries its
/// writes until it) and the heartbeat (which moves it on each renewal).
#[derive(Debug, Clone)]
pub(crate) struct LeaseDeadline(Arc<Mutex<Instant>>);

impl LeaseDeadline {
    /// The deadline of a lease of length `lease` granted by a statement sent at `sent`.
    pub(crate) fn new(sent: Instant, lease: Duration) -> Self {
        LeaseDeadline(Arc::new(Mutex::new(sent + lease)))
    }

    /// The lease was renewed by a statement sent at `sent`.
    pub(crate) fn renewed(&self, sent: Instant, lease: Duration) {
        let mut deadline = self.lock();
        *deadline = (*deadline).max(sent + lease);
    }

    /// How long the lease surely still holds; zero once the deadline has passed.
    pub(crate) fn remaining(&self) -> Duration {
        self.lock().saturating_duration_since(Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Instant> {
        // An instant cannot be left half-written: a poisoned lock still holds a valid one.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_runs_out_and_a_renewal_moves_it_on() {
        let lease = Duration::from_secs(30);
        let deadline = LeaseDeadline::new(Instant::now(), lease);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(deadline.remaining(), Duration::from_secs(10));
        deadline.renewed(Instant::now(), lease);
        assert_eq!(deadline.remaining(), lease);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(deadline.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_answer_to_an_older_renewal_does_not_move_it_back() {
        let lease = Duration::from_secs(30);
        let older = Instant::now();
        tokio::time::advance(Duration::from_secs(5)).await;
        let deadline = LeaseDeadline::new(Instant::now(), lease);
        deadline.renewed(older, lease);
        assert_eq!(deadline.remaining(), lease);
    }
}
