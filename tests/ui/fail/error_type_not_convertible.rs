use workflows::{GraphBuilder, Params, Runtime, State, workflow};

struct NotAnError;

#[workflow(name = "bad-error", description = "Its error type is not an error")]
fn f(_graph: &mut GraphBuilder, _runtime: &Runtime, _params: Params) -> Result<State, NotAnError> {
    Ok(State::new())
}

fn main() {}
