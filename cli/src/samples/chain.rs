//! `chain`: a linear graph of `nodes` nodes, each setting a key to a `payload`-long string and
//! incrementing `counter`: with the defaults, the benchmark's workload W. It is the sample on
//! the JSON `State`: its graph's size comes from its params, and its keys are named at run
//! time. No param reaches anything outside the run (tests count a node's executions from
//! the worker's log instead).

use std::time::Duration;

use workflows::{BoxError, GraphBuilder, NodeContext, Params, Runtime, State, workflow};

/// The longest pause a node of `chain` takes: a minute, so that tests can keep a run in
/// flight (the typed samples, whose params schema the API fuzz knows, allow far less).
const MAX_DELAY_MS: u64 = 60_000;

/// The most the nodes of a run write in all (`nodes` × `payload`): 4 MiB. Each node adds its
/// value to the state, which every checkpoint saves.
const MAX_WRITTEN: usize = 4 << 20;

#[workflow(
    name = "chain",
    description = "Linear: `nodes` nodes (default 10) each set a `payload`-long value (default 100) and count; optional `delay_ms`"
)]
async fn chain(
    graph: &mut GraphBuilder,
    _runtime: &Runtime,
    params: Params,
) -> Result<State, BoxError> {
    let nodes: usize = params.get("nodes")?.unwrap_or(10);
    if !(1..=1000).contains(&nodes) {
        return Err(format!("nodes must be from 1 to 1000, not {nodes}").into());
    }
    for i in 0..nodes {
        graph.add_node(format!("n{i}"), step);
        if i > 0 {
            graph.add_edge(format!("n{}", i - 1), format!("n{i}"));
        }
    }
    graph
        .set_entry_point("n0")
        .add_exit_point(format!("n{}", nodes - 1))
        .set_max_iterations(u32::try_from(nodes).unwrap_or(u32::MAX));
    let payload = params.get::<usize>("payload")?.unwrap_or(100);
    if payload.saturating_mul(nodes) > MAX_WRITTEN {
        return Err(format!(
            "nodes × payload must be at most {MAX_WRITTEN} bytes, not {nodes} × {payload}"
        )
        .into());
    }
    Ok(State::new()
        .with("counter", 0)
        .with("payload", payload)
        .with("delay_ms", delay_param(&params)?))
}

/// The `delay_ms` param (default 0), checked against [`MAX_DELAY_MS`].
fn delay_param(params: &Params) -> Result<u64, BoxError> {
    match params.get::<u64>("delay_ms")?.unwrap_or(0) {
        delay if delay > MAX_DELAY_MS => {
            Err(format!("delay_ms must be at most {MAX_DELAY_MS}, not {delay}").into())
        }
        delay => Ok(delay),
    }
}

async fn step(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    let delay: u64 = state.require("delay_ms")?;
    if delay > 0 {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(delay)) => {}
            () = ctx.cancelled() => return Err("cancelled".into()),
        }
    }
    let payload: usize = state.require("payload")?;
    let index = ctx.node().trim_start_matches('n');
    state.set(
        format!("k{index}"),
        format!("v{index}-")
            .chars()
            .chain(std::iter::repeat('x'))
            .take(payload)
            .collect::<String>(),
    );
    let counter: u64 = state.require("counter")?;
    state.set("counter", counter + 1);
    Ok(state)
}
