//! Sample workflows: deterministic stand-ins for the Go service's summarize, reasoning and
//! classify samples, and one that fails on purpose, all typed (their own state, params and
//! dependency); and `chain`, on the JSON `State`, the benchmark's workload. Each node of a
//! typed sample asks the [`Model`] to think for `delay_ms` (default 20), standing for a model
//! call, and stops at once when the run is cancelled.

mod approve;
mod chain;
mod classify;
mod flaky;
mod reasoning;
mod summarize;

use std::borrow::Cow;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use workflows::{BoxError, NodeContext, Runtime};

/// The longest pause a typed sample node takes: a second, so that a fuzzed `?wait=true` run
/// of at most 50 passes (classify) ends well inside the fuzz's request timeout.
const MAX_DELAY_MS: u64 = 1_000;

/// How long each node of a run pauses, in milliseconds: at most [`MAX_DELAY_MS`], which the
/// params are checked against before a run is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub(crate) struct DelayMs(u64);

impl Default for DelayMs {
    fn default() -> Self {
        DelayMs(20)
    }
}

impl TryFrom<u64> for DelayMs {
    type Error = String;

    fn try_from(ms: u64) -> Result<Self, String> {
        if ms > MAX_DELAY_MS {
            Err(format!("delay_ms must be at most {MAX_DELAY_MS}, not {ms}"))
        } else {
            Ok(DelayMs(ms))
        }
    }
}

impl From<DelayMs> for u64 {
    fn from(delay: DelayMs) -> u64 {
        delay.0
    }
}

impl JsonSchema for DelayMs {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "DelayMs".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_DELAY_MS,
            "description": "How long each node pauses, standing for a model call, in milliseconds (default 20)",
        })
    }
}

/// The samples' dependency: a stand-in for a model client, which their nodes reach through
/// their context (`ctx.deps()`). Every executor running the samples holds one.
#[derive(Debug, Default)]
pub(crate) struct Model;

impl Model {
    /// Waits like a model call would, unless the run is cancelled first.
    pub(crate) async fn think<D>(
        &self,
        delay: DelayMs,
        ctx: &NodeContext<D>,
    ) -> Result<(), BoxError> {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(delay.0)) => Ok(()),
            () = ctx.cancelled() => Err(format!("node {} was cancelled", ctx.node()).into()),
        }
    }
}

/// The dependencies the samples need.
pub(crate) fn runtime() -> Runtime {
    Runtime::builder().with(Model).build()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use workflows::{Registry, RunStatus, run_in_memory};

    /// Every sample is registered from this crate, which does not depend on linkme.
    #[test]
    fn the_samples_are_registered() {
        let names: Vec<_> = Registry::from_compiled()
            .unwrap()
            .list()
            .into_iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(
            names,
            [
                "approve",
                "chain",
                "classify",
                "flaky",
                "reasoning",
                "summarize"
            ]
        );
    }

    /// Every sample completes from its documented params.
    #[tokio::test]
    async fn the_samples_run_from_their_documented_params() {
        let registry = Registry::from_compiled().unwrap();
        for (name, params) in [
            (
                "summarize",
                json!({"text": "One. Two three. Four five six.", "delay_ms": 0}),
            ),
            (
                "reasoning",
                json!({"question": "What is 2 + 3?", "delay_ms": 0}),
            ),
            (
                "classify",
                json!({"items": ["invoice 42", "hello"], "delay_ms": 0}),
            ),
            ("flaky", json!({"delay_ms": 0})),
            ("chain", json!({"nodes": 3})),
        ] {
            let def = registry.get(name).unwrap();
            let run = run_in_memory(def, &super::runtime(), params).await.unwrap();
            assert_eq!(run.status, RunStatus::Completed, "{name}: {:?}", run.error);
        }
        // In memory, nobody answers: the approval gate stops at its question.
        let def = registry.get("approve").unwrap();
        let run = run_in_memory(def, &super::runtime(), json!({"topic": "rust"}))
            .await
            .unwrap();
        assert_eq!(
            (run.status, run.steps.len()),
            (RunStatus::Waiting, 1),
            "{:?}",
            run.error
        );
    }

    /// A delay past the limit is refused before a run is written, naming the field.
    #[test]
    fn a_delay_past_the_limit_is_refused_naming_the_field() {
        let registry = Registry::from_compiled().unwrap();
        let params = workflows::Params::from_value(json!({"text": "x", "delay_ms": 1001})).unwrap();
        let err = registry
            .get("summarize")
            .unwrap()
            .check_params(&params)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid params.delay_ms "1001": delay_ms must be at most 1000, not 1001"#
        );
    }
}
