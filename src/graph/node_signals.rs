//! What a node tells the engine while it runs, besides its result: heartbeats, and a wait it
//! asks for once it completes (a question for a person, or a timer); and what the engine
//! tells it: the answers to the questions the node before it asked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

/// A wait a node asked for: the run waits, holding no worker, after the node completes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WaitRequest {
    /// Until `key` is answered (or `timeout` passes unanswered).
    Answer {
        key: String,
        question: Value,
        timeout: Option<Duration>,
    },
    /// For `after`.
    Sleep { after: Duration },
}

/// Shared by a node's context and the engine, for one attempt.
#[derive(Debug, Default)]
pub(crate) struct NodeSignals {
    /// Told of each heartbeat: what an idle timeout waits on.
    pub(crate) beats: Notify,
    /// The wait the node asked for, if any.
    pub(crate) wait: Mutex<Option<WaitRequest>>,
    /// The answers to the questions the node before this one asked, by key: `None` for one
    /// that timed out unanswered.
    pub(crate) answers: HashMap<String, Option<Value>>,
}

impl NodeSignals {
    /// Signals for a node that is given `answers`.
    pub(crate) fn with_answers(answers: HashMap<String, Option<Value>>) -> Self {
        NodeSignals {
            answers,
            ..NodeSignals::default()
        }
    }

    /// Records `request`; an error if the node already asked for a wait.
    pub(crate) fn ask(&self, request: WaitRequest) -> Result<(), String> {
        let mut wait = self
            .wait
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(earlier) = &*wait {
            return Err(format!(
                "a node can ask for one wait, and this one already asked for {earlier:?}"
            ));
        }
        *wait = Some(request);
        Ok(())
    }

    /// The wait asked for, taken.
    pub(crate) fn take_wait(&self) -> Option<WaitRequest> {
        self.wait
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}
