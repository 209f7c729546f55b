//! Observers: whatever wants to hear a run's [`Event`]s (progress streams, logs, metrics).
//!
//! Observers are told after the fact and cannot fail a run: what must not be lost is written
//! to the database before any observer hears of it.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::exec::events::Event;

/// Hears the events of runs. Called on the run's task: keep it quick.
pub trait Observer: Send + Sync {
    /// One event.
    fn on_event(&self, event: &Event);

    /// Whether it does anything with the events of node steps ([`Event::is_step`]), which
    /// are most of a run's events. When no observer of a run does, its executor does not
    /// make them, and saves their copies of node names and routes at every step. By
    /// default, it does.
    ///
    /// ```
    /// use workflows::{Event, Observer};
    ///
    /// /// Counts the runs that end; hears nothing of their steps.
    /// struct EndedRuns(std::sync::atomic::AtomicU64);
    ///
    /// impl Observer for EndedRuns {
    ///     fn on_event(&self, event: &Event) {
    ///         if let Event::GraphCompleted { .. } = event {
    ///             self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ///         }
    ///     }
    ///
    ///     fn observes_steps(&self) -> bool {
    ///         false
    ///     }
    /// }
    /// # assert!(!EndedRuns(Default::default()).observes_steps());
    /// ```
    fn observes_steps(&self) -> bool {
        true
    }
}

impl<F: Fn(&Event) + Send + Sync> Observer for F {
    fn on_event(&self, event: &Event) {
        self(event)
    }
}

/// Tells several observers, in order.
#[derive(Clone, Default)]
pub struct Observers {
    observers: Vec<Arc<dyn Observer>>,
}

impl Observers {
    /// No observers yet.
    pub fn new() -> Self {
        Observers::default()
    }

    /// Adds one.
    pub fn with(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }
}

impl Observer for Observers {
    fn on_event(&self, event: &Event) {
        for observer in &self.observers {
            observer.on_event(event);
        }
    }

    fn observes_steps(&self) -> bool {
        self.observers
            .iter()
            .any(|observer| observer.observes_steps())
    }
}

/// Logs each event through `tracing`: node and edge events at `debug`, the end of a run at
/// `info` (or `warn` when it did not complete).
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingObserver;

impl Observer for TracingObserver {
    /// Only when `debug` is enabled here: it logs no step at a higher level.
    fn observes_steps(&self) -> bool {
        tracing::enabled!(tracing::Level::DEBUG)
    }

    fn on_event(&self, event: &Event) {
        match event {
            Event::GraphStarted {
                run_id,
                workflow,
                node,
                resumed,
                ..
            } => {
                tracing::info!(%run_id, workflow, node, resumed, "run started")
            }
            Event::NodeStarted {
                run_id,
                node,
                iteration,
                attempt,
                ..
            } => {
                tracing::debug!(%run_id, node, iteration, attempt, "node started")
            }
            Event::NodeRetrying {
                run_id,
                node,
                iteration,
                attempt,
                max_attempts,
                retry_in_ms,
                released,
                error,
            } => {
                tracing::warn!(%run_id, node, iteration, attempt, max_attempts, retry_in_ms, released, error, "node failed; trying again")
            }
            Event::Waiting { run_id, wake_at } => {
                tracing::info!(%run_id, ?wake_at, "run waiting, without a worker")
            }
            Event::Interrupted {
                run_id, node, key, ..
            } => {
                tracing::info!(%run_id, node, key, "node asked a question")
            }
            Event::Sleeping {
                run_id,
                node,
                for_ms,
                ..
            } => {
                tracing::info!(%run_id, node, for_ms, "run sleeping")
            }
            Event::AwaitingMessage {
                run_id,
                node,
                topic,
                ..
            } => {
                tracing::info!(%run_id, node, topic, "run waiting for a message")
            }
            Event::NodeCompleted {
                run_id,
                node,
                iteration,
                attempt,
                duration_ms,
                error,
                ..
            } => {
                tracing::debug!(%run_id, node, iteration, attempt, duration_ms, error, "node completed")
            }
            Event::EdgeTransition {
                run_id,
                from,
                to,
                predicate,
                ..
            } => {
                tracing::debug!(%run_id, from, to, predicate, "edge taken")
            }
            Event::CheckpointSaved { run_id, node, .. } => {
                tracing::trace!(%run_id, node, "checkpoint saved")
            }
            Event::CheckpointLoaded { run_id, node, .. } => {
                tracing::debug!(%run_id, node, "checkpoint loaded")
            }
            Event::Resumed {
                run_id,
                node,
                iteration,
            } => {
                tracing::info!(%run_id, node, iteration, "run resumed")
            }
            Event::CycleDetected {
                run_id,
                node,
                max_iterations,
                ..
            } => {
                tracing::warn!(%run_id, node, max_iterations, "cycle bound reached")
            }
            Event::Handover { run_id, reason } => {
                tracing::warn!(%run_id, reason, "run handed over")
            }
            Event::GraphCompleted {
                run_id,
                status,
                error,
                ..
            } => match error {
                None => tracing::info!(%run_id, %status, "run ended"),
                Some(error) => tracing::warn!(%run_id, %status, error, "run ended"),
            },
        }
    }
}

/// Forwards events to a channel: the progress stream of an execution. A receiver that went
/// away is not an error: the run goes on.
pub(crate) struct ChannelObserver(pub(crate) mpsc::UnboundedSender<Event>);

impl Observer for ChannelObserver {
    fn on_event(&self, event: &Event) {
        // A stream nobody reads (an execution only waited for) costs no copy.
        if !self.0.is_closed() {
            let _ = self.0.send(event.clone());
        }
    }

    fn observes_steps(&self) -> bool {
        !self.0.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use tracing::subscriber::with_default;
    use tracing::{Level, Metadata, Subscriber, span};

    use super::*;

    /// Enables what is at `level` or above, and records nothing.
    struct AtLevel(Level);

    impl Subscriber for AtLevel {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.level() <= &self.0
        }
        fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
            span::Id::from_u64(1)
        }
        fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
        fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &span::Id) {}
        fn exit(&self, _: &span::Id) {}
    }

    #[test]
    fn the_tracing_observer_wants_the_steps_only_when_debug_is_on() {
        assert!(!with_default(AtLevel(Level::INFO), || {
            TracingObserver.observes_steps()
        }));
        assert!(with_default(AtLevel(Level::DEBUG), || {
            TracingObserver.observes_steps()
        }));
        assert!(with_default(AtLevel(Level::TRACE), || {
            TracingObserver.observes_steps()
        }));
    }
}
