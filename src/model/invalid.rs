//! Why a value given as text (an id, a status) is not one.

use std::fmt;

/// A value that does not parse: which kind of value, the text given, and what was expected.
/// It converts into [`Error::InvalidInput`](crate::Error::InvalidInput) (400).
///
/// ```
/// let err = "done".parse::<workflows::RunStatus>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"invalid status "done": expected one of pending, running, waiting, completed, failed, cancelled"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    /// What the value is, e.g. `run id` or `status`.
    pub what: &'static str,
    /// The text given.
    pub value: String,
    /// What is wrong with it, and what would be accepted.
    pub reason: String,
}

impl InvalidValue {
    pub(crate) fn new(what: &'static str, value: &str, reason: impl fmt::Display) -> Self {
        InvalidValue {
            what,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {:?}: {}", self.what, self.value, self.reason)
    }
}

impl std::error::Error for InvalidValue {}
