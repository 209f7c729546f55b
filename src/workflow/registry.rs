//! The registered workflows: those declared with `#[workflow]` (collected at compile time
//! into [`WORKFLOWS`]) and those added at run time (for tests and plugins).

use std::collections::BTreeMap;
use std::fmt;
use std::panic::Location;

use crate::error::{Error, Result};
use crate::graph::{BoxError, BoxFuture, Graph, GraphBuilder, State};
use crate::model::WorkflowInfo;
use crate::workflow::params::Params;
use crate::workflow::runtime::Runtime;

/// The function behind a workflow: given a pre-configured graph builder, the runtime and the
/// run's params, it adds the nodes and edges and returns the initial state.
///
/// `#[workflow]` writes this wrapper for you around an ordinary (async) function.
pub type Factory =
    for<'a> fn(&'a mut GraphBuilder, &'a Runtime, Params) -> BoxFuture<'a, Result<State, BoxError>>;

/// What a workflow factory may return: `Result<State, E>` for any `E` that converts into
/// [`BoxError`]. Used by the code `#[workflow]` generates.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a workflow factory returns `Result<State, E>` with `E: Into<BoxError>`, not `{Self}`",
    label = "this return type"
)]
pub trait FactoryOutput {
    /// The result with its error boxed.
    fn into_result(self) -> Result<State, BoxError>;
}

impl<E: Into<BoxError>> FactoryOutput for Result<State, E> {
    fn into_result(self) -> Result<State, BoxError> {
        self.map_err(Into::into)
    }
}

/// Every workflow declared with `#[workflow]` in the crates linked into this binary.
///
/// Read it through [`Registry::from_compiled`], which also rejects duplicate names.
#[linkme::distributed_slice]
pub static WORKFLOWS: [WorkflowDef];

/// A registered workflow: its name, description, factory, and where it was declared.
#[derive(Clone, Copy)]
pub struct WorkflowDef {
    name: &'static str,
    description: &'static str,
    factory: Factory,
    file: &'static str,
    line: u32,
}

impl WorkflowDef {
    /// A workflow for run-time registration ([`Registry::register`]); its location is the
    /// caller's.
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
        let at = Location::caller();
        WorkflowDef::__at(name, description, factory, at.file(), at.line())
    }

    #[doc(hidden)]
    pub const fn __at(
        name: &'static str,
        description: &'static str,
        factory: Factory,
        file: &'static str,
        line: u32,
    ) -> Self {
        WorkflowDef {
            name,
            description,
            factory,
            file,
            line,
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

    /// Runs the factory on `builder` and validates the graph it declared.
    pub async fn build(
        &self,
        mut builder: GraphBuilder,
        runtime: &Runtime,
        params: Params,
    ) -> Result<(Graph, State)> {
        let state = (self.factory)(&mut builder, runtime, params)
            .await
            .map_err(|source| Error::Factory {
                workflow: self.name.to_owned(),
                source,
            })?;
        let graph = builder.build().map_err(|source| Error::InvalidGraph {
            workflow: self.name.to_owned(),
            source,
        })?;
        Ok((graph, state))
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

    /// Every workflow declared with `#[workflow]` in the crates linked into this binary.
    ///
    /// A crate whose workflows are missing was not linked: nothing in the binary names it.
    /// Add `use that_crate as _;` to the binary. Two workflows with one name are an error
    /// naming both declarations.
    pub fn from_compiled() -> Result<Self> {
        let mut registry = Registry::new();
        for def in WORKFLOWS.iter() {
            registry.register(*def)?;
        }
        Ok(registry)
    }

    /// Adds a workflow. Its name must be unused and well-formed (ASCII letters, digits, `-`,
    /// `_` and `.`, starting with a letter, at most 64 characters), and its description not
    /// empty.
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
