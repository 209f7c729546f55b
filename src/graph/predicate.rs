//! Conditions on edges. Each has a name, which is what a decision records.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::State;

/// A named condition on a state, deciding whether an edge is taken.
///
/// A typed predicate is a closure on the workflow's own state:
///
/// ```
/// use workflows::Predicate;
/// struct Summary { summary: String }
/// let too_long = Predicate::new("too_long", |s: &Summary| s.summary.len() > 200);
/// assert!(!too_long.test(&Summary { summary: "short".into() }));
/// assert_eq!(too_long.name(), "too_long");
/// ```
///
/// On the JSON [`State`], ready-made ones read keys:
///
/// ```
/// use workflows::{Predicate, State};
/// let ready = Predicate::key_equals("status", "ready").and(Predicate::key_exists("draft"));
/// assert_eq!(ready.name(), r#"and(key_equals(status, "ready"), key_exists(draft))"#);
/// let state = State::new().with("status", "ready").with("draft", "...");
/// assert!(ready.test(&state));
/// assert!(!ready.not().test(&state));
/// ```
pub struct Predicate<S = State> {
    name: Cow<'static, str>,
    test: Arc<dyn Fn(&S) -> bool + Send + Sync>,
}

impl<S> Clone for Predicate<S> {
    fn clone(&self) -> Self {
        Predicate {
            name: self.name.clone(),
            test: Arc::clone(&self.test),
        }
    }
}

impl<S: 'static> Predicate<S> {
    /// A custom predicate. `name` should say what it checks: decisions record it.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        test: impl Fn(&S) -> bool + Send + Sync + 'static,
    ) -> Self {
        Predicate {
            name: name.into(),
            test: Arc::new(test),
        }
    }

    /// Always holds.
    pub fn always() -> Self {
        Predicate::new("always", |_| true)
    }

    /// Holds when `self` does not.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Self {
        Predicate::new(format!("not({})", self.name), move |s| !self.test(s))
    }

    /// Holds when both hold.
    pub fn and(self, other: Predicate<S>) -> Self {
        Predicate::new(format!("and({}, {})", self.name, other.name), move |s| {
            self.test(s) && other.test(s)
        })
    }

    /// Holds when either holds.
    pub fn or(self, other: Predicate<S>) -> Self {
        Predicate::new(format!("or({}, {})", self.name, other.name), move |s| {
            self.test(s) || other.test(s)
        })
    }
}

impl<S> Predicate<S> {
    /// Its name, as recorded in `decisions.predicate_name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it holds for `state`.
    pub fn test(&self, state: &S) -> bool {
        (self.test)(state)
    }
}

impl Predicate<State> {
    /// Holds when the state has `key` (even if `null`).
    pub fn key_exists(key: impl Into<String>) -> Self {
        let key = key.into();
        Predicate::new(format!("key_exists({key})"), move |s: &State| {
            s.contains(&key)
        })
    }

    /// Holds when the state's `key` equals `value`.
    pub fn key_equals(key: impl Into<String>, value: impl Into<Value>) -> Self {
        let (key, value) = (key.into(), value.into());
        Predicate::new(format!("key_equals({key}, {value})"), move |s: &State| {
            s.value(&key) == Some(&value)
        })
    }
}

impl<S> fmt::Debug for Predicate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Predicate").field(&self.name).finish()
    }
}
