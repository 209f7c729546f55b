//! One SQL statement made of several data-modifying statements:
//! `WITH held_run AS MATERIALIZED (<lock>), w1 AS (<update>), w2 AS (<insert>) <last>`.
//!
//! PostgreSQL runs every part of such a statement against one snapshot and commits them
//! together, in one round trip: a node's stage completion, its checkpoint and its decision
//! are written all or not at all, without a `BEGIN`/`COMMIT` pair. Each part is an ordinary
//! typed Diesel statement; only the `WITH` glue is written here.
//!
//! A part may be given a name (a CTE that later parts read, through the pseudo-tables of
//! [`fence`](crate::fence)); named parts are `MATERIALIZED`, so that they run once, first,
//! whatever the planner would otherwise inline.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;

/// One part of a statement, of any type.
pub(crate) type Part<'a> = Box<dyn QueryFragment<Pg> + Send + Sync + 'a>;

/// Several statements executed as one; its affected-row count and returned rows are those
/// of the last.
pub(crate) struct AtomicStatement<'a, L> {
    parts: Vec<(Option<&'static str>, Part<'a>)>,
    last: L,
}

impl<'a, L> AtomicStatement<'a, L> {
    /// A statement whose row count and rows are `last`'s.
    pub(crate) fn new(last: L) -> Self {
        AtomicStatement {
            parts: Vec::new(),
            last,
        }
    }

    /// Adds a statement that runs with the last one.
    pub(crate) fn with(mut self, part: impl QueryFragment<Pg> + Send + Sync + 'a) -> Self {
        self.parts.push((None, Box::new(part)));
        self
    }

    /// Adds a statement whose rows later parts read by `name` (a pseudo-table of that name).
    /// Name a part before the parts that read it.
    pub(crate) fn with_named(
        mut self,
        name: &'static str,
        part: impl QueryFragment<Pg> + Send + Sync + 'a,
    ) -> Self {
        self.parts.push((Some(name), Box::new(part)));
        self
    }
}

impl<L: QueryFragment<Pg>> QueryFragment<Pg> for AtomicStatement<'_, L> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for (i, (name, part)) in self.parts.iter().enumerate() {
            out.push_sql(if i == 0 { "WITH " } else { ", " });
            match name {
                Some(name) => {
                    out.push_identifier(name)?;
                    out.push_sql(" AS MATERIALIZED (");
                }
                None => out.push_sql(&format!("w{i} AS (")),
            }
            part.walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        if !self.parts.is_empty() {
            out.push_sql(" ");
        }
        self.last.walk_ast(out.reborrow())
    }

    /// Prepared once per connection and reused. Diesel declines to cache any `UPDATE` or
    /// upsert, because a changeset with optional fields can change its SQL from one call to
    /// the next. That matters when statements are cached by Rust type; this statement has
    /// no static query id, so it is cached by its SQL text, and a different text is a
    /// different entry. (Our changesets are tuples, whose SQL never changes.) Without this,
    /// every node commit would cost a second round trip to prepare it.
    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<L: Query> Query for AtomicStatement<'_, L> {
    type SqlType = L::SqlType;
}

impl<L> QueryId for AtomicStatement<'_, L> {
    type QueryId = ();
    // The SQL depends on which parts are present: prepared statements are cached by text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::{decisions, stages};
    use diesel::prelude::*;

    #[test]
    fn parts_become_ctes_before_the_last_statement_and_named_ones_are_materialized() {
        let update = diesel::update(stages::table.filter(stages::iteration.eq(1)))
            .set(stages::duration_ms.eq(5));
        let lock = stages::table.select(stages::id).for_no_key_update();
        let delete = diesel::delete(decisions::table.filter(decisions::from_node.eq("a")));
        let statement = AtomicStatement::new(delete)
            .with_named("held_run", lock)
            .with(update);
        let sql = diesel::debug_query::<Pg, _>(&statement).to_string();
        assert!(
            sql.starts_with(
                r#"WITH "held_run" AS MATERIALIZED (SELECT "stages"."id" FROM "stages" FOR NO KEY UPDATE), w1 AS (UPDATE "stages" SET "duration_ms" = $1 WHERE ("stages"."iteration" = $2)) DELETE FROM "decisions" WHERE ("decisions"."from_node" = $3)"#
            ),
            "{sql}"
        );
    }
}
