//! `classify`: a bounded loop. Labels one item per pass until none is left, then counts the
//! labels.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use workflows::{BoxError, GraphBuilder, NodeContext, Predicate, WorkflowState, workflow};

use super::{DelayMs, Model};

/// What a run of `classify` is given.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClassifyParams {
    /// The items to label, one per pass (at most 49: the loop is bounded to 50 passes).
    items: Vec<String>,
    #[serde(default)]
    delay_ms: DelayMs,
}

/// An item and its label.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Labeled {
    item: String,
    label: String,
}

/// A run's state: the items left, those labelled (each pass appends one), and the count of
/// each label (merged in at the end).
#[derive(Debug, Clone, Serialize, Deserialize, WorkflowState)]
pub(crate) struct Classification {
    pending: Vec<String>,
    #[state(append)]
    labels: Vec<Labeled>,
    #[state(merge)]
    counts: BTreeMap<String, u64>,
    delay_ms: DelayMs,
}

impl From<ClassifyParams> for Classification {
    fn from(params: ClassifyParams) -> Self {
        Classification {
            pending: params.items,
            labels: Vec::new(),
            counts: BTreeMap::new(),
            delay_ms: params.delay_ms,
        }
    }
}

#[workflow(
    name = "classify",
    description = "Loop: labels each of `items` one pass at a time (at most 50 passes), then tallies",
    params = ClassifyParams
)]
fn classify(graph: &mut GraphBuilder<Classification, Model>) -> Result<(), BoxError> {
    let next = graph.node("classify_next", classify_next);
    let tally = graph.node("tally", tally);
    let items_remain = Predicate::new("items_remain", |s: &Classification| !s.pending.is_empty());
    graph
        .start_at(next)
        .edge_if(next, next, items_remain)
        .edge(next, tally)
        .end_at(tally)
        .set_max_iterations(50);
    Ok(())
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

async fn classify_next(
    state: Classification,
    ctx: NodeContext<Model>,
) -> Result<ClassificationUpdate, BoxError> {
    ctx.deps().think(state.delay_ms, &ctx).await?;
    let Some((item, rest)) = state.pending.split_first() else {
        return Ok(ClassificationUpdate::default());
    };
    let labeled = Labeled {
        item: item.clone(),
        label: label(item).to_owned(),
    };
    Ok(ClassificationUpdate::default()
        .pending(rest.to_vec())
        .labels(vec![labeled]))
}

async fn tally(
    state: Classification,
    ctx: NodeContext<Model>,
) -> Result<ClassificationUpdate, BoxError> {
    ctx.deps().think(state.delay_ms, &ctx).await?;
    let mut counts = BTreeMap::new();
    for entry in &state.labels {
        *counts.entry(entry.label.clone()).or_insert(0) += 1;
    }
    Ok(ClassificationUpdate::default().counts(counts))
}
