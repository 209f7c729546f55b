use workflows::{BoxError, GraphBuilder, Params, Runtime, State, workflow};

#[workflow(name = "nodesc")]
async fn f(graph: &mut GraphBuilder, _runtime: &Runtime, _params: Params) -> Result<State, BoxError> {
    graph.add_node("a", |s: State, _| async move { Ok(s) }).set_entry_point("a").add_exit_point("a");
    Ok(State::new())
}

fn main() {}
