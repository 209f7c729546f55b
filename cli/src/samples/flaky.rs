//! `flaky`: fails at the node named by `fail_at` the first time it runs, so that a failure
//! and its resume can be shown. A resumed run continues its step numbers, so the node's
//! second attempt has a later step than its first, and passes. With `retryable`, the failure
//! is marked retryable, and the node's policy tries it again 6 s later (a worker releases
//! the run meanwhile: it is `waiting`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use workflows::{
    BoxError, GraphBuilder, NodeContext, NodeError, NodePolicy, RetryPolicy, WorkflowState,
    workflow,
};

use super::{DelayMs, Model};

/// The nodes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Step {
    Extract,
    Transform,
    Load,
}

impl Step {
    const ALL: [Step; 3] = [Step::Extract, Step::Transform, Step::Load];

    fn name(self) -> &'static str {
        match self {
            Step::Extract => "extract",
            Step::Transform => "transform",
            Step::Load => "load",
        }
    }

    /// The step number of its first attempt.
    fn first_attempt(self) -> u32 {
        match self {
            Step::Extract => 1,
            Step::Transform => 2,
            Step::Load => 3,
        }
    }
}

/// What a run of `flaky` is given.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlakyParams {
    /// The node that fails on its first attempt, if any.
    #[serde(default)]
    fail_at: Option<Step>,
    /// Whether that failure is worth another try: then the node is retried 6 s later instead
    /// of failing the run.
    #[serde(default)]
    retryable: bool,
    #[serde(default)]
    delay_ms: DelayMs,
}

/// A run's state: where it fails, and the nodes done (each appends its name).
#[derive(Debug, Clone, Serialize, Deserialize, WorkflowState)]
pub(crate) struct Flaky {
    fail_at: Option<Step>,
    retryable: bool,
    #[state(append)]
    done: Vec<String>,
    delay_ms: DelayMs,
}

impl From<FlakyParams> for Flaky {
    fn from(params: FlakyParams) -> Self {
        Flaky {
            fail_at: params.fail_at,
            retryable: params.retryable,
            done: Vec::new(),
            delay_ms: params.delay_ms,
        }
    }
}

#[workflow(
    name = "flaky",
    description = "Fails once at node `fail_at` (extract, transform or load), then succeeds when resumed",
    params = FlakyParams
)]
fn flaky(graph: &mut GraphBuilder<Flaky, Model>) -> Result<(), BoxError> {
    let [extract, transform, load] = Step::ALL.map(|s| graph.node(s.name(), step));
    // Only errors marked retryable are tried again: a plain `fail_at` still fails the run.
    graph.default_policy(
        NodePolicy::new().retry(
            RetryPolicy::attempts(2)
                .initial_interval(Duration::from_secs(6))
                .jitter(false),
        ),
    );
    graph
        .start_at(extract)
        .edge(extract, transform)
        .edge(transform, load)
        .end_at(load);
    Ok(())
}

async fn step(state: Flaky, ctx: NodeContext<Model>) -> Result<FlakyUpdate, BoxError> {
    ctx.deps().think(state.delay_ms, &ctx).await?;
    if let Some(failing) = state.fail_at
        && failing.name() == ctx.node()
        && ctx.iteration() == failing.first_attempt()
        && ctx.attempt() == 1
    {
        let error = format!(
            "{} failed on its first attempt, as asked by fail_at",
            ctx.node()
        );
        return Err(if state.retryable {
            NodeError::retryable(error).into()
        } else {
            error.into()
        });
    }
    Ok(FlakyUpdate::default().done(vec![ctx.node().to_owned()]))
}
