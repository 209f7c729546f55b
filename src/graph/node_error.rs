//! What a node's error says about trying again: retryable (a rate limit, a 5xx, a timeout)
//! or fatal (bad input, a bug).

use std::fmt;

use super::BoxError;

/// Whether a failed attempt at a node may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeErrorKind {
    /// A transient failure: the node's [`RetryPolicy`](crate::RetryPolicy) may try again.
    Retryable,
    /// Trying again would fail again: the run fails at once.
    Fatal,
}

/// A node's error marked [retryable](NodeError::retryable) or [fatal](NodeError::fatal).
///
/// Nodes return [`BoxError`], so `?` works on any error; an error that is not a `NodeError`
/// is fatal, unless the node's policy says otherwise ([`RetryPolicy::retry_on`]). Mark the
/// transient ones where they happen:
///
/// ```
/// use workflows::{BoxError, NodeError};
///
/// fn call_model(rate_limited: bool) -> Result<String, std::io::Error> {
///     if rate_limited {
///         Err(std::io::Error::other("429 Too Many Requests"))
///     } else {
///         Ok("a draft".into())
///     }
/// }
///
/// fn draft() -> Result<String, BoxError> {
///     Ok(call_model(true).map_err(NodeError::retryable)?)
/// }
///
/// let e = draft().unwrap_err();
/// assert!(NodeError::is_retryable(&e));
/// assert_eq!(e.to_string(), "429 Too Many Requests");
/// ```
///
/// [`RetryPolicy::retry_on`]: crate::RetryPolicy::retry_on
#[derive(Debug)]
pub struct NodeError {
    kind: NodeErrorKind,
    source: BoxError,
}

impl NodeError {
    /// `error`, to be tried again as the node's retry policy allows.
    pub fn retryable(error: impl Into<BoxError>) -> NodeError {
        NodeError {
            kind: NodeErrorKind::Retryable,
            source: error.into(),
        }
    }

    /// `error`, never tried again, whatever the policy.
    pub fn fatal(error: impl Into<BoxError>) -> NodeError {
        NodeError {
            kind: NodeErrorKind::Fatal,
            source: error.into(),
        }
    }

    /// Whether this error may be tried again.
    pub fn kind(&self) -> NodeErrorKind {
        self.kind
    }

    /// How `error` was marked: `Some` for a [`NodeError`] (found anywhere in its chain of
    /// sources), `None` for an unmarked error.
    pub fn kind_of(error: &BoxError) -> Option<NodeErrorKind> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
        while let Some(e) = next {
            if let Some(marked) = e.downcast_ref::<NodeError>() {
                return Some(marked.kind);
            }
            next = e.source();
        }
        None
    }

    /// Whether `error` was marked [retryable](NodeError::retryable).
    pub fn is_retryable(error: &BoxError) -> bool {
        NodeError::kind_of(error) == Some(NodeErrorKind::Retryable)
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The mark is not part of the message: the stage says what the error was.
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unmarked_error_has_no_kind() {
        let e: BoxError = "plain".into();
        assert_eq!(NodeError::kind_of(&e), None);
    }

    #[test]
    fn a_mark_is_found_under_a_wrapping_error() {
        #[derive(Debug)]
        struct Wrapper(NodeError);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "wrapped: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e: BoxError = Box::new(Wrapper(NodeError::fatal("bad input")));
        assert_eq!(NodeError::kind_of(&e), Some(NodeErrorKind::Fatal));
        assert_eq!(e.to_string(), "wrapped: bad input");
    }
}
