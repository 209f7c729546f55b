use workflows::{GraphBuilder, Params, Runtime, State, workflow};

#[workflow(name = "no-result", description = "Returns a State, not a Result")]
async fn f(_graph: &mut GraphBuilder, _runtime: &Runtime, _params: Params) -> State {
    State::new()
}

fn main() {}
