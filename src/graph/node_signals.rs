//! What a node tells the engine while it runs, besides its result: heartbeats, and a wait it
//! asks for once it completes (a question for a person, or a timer); and what the engine
//! tells it: the answers to the questions the node before it asked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use crate::model::AnswerSchema;

/// A wait a node asked for: the run waits, holding no worker, after the node completes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WaitRequest {
    /// Until `key` is answered (or `timeout` passes unanswered), with an answer that fits
    /// `schema` if there is one.
    Answer {
        key: String,
        question: Value,
        schema: Option<AnswerSchema>,
        timeout: Option<Duration>,
    },
    /// For `after`.
    Sleep { after: Duration },
    /// Until a message on `topic` is sent to the run (or `timeout` passes without one).
    Message {
        topic: String,
        timeout: Option<Duration>,
    },
}

/// A message delivered to the node a run continues at after waiting for its topic.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delivered {
    /// The topic waited for.
    pub(crate) topic: String,
    /// The oldest message not received yet on it (its id and payload); `None` if the wait
    /// timed out without one.
    pub(crate) message: Option<(i64, Value)>,
}

/// What the node a run continues at after a wait is given.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Given {
    pub(crate) answers: HashMap<String, Option<Value>>,
    pub(crate) delivered: Option<Delivered>,
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
    /// The message this node receives, if the node before it waited for one.
    pub(crate) delivered: Option<Delivered>,
}

impl NodeSignals {
    /// Signals for a node that is given `answers` and the message `delivered`.
    pub(crate) fn given(given: Given) -> Self {
        NodeSignals {
            answers: given.answers,
            delivered: given.delivered,
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
