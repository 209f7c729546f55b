//! `reasoning`: conditional routing. Questions with numbers go to `calculate`, others to
//! `reflect`; both end at `answer`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use workflows::{BoxError, GraphBuilder, NodeContext, Predicate, WorkflowState, workflow};

use super::{DelayMs, Model};

/// What a run of `reasoning` is given.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasoningParams {
    /// The question to answer.
    question: String,
    #[serde(default)]
    delay_ms: DelayMs,
}

/// What kind of question it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// It holds numbers to add.
    Arithmetic,
    /// Anything else.
    Open,
}

/// A run's state: the question, its kind, the reasoning and the answer.
#[derive(Debug, Clone, Serialize, Deserialize, WorkflowState)]
pub(crate) struct Reasoning {
    question: String,
    delay_ms: DelayMs,
    kind: Option<Kind>,
    reasoning: Option<String>,
    answer: Option<String>,
}

impl From<ReasoningParams> for Reasoning {
    fn from(params: ReasoningParams) -> Self {
        Reasoning {
            question: params.question,
            delay_ms: params.delay_ms,
            kind: None,
            reasoning: None,
            answer: None,
        }
    }
}

#[workflow(
    name = "reasoning",
    description = "Conditional: routes a `question` with numbers to calculate, others to reflect",
    params = ReasoningParams
)]
fn reasoning(graph: &mut GraphBuilder<Reasoning, Model>) -> Result<(), BoxError> {
    let analyze = graph.node("analyze", analyze);
    let calculate = graph.node("calculate", calculate);
    let reflect = graph.node("reflect", reflect);
    let answer = graph.node("answer", answer);
    let arithmetic = Predicate::new("arithmetic", |s: &Reasoning| {
        s.kind == Some(Kind::Arithmetic)
    });
    graph
        .start_at(analyze)
        .edge_if(analyze, calculate, arithmetic)
        .edge(analyze, reflect)
        .edge(calculate, answer)
        .edge(reflect, answer)
        .end_at(answer);
    Ok(())
}

fn numbers(text: &str) -> Vec<i64> {
    text.split(|c: char| !c.is_ascii_digit() && c != '-')
        .filter_map(|t| t.parse().ok())
        .collect()
}

async fn analyze(state: Reasoning, ctx: NodeContext<Model>) -> Result<ReasoningUpdate, BoxError> {
    ctx.deps().think(state.delay_ms, &ctx).await?;
    let kind = if numbers(&state.question).is_empty() {
        Kind::Open
    } else {
        Kind::Arithmetic
    };
    Ok(ReasoningUpdate::default().kind(Some(kind)))
}

async fn calculate(state: Reasoning, ctx: NodeContext<Model>) -> Result<ReasoningUpdate, BoxError> {
    ctx.deps().think(state.delay_ms, &ctx).await?;
    let sum: i64 = numbers(&state.question).iter().sum();
    Ok(ReasoningUpdate::default().reasoning(Some(format!("the numbers add up to {sum}"))))
}

async fn reflect(state: Reasoning, ctx: NodeContext<Model>) -> Result<ReasoningUpdate, BoxError> {
    ctx.deps().think(state.delay_ms, &ctx).await?;
    let words = state.question.split_whitespace().count();
    Ok(ReasoningUpdate::default().reasoning(Some(format!("an open question of {words} words"))))
}

async fn answer(state: Reasoning, ctx: NodeContext<Model>) -> Result<ReasoningUpdate, BoxError> {
    ctx.deps().think(state.delay_ms, &ctx).await?;
    let reasoning = state
        .reasoning
        .ok_or("answer needs reasoning, and there is none")?;
    Ok(ReasoningUpdate::default().answer(Some(format!("After thinking: {reasoning}."))))
}
