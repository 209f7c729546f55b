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
//!
//! A statement executed for every node (a node's commit) can be given its [`Shape`]: which
//! statement it is and which of its variable parts it has. Two statements of one shape have
//! the same SQL text (only their bind values differ), so the text is built from the typed
//! parts once per shape and reused: building it walks every part and quotes every
//! identifier, most of the client's work per commit otherwise. Debug builds (the tests)
//! build it every time as well and check the two agree, so that a shape that does not
//! capture a variation fails a test instead of sending wrong SQL.
//!
//! A shape known at compile time (a [`StaticShape`]) can go further: its statements are
//! prepared once per connection under a Rust type instead of being looked up by their SQL
//! text, which Diesel otherwise copies, hashes and compares at every execution (about a
//! twentieth of the client's instructions per node step, `./scripts/profile`).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock, RwLock};

use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AstPass, Query, QueryBuilder, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::TypeMetadata;

use crate::store::statement_walk::{collect_binds_into_room, walk_sql_into, walked_sql};

/// One part of a statement, of any type.
pub(crate) type Part<'a> = Box<dyn QueryFragment<Pg> + Send + Sync + 'a>;

/// Which statement, and which of its variable parts it has (bits the statement's builder
/// defines): everything its SQL text depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    pub(crate) statement: &'static str,
    pub(crate) variant: u32,
}

/// A shape named by a type, so that its statements can be prepared under that type (see the
/// module): every statement sent as [`OfStaticShape<K>`] must be of `K::SHAPE`.
pub(crate) trait StaticShape: Send + Sync + 'static {
    /// The shape of every statement prepared under this type.
    const SHAPE: Shape;
    /// How many values a statement of this shape binds: room is made for them before they
    /// are collected (see [`collect_binds_into_room`]).
    const BINDS: usize;
}

/// Declares a [`StaticShape`]: a type named for the statement, its shape (the statement's
/// name and variant) and how many values it binds.
macro_rules! static_shape {
    ($(#[$doc:meta])* $name:ident = ($statement:expr, $variant:expr), binds $binds:expr) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl $crate::store::atomic_statement::StaticShape for $name {
            const SHAPE: $crate::store::atomic_statement::Shape =
                $crate::store::atomic_statement::Shape {
                    statement: $statement,
                    variant: $variant,
                };
            const BINDS: usize = $binds;
        }
    };
}
pub(crate) use static_shape;

/// The SQL text of each shape built so far. Shapes are few (a statement's variants), so it
/// is never pruned; past [`MAX_SHAPES`] texts are built each time instead of kept.
static SQL_OF_SHAPE: OnceLock<RwLock<HashMap<Shape, Arc<str>>>> = OnceLock::new();
const MAX_SHAPES: usize = 256;

/// Several statements executed as one; its affected-row count and returned rows are those
/// of the last.
pub(crate) struct AtomicStatement<'a, L> {
    parts: Vec<(Option<&'static str>, Part<'a>)>,
    last: L,
    shape: Option<Shape>,
}

impl<'a, L> AtomicStatement<'a, L> {
    /// A statement whose row count and rows are `last`'s.
    pub(crate) fn new(last: L) -> Self {
        AtomicStatement {
            parts: Vec::new(),
            last,
            shape: None,
        }
    }

    /// Says that every statement of `shape` has this one's SQL text, so that it is built
    /// once (see the module).
    pub(crate) fn of_shape(mut self, shape: Shape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// This statement, prepared under `K` (see the module). It must be of `K`'s shape: one
    /// that is not fails when it is sent, naming both shapes, instead of running the SQL
    /// prepared for `K`.
    pub(crate) fn of_static_shape<K: StaticShape>(self) -> OfStaticShape<'a, L, K> {
        OfStaticShape {
            statement: self,
            shape: PhantomData,
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

/// The openings of unnamed parts, so that walking a statement allocates none.
const UNNAMED: [&str; 8] = [
    "w0 AS (", "w1 AS (", "w2 AS (", "w3 AS (", "w4 AS (", "w5 AS (", "w6 AS (", "w7 AS (",
];

impl<L: QueryFragment<Pg>> QueryFragment<Pg> for AtomicStatement<'_, L> {
    fn to_sql(&self, out: &mut PgQueryBuilder, _backend: &Pg) -> QueryResult<()> {
        let Some(shape) = self.shape else {
            return walk_sql_into(self, out);
        };
        let cache = SQL_OF_SHAPE.get_or_init(RwLock::default);
        let known = cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&shape)
            .cloned();
        let sql = match known {
            Some(sql) => {
                debug_assert_eq!(
                    &*sql,
                    walked_sql(self)?,
                    "two statements of {shape:?} have different SQL: the shape misses a variation"
                );
                sql
            }
            None => {
                let sql: Arc<str> = walked_sql(self)?.into();
                let mut cache = cache
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if cache.len() < MAX_SHAPES {
                    cache.insert(shape, Arc::clone(&sql));
                }
                sql
            }
        };
        out.push_sql(&sql);
        Ok(())
    }

    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for (i, (name, part)) in self.parts.iter().enumerate() {
            out.push_sql(if i == 0 { "WITH " } else { ", " });
            match name {
                Some(name) => {
                    out.push_identifier(name)?;
                    out.push_sql(" AS MATERIALIZED (");
                }
                None => match UNNAMED.get(i) {
                    Some(opening) => out.push_sql(opening),
                    None => out.push_sql(&format!("w{i} AS (")),
                },
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

/// An [`AtomicStatement`] prepared under the type `K`: see [`AtomicStatement::of_static_shape`].
pub(crate) struct OfStaticShape<'a, L, K> {
    statement: AtomicStatement<'a, L>,
    shape: PhantomData<K>,
}

impl<L, K: StaticShape> OfStaticShape<'_, L, K> {
    /// Refuses a statement that is not of `K`'s shape: its SQL may differ from what was
    /// prepared under `K`.
    fn check_shape(&self) -> QueryResult<()> {
        match self.statement.shape {
            Some(shape) if shape == K::SHAPE => Ok(()),
            other => Err(diesel::result::Error::QueryBuilderError(
                format!(
                    "a statement of shape {other:?} was sent as one of {:?}; this is a bug in \
                     the workflows library",
                    K::SHAPE
                )
                .into(),
            )),
        }
    }
}

impl<L: QueryFragment<Pg>, K: StaticShape> QueryFragment<Pg> for OfStaticShape<'_, L, K> {
    fn to_sql(&self, out: &mut PgQueryBuilder, backend: &Pg) -> QueryResult<()> {
        self.check_shape()?;
        self.statement.to_sql(out, backend)
    }

    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.check_shape()?;
        self.statement.walk_ast(out)
    }

    fn collect_binds<'b>(
        &'b self,
        out: &mut RawBytesBindCollector<Pg>,
        metadata_lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
        backend: &'b Pg,
    ) -> QueryResult<()> {
        collect_binds_into_room(self, K::BINDS, out, metadata_lookup, backend)
    }

    fn is_safe_to_cache_prepared(&self, backend: &Pg) -> QueryResult<bool> {
        self.statement.is_safe_to_cache_prepared(backend)
    }
}

impl<L: Query, K> Query for OfStaticShape<'_, L, K> {
    type SqlType = L::SqlType;
}

impl<L, K: StaticShape> QueryId for OfStaticShape<'_, L, K> {
    type QueryId = K;
    // Every statement sent under `K` has `K`'s shape (checked as it is sent), hence one SQL
    // text (checked in debug builds): Diesel may key its prepared statement by `K`.
    const HAS_STATIC_QUERY_ID: bool = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::{decisions, stages};
    use diesel::prelude::*;

    fn delete_from(node: &str) -> impl QueryFragment<Pg> + Send + Sync + '_ {
        diesel::delete(decisions::table.filter(decisions::from_node.eq(node)))
    }

    #[test]
    fn a_shaped_statement_s_sql_is_built_once_and_the_same_as_walked() {
        let shape = Shape {
            statement: "test: delete with an update",
            variant: 0,
        };
        let statement = |node: &'static str| {
            AtomicStatement::new(delete_from(node))
                .with(diesel::update(stages::table).set(stages::duration_ms.eq(5)))
                .of_shape(shape)
        };
        let first = diesel::debug_query::<Pg, _>(&statement("a")).to_string();
        let cached = SQL_OF_SHAPE.get().unwrap().read().unwrap()[&shape].clone();
        assert_eq!(&*cached, walked_sql(&statement("a")).unwrap());
        let second = diesel::debug_query::<Pg, _>(&statement("b")).to_string();
        assert_eq!(
            (
                first.split_once(" -- ").unwrap().0,
                second.split_once(" -- ").unwrap().0
            ),
            (&*cached, &*cached),
            "only the binds differ"
        );
        assert!(second.ends_with(r#"binds: [5, "b"]"#), "{second}");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "the shape misses a variation")]
    fn two_statements_of_one_shape_with_different_sql_are_caught_in_tests() {
        let shape = Shape {
            statement: "test: a shape that misses a part",
            variant: 0,
        };
        let with_update = AtomicStatement::new(delete_from("a"))
            .with(diesel::update(stages::table).set(stages::duration_ms.eq(5)))
            .of_shape(shape);
        let _ = diesel::debug_query::<Pg, _>(&with_update).to_string();
        let without = AtomicStatement::new(delete_from("a")).of_shape(shape);
        let _ = diesel::debug_query::<Pg, _>(&without).to_string();
    }

    static_shape!(DeleteWithUpdate = ("test: a static delete with an update", 0), binds 2);

    #[test]
    fn a_statement_of_a_static_shape_is_prepared_under_its_type_with_the_same_sql() {
        let statement = |shape| {
            AtomicStatement::new(delete_from("a"))
                .with(diesel::update(stages::table).set(stages::duration_ms.eq(5)))
                .of_shape(shape)
        };
        let static_one = statement(DeleteWithUpdate::SHAPE).of_static_shape::<DeleteWithUpdate>();
        assert_eq!(
            <OfStaticShape<'_, (), DeleteWithUpdate> as QueryId>::query_id(),
            Some(std::any::TypeId::of::<DeleteWithUpdate>())
        );
        assert_eq!(
            <AtomicStatement<'_, ()> as QueryId>::query_id(),
            None,
            "a statement of a runtime shape is still looked up by its SQL"
        );
        assert_eq!(
            diesel::debug_query::<Pg, _>(&static_one).to_string(),
            diesel::debug_query::<Pg, _>(&statement(DeleteWithUpdate::SHAPE)).to_string()
        );
    }

    #[test]
    fn a_statement_sent_under_a_static_shape_it_does_not_have_is_refused_naming_both() {
        let other = Shape {
            statement: "test: another shape",
            variant: 3,
        };
        let wrong = AtomicStatement::new(delete_from("a"))
            .of_shape(other)
            .of_static_shape::<DeleteWithUpdate>();
        let mut sql = PgQueryBuilder::default();
        let err = wrong.to_sql(&mut sql, &Pg).unwrap_err().to_string();
        assert!(
            err.contains("test: another shape") && err.contains("test: a static delete"),
            "{err}"
        );
        let unshaped = AtomicStatement::new(delete_from("a")).of_static_shape::<DeleteWithUpdate>();
        let err = unshaped.to_sql(&mut sql, &Pg).unwrap_err().to_string();
        assert!(err.contains("shape None was sent"), "{err}");
    }

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
