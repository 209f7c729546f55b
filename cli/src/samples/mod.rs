//! Sample workflows: deterministic stand-ins for the Go service's summarize, reasoning and
//! classify samples, and one that fails on purpose. Each node waits `delay_ms` (default 20)
//! to stand for a model call, and stops at once when the run is cancelled.

mod chain;
mod classify;
mod flaky;
mod reasoning;
mod summarize;

use std::time::Duration;

use workflows::{BoxError, NodeContext, Params, State};

/// The longest pause a sample node takes: the samples are served over HTTP by
/// `workflows serve`, where a caller must not be able to park runs for days.
const MAX_DELAY_MS: u64 = 60_000;

/// A sample's initial state: `delay_ms` from the params, if given.
fn initial_state(params: &Params) -> Result<State, BoxError> {
    let mut state = State::new();
    if let Some(delay) = delay_param(params)? {
        state.set("delay_ms", delay);
    }
    Ok(state)
}

/// The `delay_ms` param, if given, checked against [`MAX_DELAY_MS`].
fn delay_param(params: &Params) -> Result<Option<u64>, BoxError> {
    match params.get::<u64>("delay_ms")? {
        Some(delay) if delay > MAX_DELAY_MS => {
            Err(format!("delay_ms must be at most {MAX_DELAY_MS}, not {delay}").into())
        }
        delay => Ok(delay),
    }
}

/// The pause each sample node takes, from the state's `delay_ms` (set from params).
fn delay(state: &State) -> Result<Duration, BoxError> {
    Ok(Duration::from_millis(
        state.get::<u64>("delay_ms")?.unwrap_or(20),
    ))
}

/// Waits like a model call would, unless the run is cancelled first.
async fn think(state: &State, ctx: &NodeContext) -> Result<(), BoxError> {
    let pause = delay(state)?;
    tokio::select! {
        () = tokio::time::sleep(pause) => Ok(()),
        () = ctx.cancelled() => Err(format!("node {} was cancelled", ctx.node()).into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use workflows::{GraphBuilder, Params, Registry, Runtime};

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
            ["chain", "classify", "flaky", "reasoning", "summarize"]
        );
    }

    /// Every sample declares a valid graph from its documented params.
    #[tokio::test]
    async fn the_samples_build_valid_graphs() {
        let registry = Registry::from_compiled().unwrap();
        for (name, params) in [
            (
                "summarize",
                json!({"text": "One. Two three. Four five six."}),
            ),
            ("reasoning", json!({"question": "What is 2 + 3?"})),
            ("classify", json!({"items": ["invoice 42", "hello"]})),
            ("flaky", json!({"fail_at": "transform"})),
            ("chain", json!({"nodes": 3})),
        ] {
            let params = Params::from_value(params).unwrap();
            let built = registry
                .get(name)
                .unwrap()
                .build(GraphBuilder::new(), &Runtime::new(), params)
                .await;
            assert!(built.is_ok(), "{name}: {:?}", built.err());
        }
    }
}
