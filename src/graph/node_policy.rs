//! How a node is tried: how many attempts, how long to wait between them, and how long an
//! attempt may take.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::BoxError;
use super::node_error::{NodeError, NodeErrorKind};

/// Decides whether an unmarked error may be tried again.
type Classifier = Arc<dyn Fn(&BoxError) -> bool + Send + Sync>;

/// How often, and how far apart, a failed node is tried again.
///
/// An attempt that fails with a retryable error (see [`NodeError`]; a timeout is one) is
/// tried again after `initial_interval`, then after each interval times `backoff_factor`, at
/// most `max_interval`, until `max_attempts` attempts (the first included) have failed; then
/// the run fails naming the node, the attempts and the last error. With `jitter`, each wait
/// is drawn between half of it and all of it, so that many runs rate-limited at once do not
/// come back at once. Each attempt is a stage row of its own (`attempt` 1, 2, …); the node's
/// completion is recorded once.
///
/// ```
/// use std::time::Duration;
/// use workflows::RetryPolicy;
///
/// let policy = RetryPolicy::attempts(5)
///     .initial_interval(Duration::from_secs(1))
///     .backoff_factor(2.0)
///     .max_interval(Duration::from_secs(30));
/// assert_eq!(policy.wait_after(1), Duration::from_secs(1));
/// assert_eq!(policy.wait_after(3), Duration::from_secs(4));
/// assert_eq!(policy.wait_after(9), Duration::from_secs(30));
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_interval: Duration,
    backoff_factor: f64,
    max_interval: Duration,
    jitter: bool,
    retry_on: Option<Classifier>,
}

impl RetryPolicy {
    /// One attempt: a failure fails the run. What a node has without a policy.
    pub const NEVER: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial_interval: Duration::from_millis(500),
        backoff_factor: 2.0,
        max_interval: Duration::from_secs(60),
        jitter: false,
        retry_on: None,
    };

    /// Up to `max_attempts` attempts (at least 1), 0.5 s apart at first, doubling, at most a
    /// minute, with jitter.
    pub fn attempts(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            jitter: true,
            ..RetryPolicy::NEVER
        }
    }

    /// The wait before the second attempt.
    pub fn initial_interval(mut self, interval: Duration) -> Self {
        self.initial_interval = interval;
        self
    }

    /// What each wait is multiplied by for the next (below 1 counts as 1).
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.backoff_factor = if factor.is_finite() && factor > 1.0 {
            factor
        } else {
            1.0
        };
        self
    }

    /// The longest wait.
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = interval;
        self
    }

    /// Whether waits are drawn at random between half and all of their length.
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Decides, for errors not marked with [`NodeError`], whether to try again (by default
    /// they are fatal). Marked errors keep their mark.
    ///
    /// ```
    /// use workflows::{BoxError, RetryPolicy};
    /// let policy = RetryPolicy::attempts(3).retry_on(|e: &BoxError| e.to_string().contains("503"));
    /// assert!(policy.may_retry(&"503 Service Unavailable".into()));
    /// assert!(!policy.may_retry(&"400 Bad Request".into()));
    /// ```
    pub fn retry_on(
        mut self,
        classify: impl Fn(&BoxError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_on = Some(Arc::new(classify));
        self
    }

    /// The most attempts, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether `error` may be tried again (attempts left aside).
    pub fn may_retry(&self, error: &BoxError) -> bool {
        match NodeError::kind_of(error) {
            Some(kind) => kind == NodeErrorKind::Retryable,
            None => self
                .retry_on
                .as_ref()
                .is_some_and(|classify| classify(error)),
        }
    }

    /// The wait after failed attempt `attempt` (1 for the first), before jitter.
    pub fn wait_after(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_interval.as_secs_f64() * self.backoff_factor.powi(exponent);
        let max = self.max_interval.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }

    /// The wait after failed attempt `attempt`, jittered with `unit` (a number in [0, 1)).
    pub(crate) fn jittered_wait_after(&self, attempt: u32, unit: f64) -> Duration {
        let wait = self.wait_after(attempt);
        if self.jitter {
            wait.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
        } else {
            wait
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::NEVER
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_interval", &self.initial_interval)
            .field("backoff_factor", &self.backoff_factor)
            .field("max_interval", &self.max_interval)
            .field("jitter", &self.jitter)
            .field("retry_on", &self.retry_on.is_some())
            .finish()
    }
}

/// How a node runs: its retries and its timeouts. Set with
/// [`GraphBuilder::policy`](crate::GraphBuilder::policy), or for every node without one
/// with [`GraphBuilder::default_policy`](crate::GraphBuilder::default_policy).
///
/// ```
/// use std::time::Duration;
/// use workflows::{NodePolicy, RetryPolicy};
///
/// let policy = NodePolicy::new()
///     .retry(RetryPolicy::attempts(5))
///     .timeout(Duration::from_secs(60))
///     .idle_timeout(Duration::from_secs(10));
/// assert_eq!(policy.retries().max_attempts(), 5);
/// ```
#[derive(Debug, Clone, Default)]
pub struct NodePolicy {
    retry: RetryPolicy,
    timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
}

impl NodePolicy {
    /// One attempt, no timeout.
    pub fn new() -> Self {
        NodePolicy::default()
    }

    /// How failed attempts are tried again.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The longest an attempt may take; past it the attempt is stopped (its late result
    /// discarded) and fails as retryable.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The longest an attempt may go without calling
    /// [`NodeContext::heartbeat`](crate::NodeContext::heartbeat) (or starting); past it the
    /// attempt is stopped and fails as retryable. For long streaming calls.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// The retry policy.
    pub fn retries(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The per-attempt timeout.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The idle timeout.
    pub fn attempt_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_by_the_factor_up_to_the_maximum() {
        let p = RetryPolicy::attempts(10)
            .initial_interval(Duration::from_millis(100))
            .backoff_factor(3.0)
            .max_interval(Duration::from_secs(1));
        let waits: Vec<_> = (1..=4).map(|a| p.wait_after(a).as_millis()).collect();
        assert_eq!(waits, [100, 300, 900, 1000]);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_wait() {
        let p = RetryPolicy::attempts(3).initial_interval(Duration::from_secs(2));
        assert_eq!(p.jittered_wait_after(1, 0.0), Duration::from_secs(1));
        assert_eq!(p.jittered_wait_after(1, 1.0), Duration::from_secs(2));
        let p = p.jitter(false);
        assert_eq!(p.jittered_wait_after(1, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn marked_errors_keep_their_mark_whatever_the_classifier() {
        let p = RetryPolicy::attempts(3).retry_on(|_| true);
        assert!(!p.may_retry(&NodeError::fatal("no").into()));
        assert!(p.may_retry(&"anything".into()));
        assert!(!RetryPolicy::attempts(3).may_retry(&"anything".into()));
        assert!(RetryPolicy::NEVER.may_retry(&NodeError::retryable("429").into()));
    }

    #[test]
    fn a_huge_factor_stops_at_the_maximum() {
        let p = RetryPolicy::attempts(100).backoff_factor(1e300);
        assert_eq!(p.wait_after(90), Duration::from_secs(60));
        assert_eq!(RetryPolicy::attempts(0).max_attempts(), 1);
    }
}
