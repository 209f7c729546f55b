use workflows::{GraphBuilder, Params, Runtime, workflow};

#[workflow(name = "unit", description = "Returns nothing")]
async fn f(_graph: &mut GraphBuilder, _runtime: &Runtime, _params: Params) {}

fn main() {}
