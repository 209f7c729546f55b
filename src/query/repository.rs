//! Reading runs, stages and decisions: the Go original's read repository, on Diesel's typed
//! query builder.
//!
//! Every function takes a connection, so the same call serves application code (a
//! [`PooledConnection`](crate::PooledConnection) from a pool, as `&mut conn`) and tests (a
//! connection inside a test transaction, see the `testing` module).
//!
//! ```
//! use workflows::{repository, PageConfig, PageRequest, RunFilters, RunStatus};
//!
//! # #[tokio::main]
//! # async fn main() -> workflows::Result<()> {
//! # let pool = workflows::testing::pool().await?;
//! let mut conn = pool.get().await?;
//! let failed = RunFilters { status: Some(RunStatus::Failed), ..Default::default() };
//! let page = repository::list_runs(&mut conn, &PageConfig::default(), PageRequest::new(1, 20), &failed).await?;
//! for run in &page.data {
//!     let stages = repository::stages(&mut conn, run.id).await?;
//!     println!("{} {} ({} stages)", run.id, run.workflow_name, stages.len());
//! }
//! assert_eq!((page.total, page.total_pages), (0, 1), "a test transaction starts empty");
//! # Ok(()) }
//! ```
//!
//! Deep pages are read by cursor: each page costs the same however far into the list it is.
//!
//! ```
//! use workflows::{repository, PageConfig, PageRequest, RunFilters};
//!
//! # #[tokio::main]
//! # async fn main() -> workflows::Result<()> {
//! # let pool = workflows::testing::pool().await?;
//! let mut conn = pool.get().await?;
//! let (config, request, filters) = (PageConfig::default(), PageRequest::new(1, 100), RunFilters::default());
//! let mut after = None;
//! loop {
//!     let page = repository::list_runs_keyset(&mut conn, &config, request.clone(), &filters, after.as_ref()).await?;
//!     for run in &page.data {
//!         println!("{} {}", run.id, run.created_at);
//!     }
//!     match page.next_cursor {
//!         Some(cursor) => after = Some(cursor), // or send `cursor.to_string()` to a client
//!         None => break,
//!     }
//! }
//! # Ok(()) }
//! ```

pub use super::state_at::state_at;
use diesel::dsl::exists;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, TransactionManager};

use crate::error::{Error, Result};
use crate::model::{Decision, Interrupt, Run, RunId, Stage};
use crate::query::page::{PageConfig, PageRequest, PageResult};
use crate::query::run_cursor::{KeysetKey, KeysetPage, KeysetSort, RunCursor};
use crate::query::run_filters::{RunFilters, order_runs, run_sort};
use crate::store::rows::{DecisionRow, InterruptRow, RunRow, StageRow};
use crate::store::schema::{self, runs};

/// One page of runs, filtered, searched and sorted as asked.
///
/// `request.search` matches `workflow_name` case-insensitively as a literal substring (`%`,
/// `_` and `\` match themselves). The sort fields are checked against
/// [`RunSortField`](crate::RunSortField) before any query is sent: an unknown field is
/// [`Error::InvalidInput`] (400). The total and the page are read from one snapshot: in a
/// `REPEATABLE READ, READ ONLY` transaction, or, if `conn` is already in a transaction, in
/// that one.
pub async fn list_runs(
    conn: &mut AsyncPgConnection,
    config: &PageConfig,
    request: PageRequest,
    filters: &RunFilters,
) -> Result<PageResult<Run>> {
    let request = request.normalized(config);
    check_text_filters(&request, filters)?;
    let sort = run_sort(&request.sort)?;
    let pattern = request.search.as_deref().map(contains_pattern);
    let filtered = || filtered_runs(filters, pattern.as_deref());
    let read_page = async |conn: &mut AsyncPgConnection| -> Result<PageResult<Run>> {
        let total: i64 = filtered().count().get_result(conn).await?;
        let data = order_runs(filtered(), &sort)
            .select(RunRow::as_select())
            .limit(request.page_size)
            .offset(request.offset())
            .load::<RunRow>(conn)
            .await?
            .into_iter()
            .map(Run::from)
            .collect();
        Ok(PageResult::new(data, total, &request))
    };
    if in_transaction(conn) {
        read_page(conn).await
    } else {
        conn.build_transaction()
            .repeatable_read()
            .read_only()
            .run(read_page)
            .await
    }
}

/// One page of runs after `after` (from the start if `None`), filtered and searched like
/// [`list_runs`], without a total.
///
/// Every page is one index range scan, as fast at the millionth run as at the first. The
/// sort is `created_at`, `-created_at` (the default), `id` or `-id`; ties in `created_at` are
/// broken by `id`, so walking the pages returns every run exactly once. Without a sort in
/// `request`, a cursor continues the sort it was made for; with one, it must be that sort.
/// Other sorts, and a cursor made for another sort, are [`Error::InvalidInput`] (400).
/// `request.page` is ignored. Runs inserted behind the cursor while a client pages are not
/// shown to it; nothing is shown twice.
pub async fn list_runs_keyset(
    conn: &mut AsyncPgConnection,
    config: &PageConfig,
    request: PageRequest,
    filters: &RunFilters,
    after: Option<&RunCursor>,
) -> Result<KeysetPage<Run>> {
    let request = request.normalized(config);
    check_text_filters(&request, filters)?;
    let sort = match (after, request.sort.is_empty()) {
        (Some(cursor), true) => cursor.sort,
        _ => KeysetSort::new(&run_sort(&request.sort)?)?,
    };
    if let Some(cursor) = after.filter(|c| c.sort != sort) {
        return Err(Error::invalid_input(
            "cursor",
            cursor.to_string(),
            "it was made for another sort; ask for the next page with the sort of the page that gave it",
        ));
    }
    let pattern = request.search.as_deref().map(contains_pattern);
    let mut query = filtered_runs(filters, pattern.as_deref());
    if let Some(cursor) = after {
        query = after_cursor(query, cursor);
    }
    // One row more than the page tells whether there is a next page, without a count.
    let mut data: Vec<Run> = order_runs(query, &[(sort.field, sort.descending)])
        .select(RunRow::as_select())
        .limit(request.page_size + 1)
        .load::<RunRow>(conn)
        .await?
        .into_iter()
        .map(Run::from)
        .collect();
    let more = data.len() as i64 > request.page_size;
    data.truncate(request.page_size as usize);
    let next_cursor = data
        .last()
        .filter(|_| more)
        .map(|last| RunCursor::after(last, sort));
    Ok(KeysetPage { data, next_cursor })
}

/// Runs matching `filters` and, if given, a `LIKE` `pattern` on the workflow name.
fn filtered_runs<'a>(
    filters: &'a RunFilters,
    pattern: Option<&'a str>,
) -> runs::BoxedQuery<'a, Pg> {
    let query = filters.apply(runs::table.into_boxed());
    match pattern {
        Some(pattern) => query.filter(runs::workflow_name.ilike(pattern)),
        None => query,
    }
}

/// Keeps the runs that come after `cursor` in its sort.
///
/// `(created_at, id) < (ts, last)` is written `created_at <= ts AND (created_at < ts OR id <
/// last)`: the first condition bounds the index range scan on `created_at`, the second only
/// filters the few rows that share `ts`.
fn after_cursor<'a>(
    query: runs::BoxedQuery<'a, Pg>,
    cursor: &RunCursor,
) -> runs::BoxedQuery<'a, Pg> {
    let id = cursor.id;
    match (cursor.key, cursor.sort.descending) {
        (KeysetKey::CreatedAt(at), true) => query.filter(
            runs::created_at
                .le(at)
                .and(runs::created_at.lt(at).or(runs::id.lt(id))),
        ),
        (KeysetKey::CreatedAt(at), false) => query.filter(
            runs::created_at
                .ge(at)
                .and(runs::created_at.gt(at).or(runs::id.gt(id))),
        ),
        (KeysetKey::Id, true) => query.filter(runs::id.lt(id)),
        (KeysetKey::Id, false) => query.filter(runs::id.gt(id)),
    }
}

/// The run with this id; [`Error::RunNotFound`] (404) if there is none.
pub async fn find_run(conn: &mut AsyncPgConnection, id: RunId) -> Result<Run> {
    runs::table
        .find(id)
        .select(RunRow::as_select())
        .first::<RunRow>(conn)
        .await
        .optional()?
        .map(Run::from)
        .ok_or(Error::RunNotFound { id })
}

/// The questions a run's nodes asked, and their answers, in the order they were asked;
/// [`Error::RunNotFound`] if the run does not exist.
pub async fn interrupts(conn: &mut AsyncPgConnection, run_id: RunId) -> Result<Vec<Interrupt>> {
    let asked: Vec<Interrupt> = schema::interrupts::table
        .filter(schema::interrupts::run_id.eq(run_id))
        .order_by((
            schema::interrupts::asked_at.asc(),
            schema::interrupts::id.asc(),
        ))
        .select(InterruptRow::as_select())
        .load::<InterruptRow>(conn)
        .await?
        .into_iter()
        .map(Interrupt::from)
        .collect();
    if asked.is_empty() {
        ensure_run_exists(conn, run_id).await?;
    }
    Ok(asked)
}

/// The stages of a run, in the order they started; [`Error::RunNotFound`] if the run does
/// not exist.
pub async fn stages(conn: &mut AsyncPgConnection, run_id: RunId) -> Result<Vec<Stage>> {
    let stages: Vec<Stage> = schema::stages::table
        .filter(schema::stages::run_id.eq(run_id))
        .order_by((
            schema::stages::created_at.asc(),
            schema::stages::iteration.asc(),
            schema::stages::attempt.asc(),
            schema::stages::id.asc(),
        ))
        .select(StageRow::as_select())
        .load::<StageRow>(conn)
        .await?
        .into_iter()
        .map(Stage::from)
        .collect();
    if stages.is_empty() {
        ensure_run_exists(conn, run_id).await?;
    }
    Ok(stages)
}

/// The decisions of a run, in the order they were made; [`Error::RunNotFound`] if the run
/// does not exist.
pub async fn decisions(conn: &mut AsyncPgConnection, run_id: RunId) -> Result<Vec<Decision>> {
    let decisions: Vec<Decision> = schema::decisions::table
        .filter(schema::decisions::run_id.eq(run_id))
        .order_by((
            schema::decisions::created_at.asc(),
            schema::decisions::id.asc(),
        ))
        .select(DecisionRow::as_select())
        .load::<DecisionRow>(conn)
        .await?
        .into_iter()
        .map(Decision::from)
        .collect();
    if decisions.is_empty() {
        ensure_run_exists(conn, run_id).await?;
    }
    Ok(decisions)
}

/// Tells an empty list of a real run from a run that does not exist.
async fn ensure_run_exists(conn: &mut AsyncPgConnection, id: RunId) -> Result<()> {
    let found: bool = diesel::select(exists(runs::table.find(id)))
        .get_result(conn)
        .await?;
    if found {
        Ok(())
    } else {
        Err(Error::RunNotFound { id })
    }
}

/// Whether `conn` is inside a transaction (a caller's, or a test transaction).
/// [`Error::InvalidInput`] (400) for a search or filter PostgreSQL cannot compare: a NUL
/// character, which no text column holds (the query-string parsers refuse it too; requests
/// built in code reach here).
fn check_text_filters(request: &PageRequest, filters: &RunFilters) -> Result<()> {
    if let Some(search) = request.search.as_deref().filter(|s| s.contains('\0')) {
        return Err(Error::invalid_input(
            "search",
            search,
            "contains a NUL character, which no workflow name holds; remove it",
        ));
    }
    filters.check()
}

fn in_transaction(conn: &mut AsyncPgConnection) -> bool {
    let manager =
        <AsyncPgConnection as AsyncConnection>::TransactionManager::transaction_manager_status_mut(
            conn,
        );
    !matches!(manager.transaction_depth(), Ok(None))
}

/// A `LIKE` pattern matching `text` anywhere, with `%`, `_` and `\` in `text` escaped so that
/// they match themselves (`\` is PostgreSQL's default `LIKE` escape character).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(contains_pattern("sum"), "%sum%");
        assert_eq!(contains_pattern("100%"), r"%100\%%");
        assert_eq!(contains_pattern("a_b"), r"%a\_b%");
        assert_eq!(contains_pattern(r"c:\x"), r"%c:\\x%");
    }
}
