//! Pagination: what a caller asks for ([`PageRequest`]), the limits that apply
//! ([`PageConfig`]) and what comes back for numbered pages ([`PageResult`]; cursor pages are
//! [`KeysetPage`](crate::KeysetPage)s).
//!
//! The rules are the Go original's: a page below 1 becomes 1; a page size below 1 becomes the
//! default (20), above the maximum (100) the maximum; `total_pages` is at least 1; `data` is
//! an empty list, never `null`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::query::query_string::QueryParams;

/// Default and maximum page sizes: [`PageConfig::default`] (20 and 100) and its setters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageConfig {
    /// The page size used when a request gives none, or one below 1.
    pub default_page_size: i64,
    /// The largest page size served; larger requests are cut to it.
    pub max_page_size: i64,
}

impl Default for PageConfig {
    fn default() -> Self {
        PageConfig {
            default_page_size: 20,
            max_page_size: 100,
        }
    }
}

impl PageConfig {
    /// The page size of a request that gives none (or one below 1).
    pub fn default_page_size(mut self, size: i64) -> Self {
        self.default_page_size = size;
        self
    }

    /// The largest page size served.
    pub fn max_page_size(mut self, size: i64) -> Self {
        self.max_page_size = size;
        self
    }
}

/// One field to sort by, as a caller names it: `created_at` or `-created_at`.
///
/// Which names are accepted depends on what is listed (for runs, see
/// [`RunSortField`](crate::RunSortField)); an unknown name is a 400 error, never SQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortField {
    /// The public field name.
    pub field: String,
    /// Largest first.
    pub descending: bool,
}

impl SortField {
    /// Sort by `field`, smallest first.
    pub fn asc(field: impl Into<String>) -> Self {
        SortField {
            field: field.into(),
            descending: false,
        }
    }

    /// Sort by `field`, largest first.
    pub fn desc(field: impl Into<String>) -> Self {
        SortField {
            field: field.into(),
            descending: true,
        }
    }

    /// Parses a `sort` parameter: comma-separated field names, each optionally prefixed with
    /// `-` for descending.
    ///
    /// ```
    /// use workflows::SortField;
    /// let sort = SortField::parse_list("-created_at, workflow_name").unwrap();
    /// assert_eq!(sort, [SortField::desc("created_at"), SortField::asc("workflow_name")]);
    /// assert!(SortField::parse_list("created_at,,status").is_err());
    /// ```
    pub fn parse_list(sort: &str) -> Result<Vec<SortField>> {
        if sort.trim().is_empty() {
            return Ok(Vec::new());
        }
        sort.split(',')
            .map(|item| {
                let item = item.trim();
                let (descending, field) = match item.strip_prefix('-') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, item),
                };
                if field.is_empty() {
                    return Err(Error::invalid_input(
                        "sort",
                        sort,
                        "empty field name; use comma-separated names like -created_at,workflow_name",
                    ));
                }
                Ok(SortField {
                    field: field.to_owned(),
                    descending,
                })
            })
            .collect()
    }
}

/// What page of a list a caller asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// The page number, from 1. Values below 1 mean 1.
    pub page: i64,
    /// Items per page. Values below 1 mean the configured default; values above the maximum
    /// mean the maximum.
    pub page_size: i64,
    /// A text to look for; what it matches depends on the list.
    pub search: Option<String>,
    /// Sort order; empty means the list's default order.
    pub sort: Vec<SortField>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            page: 1,
            page_size: 0,
            search: None,
            sort: Vec::new(),
        }
    }
}

impl PageRequest {
    /// Page `page` of `page_size` items, in the default order.
    pub fn new(page: i64, page_size: i64) -> Self {
        PageRequest {
            page,
            page_size,
            ..PageRequest::default()
        }
    }

    /// Reads `page`, `page_size`, `search` and `sort` from a URL query string; other
    /// parameters are ignored. Numbers out of range are normalised later; a value that is not
    /// a number at all is an error naming it.
    ///
    /// ```
    /// use workflows::{PageRequest, SortField};
    /// let p = PageRequest::from_query("page=2&page_size=50&sort=-created_at&search=sum").unwrap();
    /// assert_eq!((p.page, p.page_size), (2, 50));
    /// assert_eq!(p.sort, [SortField::desc("created_at")]);
    /// assert_eq!(p.search.as_deref(), Some("sum"));
    ///
    /// let err = PageRequest::from_query("page=abc").unwrap_err();
    /// assert_eq!(err.to_string(), r#"invalid page "abc": not a whole number"#);
    /// ```
    pub fn from_query(query: &str) -> Result<Self> {
        Self::from_params(&QueryParams::parse(query)?)
    }

    /// Like [`PageRequest::from_query`], from a query string already parsed.
    pub fn from_params(params: &QueryParams) -> Result<Self> {
        let number = |key: &str, default: i64| -> Result<i64> {
            match params.get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| Error::invalid_input(key, v, "not a whole number")),
            }
        };
        Ok(PageRequest {
            page: number("page", 1)?,
            page_size: number("page_size", 0)?,
            search: params.text("search").map(str::to_owned),
            sort: params
                .text("sort")
                .map(SortField::parse_list)
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// This request with page and page size brought within `config`'s rules.
    ///
    /// ```
    /// use workflows::{PageConfig, PageRequest};
    /// let p = PageRequest::new(-3, 100_000).normalized(&PageConfig::default());
    /// assert_eq!((p.page, p.page_size), (1, 100));
    /// ```
    pub fn normalized(mut self, config: &PageConfig) -> Self {
        if self.page < 1 {
            self.page = 1;
        }
        if self.page_size < 1 {
            self.page_size = config.default_page_size;
        }
        if self.page_size > config.max_page_size {
            self.page_size = config.max_page_size;
        }
        self
    }

    /// Rows to skip for this page (of a normalised request). Saturates instead of
    /// overflowing, so an absurd page number yields an empty page.
    pub fn offset(&self) -> i64 {
        (self.page.max(1) - 1).saturating_mul(self.page_size.max(0))
    }
}

/// One page of a list, with the numbers a client needs to page through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct PageResult<T> {
    /// The items of this page; empty, never `null`, past the last page.
    pub data: Vec<T>,
    /// How many items the whole list holds.
    pub total: i64,
    /// This page's number, from 1.
    pub page: i64,
    /// The page size used.
    pub page_size: i64,
    /// How many pages the list has; at least 1.
    pub total_pages: i64,
}

impl<T> PageResult<T> {
    /// A page of `data` out of `total` items, for a normalised `request`.
    pub fn new(data: Vec<T>, total: i64, request: &PageRequest) -> Self {
        let page_size = request.page_size.max(1);
        let total_pages = (total.max(0) + page_size - 1) / page_size;
        PageResult {
            data,
            total,
            page: request.page,
            page_size,
            total_pages: total_pages.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(page: i64, page_size: i64) -> (i64, i64) {
        let p = PageRequest::new(page, page_size).normalized(&PageConfig::default());
        (p.page, p.page_size)
    }

    #[test]
    fn normalisation_follows_the_go_rules() {
        assert_eq!(normalized(0, 0), (1, 20));
        assert_eq!(normalized(-3, -1), (1, 20));
        assert_eq!(normalized(7, 1), (7, 1));
        assert_eq!(normalized(2, 100), (2, 100));
        assert_eq!(normalized(2, 101), (2, 100));
        assert_eq!(normalized(2, 100_000), (2, 100));
    }

    #[test]
    fn offset_saturates_for_absurd_pages() {
        let p = PageRequest::new(i64::MAX, 100).normalized(&PageConfig::default());
        assert_eq!(p.offset(), i64::MAX);
        assert_eq!(PageRequest::new(3, 20).offset(), 40);
    }

    #[test]
    fn total_pages_is_at_least_one_and_rounds_up() {
        let req = PageRequest::new(1, 20);
        assert_eq!(PageResult::<()>::new(vec![], 0, &req).total_pages, 1);
        assert_eq!(PageResult::<()>::new(vec![], 20, &req).total_pages, 1);
        assert_eq!(PageResult::<()>::new(vec![], 21, &req).total_pages, 2);
    }

    #[test]
    fn empty_data_serialises_as_an_empty_list() {
        let page = PageResult::<u8>::new(vec![], 0, &PageRequest::new(1, 20));
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"data":[],"total":0,"page":1,"page_size":20,"total_pages":1}"#
        );
    }

    #[test]
    fn bad_numbers_are_errors_naming_the_value() {
        for (query, message) in [
            ("page=abc", r#"invalid page "abc": not a whole number"#),
            (
                "page_size=1.5",
                r#"invalid page_size "1.5": not a whole number"#,
            ),
            (
                "page=99999999999999999999",
                r#"invalid page "99999999999999999999": not a whole number"#,
            ),
        ] {
            assert_eq!(
                PageRequest::from_query(query).unwrap_err().to_string(),
                message
            );
        }
    }

    #[test]
    fn negative_numbers_parse_and_normalise() {
        let p = PageRequest::from_query("page=-3&page_size=100000").unwrap();
        assert_eq!((p.page, p.page_size), (-3, 100_000));
        let p = p.normalized(&PageConfig::default());
        assert_eq!((p.page, p.page_size), (1, 100));
    }

    #[test]
    fn sort_lists_parse_with_direction() {
        assert_eq!(SortField::parse_list("").unwrap(), vec![]);
        assert_eq!(
            SortField::parse_list("-created_at,workflow_name").unwrap(),
            vec![
                SortField::desc("created_at"),
                SortField::asc("workflow_name")
            ]
        );
        assert!(SortField::parse_list("-").is_err());
        assert!(SortField::parse_list("a,").is_err());
    }
}
