//! The registered workflows: those declared with `#[workflow]` (collected at compile time
//! into [`WORKFLOWS`]) and those added at run time (for tests and plugins).

use std::collections::BTreeMap;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::erased::{ErasedWorkflow, Instance};
use super::json::{Factory, JsonWorkflow};
use super::typed::{BuiltOnce, GraphFn, PerRun, TypedFactory};
use crate::error::{Error, Result};
use crate::graph::{BoxError, WorkflowState};
use crate::model::WorkflowInfo;
use crate::workflow::params::Params;
use crate::workflow::runtime::{Dependency, Runtime};

/// What a workflow factory may return: `Result<S, E>` for any `E` that converts into
/// [`BoxError`] (a graph built once returns `Result<(), E>`). Used by the code
/// `#[workflow]` generates.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a workflow factory returns `Result<{S}, E>` with `E: Into<BoxError>`, not `{Self}`",
    label = "this return type"
)]
pub trait FactoryOutput<S> {
    /// The result with its error boxed.
    fn into_result(self) -> Result<S, BoxError>;
}

impl<S, E: Into<BoxError>> FactoryOutput<S> for Result<S, E> {
    fn into_result(self) -> Result<S, BoxError> {
        self.map_err(Into::into)
    }
}

/// A workflow's implementation, its types erased: what the code `#[workflow]` generates
/// makes.
#[doc(hidden)]
#[derive(Clone)]
pub struct WorkflowImpl(Arc<dyn ErasedWorkflow>);

/// A JSON workflow's implementation.
#[doc(hidden)]
pub fn json(factory: Factory) -> WorkflowImpl {
    WorkflowImpl(Arc::new(JsonWorkflow(factory)))
}

/// A typed workflow's implementation whose graph is built for each run.
#[doc(hidden)]
pub fn per_run<S, D, P>(factory: TypedFactory<S, D, P>) -> WorkflowImpl
where
    S: WorkflowState,
    D: Send + Sync + 'static,
    P: DeserializeOwned + JsonSchema + Send + 'static,
{
    WorkflowImpl(Arc::new(PerRun::new(factory)))
}

/// A typed workflow's implementation whose graph is built once, now.
#[doc(hidden)]
pub fn built_once<S, D, P>(declare: GraphFn<S, D>, initial: fn(P) -> S) -> WorkflowImpl
where
    S: WorkflowState,
    D: Send + Sync + 'static,
    P: DeserializeOwned + JsonSchema + Send + 'static,
{
    WorkflowImpl(Arc::new(BuiltOnce::new(declare, initial)))
}

/// A workflow declared with `#[workflow]`: what the [`WORKFLOWS`] slice holds. Its graph (if
/// built once) is built when a registry is made from it.
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct WorkflowDecl {
    name: &'static str,
    description: &'static str,
    make: fn() -> WorkflowImpl,
    file: &'static str,
    line: u32,
}

impl WorkflowDecl {
    #[doc(hidden)]
    pub const fn __at(
        name: &'static str,
        description: &'static str,
        make: fn() -> WorkflowImpl,
        file: &'static str,
        line: u32,
    ) -> Self {
        WorkflowDecl {
            name,
            description,
            make,
            file,
            line,
        }
    }

    /// The registered workflow, its graph built if it is built once.
    fn to_def(self) -> WorkflowDef {
        WorkflowDef {
            name: self.name,
            description: self.description,
            imp: (self.make)(),
            file: self.file,
            line: self.line,
        }
    }
}

/// Every workflow declared with `#[workflow]` in the crates linked into this binary.
///
/// Read it through [`Registry::from_compiled`], which also rejects duplicate names.
#[linkme::distributed_slice]
pub static WORKFLOWS: [WorkflowDecl];

/// A registered workflow: its name, description, implementation, and where it was declared.
#[derive(Clone)]
pub struct WorkflowDef {
    name: &'static str,
    description: &'static str,
    imp: WorkflowImpl,
    file: &'static str,
    line: u32,
}

impl WorkflowDef {
    /// A JSON workflow for run-time registration ([`Registry::register`]), whose graph
    /// `factory` builds for each run; its location is the caller's. A JSON workflow whose graph
    /// does not depend on its params is better registered with [`WorkflowDef::built_once`]
    /// (a `GraphBuilder<State>`): its graph is then built once, not for every run.
    ///
    /// ```
    /// use workflows::{GraphBuilder, Params, Registry, Runtime, State, WorkflowDef, BoxError};
    ///
    /// async fn noop(g: &mut GraphBuilder, _: &Runtime, _: Params) -> Result<State, BoxError> {
    ///     g.add_node("only", |s: State, _| async move { Ok(s) })
    ///         .set_entry_point("only")
    ///         .add_exit_point("only");
    ///     Ok(State::new())
    /// }
    ///
    /// let mut registry = Registry::new();
    /// registry.register(WorkflowDef::new("noop", "Does nothing", |g, rt, p| Box::pin(noop(g, rt, p)))).unwrap();
    /// assert_eq!(registry.list()[0].name, "noop");
    /// ```
    #[track_caller]
    pub fn new(name: &'static str, description: &'static str, factory: Factory) -> Self {
        WorkflowDef::at_caller(name, description, json(factory))
    }

    /// A typed workflow whose graph is built once, now, by `declare`, and whose runs start
    /// from `initial(params)`, for run-time registration; its location is the caller's.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use workflows::{GraphBuilder, NodeContext, Registry, WorkflowDef, WorkflowState};
    ///
    /// #[derive(Deserialize, schemars::JsonSchema)]
    /// struct Start { from: u32 }
    ///
    /// #[derive(Clone, Serialize, Deserialize, WorkflowState)]
    /// struct Count { left: u32 }
    ///
    /// let def = WorkflowDef::built_once(
    ///     "countdown",
    ///     "Counts down to 0",
    ///     |g: &mut GraphBuilder<Count>| {
    ///         let tick = g.node("tick", |c: Count, _: NodeContext| async move {
    ///             Ok(CountUpdate::default().left(c.left.saturating_sub(1)))
    ///         });
    ///         g.start_at(tick).end_at(tick);
    ///         Ok(())
    ///     },
    ///     |start: Start| Count { left: start.from },
    /// );
    /// let mut registry = Registry::new();
    /// registry.register(def).unwrap();
    /// ```
    ///
    /// The state may be JSON [`State`](crate::State), with params of any JSON:
    ///
    /// ```
    /// use workflows::{GraphBuilder, Registry, State, WorkflowDef};
    ///
    /// let def = WorkflowDef::built_once(
    ///     "greet",
    ///     "Says hello",
    ///     |g: &mut GraphBuilder| {
    ///         g.add_node("hello", |s: State, _| async move { Ok(s.with("said", "hello")) })
    ///             .set_entry_point("hello")
    ///             .add_exit_point("hello");
    ///         Ok(())
    ///     },
    ///     |_: serde_json::Value| State::new(),
    /// );
    /// let mut registry = Registry::new();
    /// registry.register(def).unwrap();
    /// assert_eq!(registry.get("greet").unwrap().description(), "Says hello");
    /// ```
    #[track_caller]
    pub fn built_once<S, D, P>(
        name: &'static str,
        description: &'static str,
        declare: GraphFn<S, D>,
        initial: fn(P) -> S,
    ) -> Self
    where
        S: WorkflowState,
        D: Send + Sync + 'static,
        P: DeserializeOwned + JsonSchema + Send + 'static,
    {
        WorkflowDef::at_caller(name, description, built_once(declare, initial))
    }

    /// A typed workflow whose graph `factory` builds for each run from its params, for
    /// run-time registration; its location is the caller's.
    #[track_caller]
    pub fn per_run<S, D, P>(
        name: &'static str,
        description: &'static str,
        factory: TypedFactory<S, D, P>,
    ) -> Self
    where
        S: WorkflowState,
        D: Send + Sync + 'static,
        P: DeserializeOwned + JsonSchema + Send + 'static,
    {
        WorkflowDef::at_caller(name, description, per_run(factory))
    }

    #[track_caller]
    fn at_caller(name: &'static str, description: &'static str, imp: WorkflowImpl) -> Self {
        let at = Location::caller();
        WorkflowDef {
            name,
            description,
            imp,
            file: at.file(),
            line: at.line(),
        }
    }

    /// Its unique name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What it does.
    pub fn description(&self) -> &'static str {
        self.description
    }

    /// Where it was declared or registered, as `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// Its name and description.
    pub fn info(&self) -> WorkflowInfo {
        WorkflowInfo {
            name: self.name.to_owned(),
            description: self.description.to_owned(),
        }
    }

    /// The JSON Schema of its params; `None` for a JSON workflow, which takes any object.
    pub fn params_schema(&self) -> Option<Value> {
        self.imp.0.params_schema()
    }

    /// Whether `params` fit its params type: [`Error::InvalidInput`] (400) naming the field
    /// and what was expected if not.
    pub fn check_params(&self, params: &Params) -> Result<()> {
        self.imp.0.check_params(params)
    }

    /// The type of dependency its nodes reach, if any.
    pub(crate) fn dependency(&self) -> Option<Dependency> {
        self.imp.0.dependency()
    }

    /// The graph, initial state and dependencies of a run with `params`.
    pub(crate) async fn instantiate(&self, runtime: &Runtime, params: Params) -> Result<Instance> {
        self.imp.0.instantiate(self.name, runtime, params).await
    }
}

impl fmt::Debug for WorkflowDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowDef")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("location", &self.location())
            .finish()
    }
}

/// Why `name` cannot name a workflow, if it cannot. The `#[workflow]` macro applies the same
/// rule at compile time: names appear in URLs and on command lines.
fn name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => Some("the name is empty"),
        Some(c) if !c.is_ascii_alphabetic() => Some("the name must start with an ASCII letter"),
        _ if name.len() > 64 => Some("the name is longer than 64 characters"),
        _ if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) => {
            Some("the name may hold only ASCII letters, digits, '-', '_' and '.'")
        }
        _ => None,
    }
}

/// The workflows a process can run, by name.
///
/// ```
/// let registry = workflows::Registry::from_compiled()?;
/// for info in registry.list() {
///     println!("{}: {}", info.name, info.description);
/// }
/// # Ok::<(), workflows::Error>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Registry {
    workflows: BTreeMap<&'static str, WorkflowDef>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Every workflow declared with `#[workflow]` in the crates linked into this binary,
    /// with the graphs that do not depend on params built and checked now.
    ///
    /// A crate whose workflows are missing was not linked: nothing in the binary names it.
    /// Add `use that_crate as _;` to the binary. Two workflows with one name are an error
    /// naming both declarations; a graph that does not build is
    /// [`Error::InvalidGraph`] (or [`Error::Factory`]) naming its workflow.
    pub fn from_compiled() -> Result<Self> {
        let mut registry = Registry::new();
        for decl in WORKFLOWS.iter() {
            registry.register(decl.to_def())?;
        }
        Ok(registry)
    }

    /// Adds a workflow. Its name must be unused and well-formed (ASCII letters, digits, `-`,
    /// `_` and `.`, starting with a letter, at most 64 characters), its description not
    /// empty, and its graph (if built once) valid.
    pub fn register(&mut self, def: WorkflowDef) -> Result<()> {
        let problem = name_problem(def.name).or_else(|| {
            def.description
                .trim()
                .is_empty()
                .then_some("the description is empty")
        });
        if let Some(reason) = problem {
            return Err(Error::InvalidWorkflow {
                name: def.name.to_owned(),
                location: def.location(),
                reason: reason.to_owned(),
            });
        }
        def.imp.0.check(def.name)?;
        if let Some(first) = self.workflows.get(def.name) {
            return Err(Error::DuplicateWorkflow {
                name: def.name.to_owned(),
                first: first.location(),
                second: def.location(),
            });
        }
        self.workflows.insert(def.name, def);
        Ok(())
    }

    /// The workflow called `name`; [`Error::WorkflowNotFound`] (404) if there is none.
    pub fn get(&self, name: &str) -> Result<&WorkflowDef> {
        self.workflows
            .get(name)
            .ok_or_else(|| Error::WorkflowNotFound {
                name: name.to_owned(),
            })
    }

    /// The workflows, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &WorkflowDef> {
        self.workflows.values()
    }

    /// Every workflow's name and description, sorted by name.
    pub fn list(&self) -> Vec<WorkflowInfo> {
        self.workflows.values().map(WorkflowDef::info).collect()
    }

    /// How many workflows are registered.
    pub fn len(&self) -> usize {
        self.workflows.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.workflows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::name_problem;

    #[test]
    fn well_formed_names_pass() {
        for name in [
            "a",
            "summarize",
            "doc-review.v2",
            "classify_2",
            &"x".repeat(64),
        ] {
            assert_eq!(name_problem(name), None, "{name}");
        }
    }

    #[test]
    fn malformed_names_are_refused_with_a_reason() {
        for name in [
            "",
            "2fast",
            "-x",
            "has space",
            "a/b",
            "émoji",
            &"x".repeat(65),
        ] {
            assert!(name_problem(name).is_some(), "{name}");
        }
    }
}
