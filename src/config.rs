//! Configuration from the environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `DATABASE_URL` | PostgreSQL URL | required |
//! | `WORKFLOWS_DB_MAX_CONNECTIONS` | pool size | 10 |
//! | `WORKFLOWS_DB_CONNECT_TIMEOUT_MS` | time to open one connection | 5000 |
//! | `WORKFLOWS_DB_WAIT_TIMEOUT_MS` | time to wait for a free connection | 5000 |
//! | `WORKFLOWS_PAGE_SIZE` | default page size | 20 |
//! | `WORKFLOWS_MAX_PAGE_SIZE` | largest page size served | 100 |

use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::query::page::PageConfig;
use crate::store::db::DbConfig;

/// Everything the library reads from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Database connection and pool.
    pub db: DbConfig,
    /// Page sizes of lists.
    pub page: PageConfig,
}

impl Config {
    /// Reads the variables of the table above from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (for tests and other sources of settings).
    ///
    /// ```
    /// use workflows::Config;
    /// let config = Config::from_lookup(|name| match name {
    ///     "DATABASE_URL" => Some("postgres://localhost/app".to_owned()),
    ///     "WORKFLOWS_PAGE_SIZE" => Some("50".to_owned()),
    ///     _ => None,
    /// })
    /// .unwrap();
    /// assert_eq!(config.page.default_page_size, 50);
    /// assert_eq!(config.db.max_connections, 10);
    ///
    /// let err = Config::from_lookup(|name| match name {
    ///     "DATABASE_URL" => Some("postgres://localhost/app".to_owned()),
    ///     "WORKFLOWS_DB_MAX_CONNECTIONS" => Some("lots".to_owned()),
    ///     _ => None,
    /// })
    /// .unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     r#"configuration WORKFLOWS_DB_MAX_CONNECTIONS="lots": expected a whole number from 1 to 10000"#
    /// );
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let url = lookup("DATABASE_URL")
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| Error::Config {
                variable: "DATABASE_URL",
                value: String::new(),
                reason: "not set; set it to a postgres:// URL (./scripts/dev-db prints one for a local server)"
                    .to_owned(),
            })?;
        let defaults = DbConfig::new(url);
        let page_defaults = PageConfig::default();

        let db = DbConfig {
            max_connections: number(
                &lookup,
                "WORKFLOWS_DB_MAX_CONNECTIONS",
                defaults.max_connections,
                1,
                10_000,
            )?,
            connect_timeout: millis(
                &lookup,
                "WORKFLOWS_DB_CONNECT_TIMEOUT_MS",
                defaults.connect_timeout,
            )?,
            wait_timeout: millis(
                &lookup,
                "WORKFLOWS_DB_WAIT_TIMEOUT_MS",
                defaults.wait_timeout,
            )?,
            ..defaults
        };
        let max_page_size = number(
            &lookup,
            "WORKFLOWS_MAX_PAGE_SIZE",
            page_defaults.max_page_size,
            1,
            100_000,
        )?;
        let default_page_size = number(
            &lookup,
            "WORKFLOWS_PAGE_SIZE",
            page_defaults.default_page_size.min(max_page_size),
            1,
            max_page_size,
        )?;
        Ok(Config {
            db,
            page: PageConfig {
                default_page_size,
                max_page_size,
            },
        })
    }
}

fn number<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    min: T,
    max: T,
) -> Result<T>
where
    T: FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(value) = lookup(variable) else {
        return Ok(default);
    };
    match value.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(Error::Config {
            variable,
            value,
            reason: format!("expected a whole number from {min} to {max}"),
        }),
    }
}

fn millis(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: Duration,
) -> Result<Duration> {
    let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    number(lookup, variable, default_ms, 1, 3_600_000).map(Duration::from_millis)
}
