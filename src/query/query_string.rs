//! Reads a URL query string (`page=2&sort=-created_at`) into distinct named parameters.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The parameters of one query string, each given at most once: what
/// [`PageRequest::from_params`](crate::PageRequest::from_params) and
/// [`RunFilters::from_params`](crate::RunFilters::from_params) read, so that a handler
/// parses its query string once.
///
/// ```
/// let params = workflows::QueryParams::parse("?page=2&search=&status=failed").unwrap();
/// assert_eq!(params.get("page"), Some("2"));
/// assert_eq!(params.text("search"), None);
/// let page = workflows::PageRequest::from_params(&params).unwrap();
/// let filters = workflows::RunFilters::from_params(&params).unwrap();
/// assert_eq!((page.page, filters.status), (2, Some(workflows::RunStatus::Failed)));
/// assert!(workflows::QueryParams::parse("page=1&page=2").is_err());
/// ```
#[derive(Debug, Default)]
pub struct QueryParams(HashMap<String, String>);

impl QueryParams {
    /// Decodes `query` (with or without its leading `?`). A parameter given twice is an
    /// error: which of two pages or sorts a caller meant cannot be guessed.
    pub fn parse(query: &str) -> Result<Self> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut params = HashMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key.contains('\0') || value.contains('\0') {
                // PostgreSQL text cannot hold NUL: refuse it here rather than fail in the query.
                return Err(Error::invalid_input(
                    key,
                    value,
                    "contains a NUL character (%00), which is never a valid value; remove it",
                ));
            }
            if let Some(first) = params.insert(key.to_string(), value.to_string()) {
                return Err(Error::invalid_input(
                    key,
                    value,
                    format_args!("given twice (first as {first:?}); give it once"),
                ));
            }
        }
        Ok(QueryParams(params))
    }

    /// The value of `key` as given, if given (`page=` gives `Some("")`: for a number or a
    /// status, an empty value is a mistake to report, not an absence).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of free-text `key`, if given and not empty (`search=` searches nothing).
    pub fn text(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes_and_plus() {
        let p = QueryParams::parse("?search=a%25b+c&sort=-created_at").unwrap();
        assert_eq!(p.get("search"), Some("a%b c"));
        assert_eq!(p.get("sort"), Some("-created_at"));
    }

    #[test]
    fn empty_text_counts_as_absent_but_is_kept_as_given() {
        let p = QueryParams::parse("search=&page=").unwrap();
        assert_eq!(p.text("search"), None);
        assert_eq!(p.get("page"), Some(""));
    }

    #[test]
    fn a_nul_character_is_an_error_naming_the_parameter() {
        let e = QueryParams::parse("search=a%00b").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid search \"a\\0b\": contains a NUL"),
            "{e}"
        );
    }

    #[test]
    fn a_repeated_parameter_is_an_error_naming_it() {
        let e = QueryParams::parse("page=1&page=2").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid page "2": given twice (first as "1"); give it once"#
        );
    }
}
