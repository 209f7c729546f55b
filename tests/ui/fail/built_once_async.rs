use workflows::{BoxError, GraphBuilder, workflow};

#[workflow(name = "async-once", description = "A graph built once cannot be async")]
async fn f(_graph: &mut GraphBuilder) -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
