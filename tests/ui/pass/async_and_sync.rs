//! Both async and plain factories register, with any error type that converts to BoxError.
use workflows::{BoxError, Error, GraphBuilder, Params, Registry, Runtime, State, workflow};

#[workflow(name = "async-one", description = "An async factory")]
async fn async_one(graph: &mut GraphBuilder, _runtime: &Runtime, _params: Params) -> Result<State, BoxError> {
    graph.add_node("a", |s: State, _| async move { Ok(s) }).set_entry_point("a").add_exit_point("a");
    Ok(State::new())
}

#[workflow(name = "sync.two", description = "A plain factory returning the library's Error")]
fn sync_two(_graph: &mut GraphBuilder, runtime: &Runtime, _params: Params) -> Result<State, Error> {
    runtime.get::<String>()?;
    Ok(State::new())
}

fn main() {
    let names: Vec<_> = Registry::from_compiled().unwrap().list().into_iter().map(|w| w.name).collect();
    assert_eq!(names, ["async-one", "sync.two"]);
}
