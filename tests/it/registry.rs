//! Registration with `#[workflow]` from an integration test crate, lookup, listing,
//! duplicates, and building the graphs factories declare.

use http::StatusCode;
use serde_json::json;
use workflows::{
    BoxError, Error, GraphBuilder, Params, Predicate, Registry, Runtime, State, WorkflowDef,
    run_in_memory, workflow,
};

#[workflow(
    name = "it-linear",
    description = "Two nodes in a row, for the registry tests"
)]
async fn linear(
    graph: &mut GraphBuilder,
    _runtime: &Runtime,
    params: Params,
) -> Result<State, BoxError> {
    let topic: String = params.require("topic")?;
    graph
        .add_node("draft", |state: State, _ctx| async move {
            let topic: String = state.require("topic")?;
            Ok(state.with("draft", format!("about {topic}")))
        })
        .add_node("review", |state: State, _ctx| async move {
            Ok(state.with("approved", true))
        })
        .add_edge("draft", "review")
        .set_entry_point("draft")
        .add_exit_point("review");
    Ok(State::new().with("topic", topic))
}

struct Greeting(&'static str);

#[workflow(
    name = "it-sync",
    description = "A factory that is not async and needs a Greeting"
)]
fn sync_factory(
    graph: &mut GraphBuilder,
    runtime: &Runtime,
    _params: Params,
) -> Result<State, Error> {
    let greeting = runtime.get::<Greeting>()?;
    graph
        .add_node("only", |state: State, _ctx| async move { Ok(state) })
        .add_conditional_edge("only", "only", Predicate::key_exists("again"))
        .set_entry_point("only")
        .add_exit_point("only");
    Ok(State::new().with("greeting", greeting.0))
}

#[workflow(
    name = "it-broken",
    description = "Declares a graph without an exit point"
)]
async fn broken(
    graph: &mut GraphBuilder,
    _runtime: &Runtime,
    _params: Params,
) -> Result<State, BoxError> {
    graph
        .add_node("a", |state: State, _ctx| async move { Ok(state) })
        .set_entry_point("a");
    Ok(State::new())
}

fn compiled() -> Registry {
    Registry::from_compiled().unwrap()
}

#[test]
fn workflows_declared_in_this_crate_are_registered() {
    let registry = compiled();
    let def = registry.get("it-linear").unwrap();
    assert_eq!(def.name(), "it-linear");
    assert_eq!(
        def.description(),
        "Two nodes in a row, for the registry tests"
    );
    assert!(
        def.location().starts_with("tests/it/registry.rs:"),
        "{}",
        def.location()
    );
}

#[test]
fn the_listing_is_sorted_by_name() {
    let names: Vec<_> = compiled().list().into_iter().map(|w| w.name).collect();
    assert_eq!(names, ["it-broken", "it-linear", "it-sync"]);
}

#[test]
fn an_unknown_workflow_is_a_404_naming_it() {
    let err = compiled().get("nope").unwrap_err();
    assert!(matches!(&err, Error::WorkflowNotFound { name } if name == "nope"));
    assert_eq!(err.status(), StatusCode::NOT_FOUND);
    assert!(err.to_string().contains(r#""nope""#), "{err}");
}

#[tokio::test]
async fn a_factory_builds_a_valid_graph_and_the_initial_state() {
    let registry = compiled();
    let def = registry.get("it-linear").unwrap();
    let run = run_in_memory(def, &Runtime::new(), json!({"topic": "rust"}))
        .await
        .unwrap();
    let path: Vec<_> = run.steps.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(path, ["draft", "review"]);
    assert_eq!(run.state.require::<String>("draft").unwrap(), "about rust");
    assert_eq!(run.state.require::<String>("topic").unwrap(), "rust");
}

#[tokio::test]
async fn a_factory_error_names_the_workflow_and_the_cause() {
    let registry = compiled();
    let def = registry.get("it-linear").unwrap();
    let err = run_in_memory(def, &Runtime::new(), json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Factory { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        r#"workflow "it-linear" could not be set up: params key "topic": required but not given"#
    );
}

#[tokio::test]
async fn a_sync_factory_gets_its_dependencies_from_the_runtime() {
    let registry = compiled();
    let def = registry.get("it-sync").unwrap();
    let err = run_in_memory(def, &Runtime::new(), json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("registry::Greeting"), "{err}");

    let runtime = Runtime::builder().with(Greeting("hi")).build();
    let run = run_in_memory(def, &runtime, json!({})).await.unwrap();
    assert_eq!(run.state.require::<String>("greeting").unwrap(), "hi");
}

#[tokio::test]
async fn an_invalid_graph_is_reported_with_its_workflow() {
    let registry = compiled();
    let def = registry.get("it-broken").unwrap();
    let err = run_in_memory(def, &Runtime::new(), json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidGraph { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(
            r#"workflow "it-broken" built an invalid graph: the graph has no exit point"#
        ),
        "{err}"
    );
}

fn noop_factory(
    _: &mut GraphBuilder,
    _: &Runtime,
    _: Params,
) -> workflows::BoxFuture<'static, Result<State, BoxError>> {
    Box::pin(async { Ok(State::new()) })
}

#[test]
fn a_second_workflow_with_one_name_is_an_error_naming_both_places() {
    let mut registry = compiled();
    let err = registry
        .register(WorkflowDef::new("it-linear", "an impostor", |g, r, p| {
            noop_factory(g, r, p)
        }))
        .unwrap_err();
    let Error::DuplicateWorkflow {
        name,
        first,
        second,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(name, "it-linear");
    assert!(first.starts_with("tests/it/registry.rs:"), "{first}");
    assert!(
        second.starts_with("tests/it/registry.rs:") && first != second,
        "{second}"
    );
    assert!(err.to_string().contains(first) && err.to_string().contains(second));
    assert_eq!(
        registry.get("it-linear").unwrap().description(),
        "Two nodes in a row, for the registry tests"
    );
}

#[test]
fn run_time_registration_checks_names_and_descriptions() {
    let mut registry = Registry::new();
    for (name, description, reason) in [
        ("", "d", "the name is empty"),
        ("has space", "d", "ASCII letters, digits"),
        ("9lives", "d", "start with an ASCII letter"),
        ("fine", "  ", "the description is empty"),
    ] {
        let err = registry
            .register(WorkflowDef::new(name, description, |g, r, p| {
                noop_factory(g, r, p)
            }))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidWorkflow { .. }), "{err:?}");
        assert!(err.to_string().contains(reason), "{err}");
    }
    assert!(registry.is_empty());
    registry
        .register(WorkflowDef::new(
            "plugin.v2",
            "Added at run time",
            |g, r, p| noop_factory(g, r, p),
        ))
        .unwrap();
    assert_eq!(registry.len(), 1);
}
