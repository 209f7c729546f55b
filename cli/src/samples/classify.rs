//! `classify`: a bounded loop. Classifies one item per pass until none is left.

use serde_json::Value;
use workflows::{BoxError, GraphBuilder, NodeContext, Params, Predicate, Runtime, State, workflow};

use super::{initial_state, think};

#[workflow(
    name = "classify",
    description = "Loop: labels each of `items` one pass at a time (at most 50 passes), then tallies"
)]
async fn classify(
    graph: &mut GraphBuilder,
    _runtime: &Runtime,
    params: Params,
) -> Result<State, BoxError> {
    let items: Vec<String> = params.require("items")?;
    graph
        .add_node("classify_next", classify_next)
        .add_node("tally", tally)
        .add_conditional_edge(
            "classify_next",
            "classify_next",
            Predicate::new("items_remain", |s: &State| {
                s.value("pending")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
            }),
        )
        .add_edge("classify_next", "tally")
        .set_entry_point("classify_next")
        .add_exit_point("tally")
        .set_max_iterations(50);
    Ok(initial_state(&params)?
        .with("pending", items)
        .with("labels", Value::Array(Vec::new())))
}

fn label(item: &str) -> &'static str {
    if item.chars().any(|c| c.is_ascii_digit()) {
        "record"
    } else if item.ends_with('?') {
        "question"
    } else {
        "note"
    }
}

async fn classify_next(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    think(&state, &ctx).await?;
    let mut pending: Vec<String> = state.require("pending")?;
    let mut labels: Vec<Value> = state.require("labels")?;
    if !pending.is_empty() {
        let item = pending.remove(0);
        labels.push(serde_json::json!({"item": item, "label": label(&item)}));
    }
    state.set("pending", pending);
    state.set("labels", labels);
    Ok(state)
}

async fn tally(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    think(&state, &ctx).await?;
    let labels: Vec<Value> = state.require("labels")?;
    let mut counts = serde_json::Map::new();
    for entry in &labels {
        let label = entry["label"].as_str().unwrap_or("unknown").to_owned();
        let n = counts.get(&label).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(label, (n + 1).into());
    }
    state.set("counts", Value::Object(counts));
    Ok(state)
}
