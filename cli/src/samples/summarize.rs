//! `summarize`: a linear graph. Splits a text into sentences, scores them, keeps the best.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use workflows::{BoxError, GraphBuilder, NodeContext, WorkflowState, workflow};

use super::{DelayMs, Model};

/// What a run of `summarize` is given.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SummarizeParams {
    /// The text to summarize.
    text: String,
    /// How many sentences to keep (default 2).
    #[serde(default = "two")]
    keep: usize,
    #[serde(default)]
    delay_ms: DelayMs,
}

fn two() -> usize {
    2
}

/// A run's state: the text, its sentences and their scores, then the summary.
#[derive(Debug, Clone, Serialize, Deserialize, WorkflowState)]
pub(crate) struct Summary {
    text: String,
    keep: usize,
    delay_ms: DelayMs,
    sentences: Vec<String>,
    scores: Vec<usize>,
    summary: Option<String>,
}

impl From<SummarizeParams> for Summary {
    fn from(params: SummarizeParams) -> Self {
        Summary {
            text: params.text,
            keep: params.keep,
            delay_ms: params.delay_ms,
            sentences: Vec::new(),
            scores: Vec::new(),
            summary: None,
        }
    }
}

#[workflow(
    name = "summarize",
    description = "Linear: splits `text` into sentences, scores them and keeps the `keep` best (default 2)",
    params = SummarizeParams
)]
fn summarize(graph: &mut GraphBuilder<Summary, Model>) -> Result<(), BoxError> {
    let split = graph.node("split", split);
    let score = graph.node("score", score);
    let compose = graph.node("compose", compose);
    graph
        .start_at(split)
        .edge(split, score)
        .edge(score, compose)
        .end_at(compose);
    Ok(())
}

async fn split(state: Summary, ctx: NodeContext<Model>) -> Result<SummaryUpdate, BoxError> {
    ctx.deps().think(state.delay_ms, &ctx).await?;
    let sentences = state
        .text
        .split(['.', '!', '?'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(SummaryUpdate::default().sentences(sentences))
}

async fn score(state: Summary, ctx: NodeContext<Model>) -> Result<SummaryUpdate, BoxError> {
    ctx.deps().think(state.delay_ms, &ctx).await?;
    let scores = state
        .sentences
        .iter()
        .map(|s| s.split_whitespace().count())
        .collect();
    Ok(SummaryUpdate::default().scores(scores))
}

async fn compose(state: Summary, ctx: NodeContext<Model>) -> Result<SummaryUpdate, BoxError> {
    ctx.deps().think(state.delay_ms, &ctx).await?;
    let mut ranked: Vec<(usize, &String)> =
        state.scores.iter().copied().zip(&state.sentences).collect();
    ranked.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    let kept: Vec<&str> = ranked
        .iter()
        .take(state.keep)
        .map(|(_, s)| s.as_str())
        .collect();
    Ok(SummaryUpdate::default().summary(Some(format!("{}.", kept.join(". ")))))
}
