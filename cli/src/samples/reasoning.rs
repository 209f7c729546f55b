//! `reasoning`: conditional routing. Questions with numbers go to `calculate`, others to
//! `reflect`; both end at `answer`.

use workflows::{BoxError, GraphBuilder, NodeContext, Params, Predicate, Runtime, State, workflow};

use super::{initial_state, think};

#[workflow(
    name = "reasoning",
    description = "Conditional: routes a `question` with numbers to calculate, others to reflect"
)]
async fn reasoning(
    graph: &mut GraphBuilder,
    _runtime: &Runtime,
    params: Params,
) -> Result<State, BoxError> {
    let question: String = params.require("question")?;
    graph
        .add_node("analyze", analyze)
        .add_node("calculate", calculate)
        .add_node("reflect", reflect)
        .add_node("answer", answer)
        .add_conditional_edge(
            "analyze",
            "calculate",
            Predicate::key_equals("kind", "arithmetic"),
        )
        .add_conditional_edge("analyze", "reflect", Predicate::always())
        .add_edge("calculate", "answer")
        .add_edge("reflect", "answer")
        .set_entry_point("analyze")
        .add_exit_point("answer");
    Ok(initial_state(&params)?.with("question", question))
}

fn numbers(text: &str) -> Vec<i64> {
    text.split(|c: char| !c.is_ascii_digit() && c != '-')
        .filter_map(|t| t.parse().ok())
        .collect()
}

async fn analyze(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    think(&state, &ctx).await?;
    let question: String = state.require("question")?;
    let kind = if numbers(&question).is_empty() {
        "open"
    } else {
        "arithmetic"
    };
    state.set("kind", kind);
    Ok(state)
}

async fn calculate(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    think(&state, &ctx).await?;
    let question: String = state.require("question")?;
    let sum: i64 = numbers(&question).iter().sum();
    state.set("reasoning", format!("the numbers add up to {sum}"));
    Ok(state)
}

async fn reflect(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    think(&state, &ctx).await?;
    let question: String = state.require("question")?;
    let words = question.split_whitespace().count();
    state.set("reasoning", format!("an open question of {words} words"));
    Ok(state)
}

async fn answer(mut state: State, ctx: NodeContext) -> Result<State, BoxError> {
    think(&state, &ctx).await?;
    let reasoning: String = state.require("reasoning")?;
    state.set("answer", format!("After thinking: {reasoning}."));
    Ok(state)
}
