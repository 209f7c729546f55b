//! Waiting between retries: doubling pauses, capped, for whatever retries a database that
//! went away (journal writes, heartbeats, the worker's first connection).

use std::time::Duration;

/// The pauses between attempts: `first`, then twice as long each time, at most `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Pauses from `first` to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first, max }
    }

    /// The pauses of writes retried while a database restarts: 50 ms to 2 s.
    pub(crate) fn for_writes() -> Self {
        Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
    }

    /// The next pause.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let pauses: Vec<u128> = (0..5).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 500, 500]);
    }
}
