//! The dependencies workflows need (model clients, stores, loggers), held by type.
//!
//! The Go original passes a fixed `Systems` struct (agents, documents, images, logger). Here
//! any `Send + Sync + 'static` value can be added. A typed workflow declares the type its
//! nodes reach (`GraphBuilder<S, D>`: the `D`), which the executor's build checks is here; a
//! JSON workflow's factory asks for what it needs by type.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::erased::AnyDeps;

/// A typed container of shared dependencies, cheap to clone.
///
/// ```
/// use workflows::Runtime;
///
/// struct Llm { model: &'static str }
///
/// let runtime = Runtime::builder().with(Llm { model: "small" }).build();
/// assert_eq!(runtime.get::<Llm>().unwrap().model, "small");
/// assert_eq!(
///     runtime.get::<String>().unwrap_err().to_string(),
///     "the runtime has no `alloc::string::String`; add one with Runtime::builder().with(value) \
///      before running workflows that need it"
/// );
/// ```
#[derive(Clone, Default)]
pub struct Runtime {
    values: Arc<HashMap<TypeId, Entry>>,
}

#[derive(Clone)]
struct Entry {
    type_name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
}

impl Runtime {
    /// An empty runtime.
    pub fn new() -> Self {
        Runtime::default()
    }

    /// Starts a runtime to add dependencies to.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The dependency of type `T`; an error naming `T` if there is none.
    pub fn get<T: Any + Send + Sync>(&self) -> Result<Arc<T>> {
        self.try_get().ok_or(Error::MissingDependency {
            type_name: type_name::<T>(),
            workflow: None,
        })
    }

    /// The dependency of type `T`, if there is one.
    pub fn try_get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let entry = self.values.get(&TypeId::of::<T>())?;
        Arc::clone(&entry.value).downcast::<T>().ok()
    }

    /// The value `dependency` stands for, if there is one.
    pub(crate) fn get_dependency(&self, dependency: Dependency) -> Option<AnyDeps> {
        self.values
            .get(&dependency.type_id)
            .map(|entry| Arc::clone(&entry.value))
    }
}

/// A type of dependency a workflow's nodes reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dependency {
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
}

impl Dependency {
    /// The dependency of type `D`; `None` for `()`, which every runtime provides.
    pub(crate) fn of<D: Any>() -> Option<Dependency> {
        (TypeId::of::<D>() != TypeId::of::<()>()).then(|| Dependency {
            type_id: TypeId::of::<D>(),
            type_name: type_name::<D>(),
        })
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.values.values().map(|e| e.type_name).collect();
        names.sort_unstable();
        f.debug_struct("Runtime").field("holds", &names).finish()
    }
}

/// Collects the dependencies of a [`Runtime`].
#[derive(Default)]
pub struct RuntimeBuilder {
    values: HashMap<TypeId, Entry>,
}

impl RuntimeBuilder {
    /// Adds `value`, replacing any earlier value of the same type.
    pub fn with<T: Any + Send + Sync>(self, value: T) -> Self {
        self.with_arc(Arc::new(value))
    }

    /// Adds a value that is already shared.
    pub fn with_arc<T: Any + Send + Sync>(mut self, value: Arc<T>) -> Self {
        self.values.insert(
            TypeId::of::<T>(),
            Entry {
                type_name: type_name::<T>(),
                value,
            },
        );
        self
    }

    /// The finished runtime.
    pub fn build(self) -> Runtime {
        Runtime {
            values: Arc::new(self.values),
        }
    }
}
