use workflows::{BoxError, GraphBuilder, State, workflow};

#[workflow(name = "two-args", description = "Forgets the params")]
async fn f(graph: &mut GraphBuilder, _runtime: &workflows::Runtime) -> Result<State, BoxError> {
    let _ = graph;
    Ok(State::new())
}

fn main() {}
