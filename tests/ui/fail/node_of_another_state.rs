use serde::{Deserialize, Serialize};
use workflows::{BoxError, GraphBuilder, NodeContext, WorkflowState, workflow};

#[derive(Clone, Default, Serialize, Deserialize, WorkflowState)]
struct Mine {
    n: u32,
}

#[derive(Clone, Default, Serialize, Deserialize, WorkflowState)]
struct Other {
    n: u32,
}

async fn other_node(_: Other, _: NodeContext) -> Result<OtherUpdate, BoxError> {
    Ok(OtherUpdate::default())
}

#[workflow(name = "mixed", description = "Adds a node of another state type")]
fn mixed(graph: &mut GraphBuilder<Mine>) -> Result<(), BoxError> {
    let node = graph.node("other", other_node);
    graph.start_at(node).end_at(node);
    Ok(())
}

fn main() {}
