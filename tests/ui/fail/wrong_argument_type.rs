use workflows::{BoxError, GraphBuilder, Runtime, State, workflow};

#[workflow(name = "typed", description = "Takes params as a String")]
async fn f(_graph: &mut GraphBuilder, _runtime: &Runtime, _params: String) -> Result<State, BoxError> {
    Ok(State::new())
}

fn main() {}
