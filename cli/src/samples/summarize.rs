//! `summarize`: a linear graph. Splits a text into sentences, scores them, keeps the best.

use workflows::{BoxError, GraphBuilder, NodeContext, Params, Runtime, State, workflow};

use super::{initial_state, think};

#[workflow(
    name = "summarize",
    description = "Linear: splits `text` into sentences, scores them and keeps the `keep` best (default 2)"
)]
async fn summarize(
    graph: &mut GraphBuilder,
    _runtime: &Runtime,
    params: Params,
) -> Result<State, BoxError> {
    let text: String = params.require("text")?;
    let keep: u64 = params.get("keep")?.unwrap_or(2);
    graph
        .add_node("split", split)
        .add_node("score", score)
        .add_node("compose", compose)
        .add_edge("split", "score")
        .add_edge("score", "compose")
        .set_entry_point("split")
        .add_exit_point("compose");
    Ok(initial_state(&params)?
        .with("text", text)
        .with("keep", keep))
}

async fn split(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    think(&state, &ctx).await?;
    let text: String = state.require("text")?;
    let sentences: Vec<String> = text
        .split(['.', '!', '?'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    state.set("sentences", sentences);
    Ok(state)
}

async fn score(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    think(&state, &ctx).await?;
    let sentences: Vec<String> = state.require("sentences")?;
    let scores: Vec<usize> = sentences
        .iter()
        .map(|s| s.split_whitespace().count())
        .collect();
    state.set("scores", scores);
    Ok(state)
}

async fn compose(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    think(&state, &ctx).await?;
    let sentences: Vec<String> = state.require("sentences")?;
    let scores: Vec<usize> = state.require("scores")?;
    let keep: usize = state.require("keep")?;
    let mut ranked: Vec<(usize, &String)> = scores.into_iter().zip(&sentences).collect();
    ranked.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    let summary: Vec<&str> = ranked.iter().take(keep).map(|(_, s)| s.as_str()).collect();
    state.set("summary", format!("{}.", summary.join(". ")));
    Ok(state)
}
