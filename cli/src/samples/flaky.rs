//! `flaky`: fails at the node named by `fail_at` the first time it runs, so that a failure
//! and its resume can be shown. A resumed run continues its step numbers, so the node's
//! second attempt has a later step than its first, and passes.

use workflows::{BoxError, GraphBuilder, NodeContext, Params, Runtime, State, workflow};

use super::{initial_state, think};

/// The nodes, in order.
const NODES: [&str; 3] = ["extract", "transform", "load"];

#[workflow(
    name = "flaky",
    description = "Fails once at node `fail_at` (extract, transform or load), then succeeds when resumed"
)]
async fn flaky(
    graph: &mut GraphBuilder,
    _runtime: &Runtime,
    params: Params,
) -> Result<State, BoxError> {
    let fail_at: Option<String> = params.get("fail_at")?;
    if let Some(node) = &fail_at
        && !NODES.contains(&node.as_str())
    {
        return Err(format!(
            "fail_at {node:?} is not a node; use one of {}",
            NODES.join(", ")
        )
        .into());
    }
    for node in NODES {
        graph.add_node(node, step);
    }
    graph
        .add_edge("extract", "transform")
        .add_edge("transform", "load")
        .set_entry_point("extract")
        .add_exit_point("load");
    let mut state = initial_state(&params)?.with("done", Vec::<String>::new());
    if let Some(node) = fail_at {
        state.set("fail_at", node);
    }
    Ok(state)
}

async fn step(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    think(&state, &ctx).await?;
    let first_attempt_step = NODES
        .iter()
        .position(|n| *n == ctx.node())
        .map(|i| i as u32 + 1);
    if state.get::<String>("fail_at")?.as_deref() == Some(ctx.node())
        && Some(ctx.iteration()) == first_attempt_step
    {
        return Err(format!(
            "{} failed on its first attempt, as asked by fail_at",
            ctx.node()
        )
        .into());
    }
    let mut done: Vec<String> = state.require("done")?;
    done.push(ctx.node().to_owned());
    state.set("done", done);
    Ok(state)
}
