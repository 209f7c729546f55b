//! Which runs a list shows and in what order: the filters and the whitelist of sortable
//! fields, mapped onto Diesel columns (the Go original's projection maps, without SQL text).

use std::str::FromStr;

use diesel::pg::Pg;
use diesel::prelude::*;

use crate::error::{Error, Result};
use crate::model::RunStatus;
use crate::query::page::SortField;
use crate::query::query_string::QueryParams;
use crate::store::schema::runs;

/// Filters on a list of runs. Absent filters match every run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilters {
    /// Only runs of this workflow (exact name).
    pub workflow_name: Option<String>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
}

impl RunFilters {
    /// Reads `workflow_name` and `status` from a URL query string; other parameters are
    /// ignored and empty values count as absent.
    ///
    /// ```
    /// use workflows::{RunFilters, RunStatus};
    /// let f = RunFilters::from_query("status=failed&workflow_name=summarize").unwrap();
    /// assert_eq!(f.status, Some(RunStatus::Failed));
    /// assert_eq!(RunFilters::from_query("status=&workflow_name=").unwrap(), RunFilters::default());
    /// let err = RunFilters::from_query("status=done").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     r#"invalid status "done": expected one of pending, running, waiting, completed, failed, cancelled"#
    /// );
    /// ```
    pub fn from_query(query: &str) -> Result<Self> {
        Self::from_params(&QueryParams::parse(query)?)
    }

    /// Like [`RunFilters::from_query`], from a query string already parsed.
    pub fn from_params(params: &QueryParams) -> Result<Self> {
        Ok(RunFilters {
            workflow_name: params.text("workflow_name").map(str::to_owned),
            status: params.text("status").map(str::parse).transpose()?,
        })
    }

    /// [`Error::InvalidInput`] (400) if a filter cannot be compared with what PostgreSQL
    /// stores: a NUL character, which no text column can hold.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.workflow_name {
            Some(name) if name.contains('\0') => Err(Error::invalid_input(
                "workflow_name",
                name.as_str(),
                "contains a NUL character, which no workflow name holds; remove it",
            )),
            _ => Ok(()),
        }
    }

    /// Adds these filters to a query on `runs`.
    pub(crate) fn apply<'a>(
        &'a self,
        mut query: runs::BoxedQuery<'a, Pg>,
    ) -> runs::BoxedQuery<'a, Pg> {
        if let Some(name) = &self.workflow_name {
            query = query.filter(runs::workflow_name.eq(name));
        }
        if let Some(status) = self.status {
            query = query.filter(runs::status.eq(status));
        }
        query
    }
}

/// The fields a list of runs can be sorted by, by their public (JSON) names.
///
/// Parameters and results (JSON) and error messages are not sortable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSortField {
    /// `id`
    Id,
    /// `workflow_name`
    WorkflowName,
    /// `status`
    Status,
    /// `started_at`
    StartedAt,
    /// `completed_at`
    CompletedAt,
    /// `created_at`
    CreatedAt,
    /// `updated_at`
    UpdatedAt,
}

impl RunSortField {
    /// Every sortable field.
    pub const ALL: &'static [RunSortField] = &[
        RunSortField::Id,
        RunSortField::WorkflowName,
        RunSortField::Status,
        RunSortField::StartedAt,
        RunSortField::CompletedAt,
        RunSortField::CreatedAt,
        RunSortField::UpdatedAt,
    ];

    /// The public name, as used in `sort=`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunSortField::Id => "id",
            RunSortField::WorkflowName => "workflow_name",
            RunSortField::Status => "status",
            RunSortField::StartedAt => "started_at",
            RunSortField::CompletedAt => "completed_at",
            RunSortField::CreatedAt => "created_at",
            RunSortField::UpdatedAt => "updated_at",
        }
    }
}

impl FromStr for RunSortField {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        RunSortField::ALL
            .iter()
            .copied()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                Error::invalid_input(
                    "sort",
                    s,
                    format_args!(
                        "not a sortable field; runs sort by {}",
                        RunSortField::ALL
                            .iter()
                            .map(|f| f.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }
}

/// The default order of runs: newest first.
const DEFAULT_RUN_SORT: (RunSortField, bool) = (RunSortField::CreatedAt, true);

/// Checks a requested sort against the whitelist. Empty means the default order.
pub(crate) fn run_sort(sort: &[SortField]) -> Result<Vec<(RunSortField, bool)>> {
    if sort.is_empty() {
        return Ok(vec![DEFAULT_RUN_SORT]);
    }
    let mut fields: Vec<(RunSortField, bool)> = Vec::with_capacity(sort.len());
    for s in sort {
        let field = s.field.parse::<RunSortField>()?;
        // A field given again orders nothing more (rows still tied when it comes again are
        // equal on it), so it is dropped. This also keeps the ORDER BY no longer than the
        // whitelist: Diesel nests each added key, and walking the nesting costs twice as much
        // per level (a 40-field sort once kept a server busy for minutes).
        if !fields.iter().any(|(seen, _)| *seen == field) {
            fields.push((field, s.descending));
        }
    }
    Ok(fields)
}

/// Orders a query on `runs` by `sort`, then by `id` in the direction of the last field so
/// that rows with equal keys keep one stable order from page to page. Empty timestamps sort
/// last in either direction.
pub(crate) fn order_runs<'a>(
    mut query: runs::BoxedQuery<'a, Pg>,
    sort: &[(RunSortField, bool)],
) -> runs::BoxedQuery<'a, Pg> {
    use RunSortField as F;
    for &(field, descending) in sort {
        query = match (field, descending) {
            (F::Id, false) => query.then_order_by(runs::id.asc()),
            (F::Id, true) => query.then_order_by(runs::id.desc()),
            (F::WorkflowName, false) => query.then_order_by(runs::workflow_name.asc()),
            (F::WorkflowName, true) => query.then_order_by(runs::workflow_name.desc()),
            (F::Status, false) => query.then_order_by(runs::status.asc()),
            (F::Status, true) => query.then_order_by(runs::status.desc()),
            (F::StartedAt, false) => query.then_order_by(runs::started_at.asc().nulls_last()),
            (F::StartedAt, true) => query.then_order_by(runs::started_at.desc().nulls_last()),
            (F::CompletedAt, false) => query.then_order_by(runs::completed_at.asc().nulls_last()),
            (F::CompletedAt, true) => query.then_order_by(runs::completed_at.desc().nulls_last()),
            (F::CreatedAt, false) => query.then_order_by(runs::created_at.asc()),
            (F::CreatedAt, true) => query.then_order_by(runs::created_at.desc()),
            (F::UpdatedAt, false) => query.then_order_by(runs::updated_at.asc()),
            (F::UpdatedAt, true) => query.then_order_by(runs::updated_at.desc()),
        };
    }
    match sort.last() {
        Some(&(F::Id, _)) => query,
        Some(&(_, true)) => query.then_order_by(runs::id.desc()),
        _ => query.then_order_by(runs::id.asc()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;

    fn sql(sort: &str) -> Result<String> {
        let sort = run_sort(&SortField::parse_list(sort)?)?;
        let query = order_runs(runs::table.into_boxed(), &sort).select(runs::id);
        Ok(debug_query::<Pg, _>(&query).to_string())
    }

    #[test]
    fn a_field_given_again_is_dropped_as_it_orders_nothing_more() {
        assert_eq!(
            sql("-status,created_at,status,-created_at").unwrap(),
            sql("-status,created_at").unwrap()
        );
    }

    #[test]
    fn every_field_at_once_is_one_flat_order_by() {
        let q =
            sql("workflow_name,-status,started_at,completed_at,-created_at,updated_at,id").unwrap();
        assert!(
            q.ends_with(
                r#"ORDER BY "runs"."workflow_name" ASC, "runs"."status" DESC, "runs"."started_at" ASC NULLS LAST, "runs"."completed_at" ASC NULLS LAST, "runs"."created_at" DESC, "runs"."updated_at" ASC, "runs"."id" ASC -- binds: []"#
            ),
            "{q}"
        );
    }

    #[test]
    fn default_order_is_newest_first_with_an_id_tiebreak() {
        let q = sql("").unwrap();
        assert!(
            q.contains(r#"ORDER BY "runs"."created_at" DESC, "runs"."id" DESC"#),
            "{q}"
        );
    }

    #[test]
    fn several_fields_map_to_columns_in_order() {
        let q = sql("-created_at,workflow_name").unwrap();
        assert!(
            q.contains(
                r#"ORDER BY "runs"."created_at" DESC, "runs"."workflow_name" ASC, "runs"."id" ASC"#
            ),
            "{q}"
        );
    }

    #[test]
    fn timestamps_that_may_be_empty_sort_last() {
        let q = sql("-completed_at").unwrap();
        assert!(
            q.contains(r#""runs"."completed_at" DESC NULLS LAST"#),
            "{q}"
        );
    }

    #[test]
    fn unknown_fields_and_sql_are_rejected_before_any_query() {
        for bad in ["id;drop table runs", "(select 1)", "params", "CREATED_AT"] {
            let err = sql(bad).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
