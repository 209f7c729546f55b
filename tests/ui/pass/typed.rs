//! Typed workflows register in both forms: a graph built once (with and without params) and
//! a graph built for each run from typed params.
use serde::{Deserialize, Serialize};
use workflows::{BoxError, GraphBuilder, NodeContext, Registry, WorkflowState, workflow};

#[derive(Deserialize, workflows::schemars::JsonSchema)]
struct Start {
    from: u32,
}

#[derive(Clone, Default, Serialize, Deserialize, WorkflowState)]
struct Count {
    left: u32,
    #[state(append)]
    seen: Vec<u32>,
}

impl From<Start> for Count {
    fn from(start: Start) -> Self {
        Count { left: start.from, seen: Vec::new() }
    }
}

async fn tick(count: Count, _: NodeContext) -> Result<CountUpdate, BoxError> {
    Ok(CountUpdate::default().left(count.left.saturating_sub(1)).seen(vec![count.left]))
}

#[workflow(name = "once", description = "Built once, params into the state", params = Start)]
fn once(graph: &mut GraphBuilder<Count>) -> Result<(), BoxError> {
    let tick = graph.node("tick", tick);
    graph.start_at(tick).end_at(tick);
    Ok(())
}

#[workflow(name = "once-no-params", description = "Built once, from the default state")]
fn once_no_params(graph: &mut GraphBuilder<Count>) -> Result<(), BoxError> {
    let tick = graph.node("tick", tick);
    graph.start_at(tick).end_at(tick);
    Ok(())
}

#[workflow(name = "per-run", description = "Built for each run")]
async fn per_run(graph: &mut GraphBuilder<Count>, start: Start) -> Result<Count, BoxError> {
    let tick = graph.node("tick", tick);
    graph.start_at(tick).end_at(tick);
    Ok(start.into())
}

fn main() {
    let registry = Registry::from_compiled().unwrap();
    let names: Vec<_> = registry.list().into_iter().map(|w| w.name).collect();
    assert_eq!(names, ["once", "once-no-params", "per-run"]);
    assert!(registry.get("once").unwrap().params_schema().is_some());
}
