//! `approve`: an approval gate. `draft` writes a post about `topic` and asks `approve` (a
//! person answers `true` or `false`); the run waits holding no worker; `review` reads the
//! answer, and an approved post is published.

use serde_json::json;
use workflows::{BoxError, GraphBuilder, NodeContext, Params, Predicate, Runtime, State, workflow};

#[workflow(
    name = "approve",
    description = "Approval gate: drafts a post about `topic`, waits for an answer to `approve` (true/false), publishes if approved"
)]
async fn approve(
    graph: &mut GraphBuilder,
    _runtime: &Runtime,
    params: Params,
) -> Result<State, BoxError> {
    let topic: String = params.require("topic")?;
    let draft = graph.node("draft", |state: State, ctx: NodeContext| async move {
        let text = format!("A post about {}", state.require::<String>("topic")?);
        // Typed: an answer that is not a boolean is refused, and the run keeps waiting.
        ctx.interrupt_for::<bool>("approve", json!({"draft": text, "answer": "true or false"}))?;
        Ok(state.with("draft", text))
    });
    let review = graph.node("review", |state: State, ctx: NodeContext| async move {
        let approved: Option<bool> = ctx.answer("approve")?;
        Ok(state.with("approved", approved == Some(true)))
    });
    let publish = graph.node("publish", |state: State, _| async move {
        Ok(state.with("published", true))
    });
    graph
        .start_at(draft)
        .edge(draft, review)
        .edge_if(review, publish, Predicate::key_equals("approved", true))
        .end_at(review)
        .end_at(publish);
    Ok(State::new().with("topic", topic))
}
