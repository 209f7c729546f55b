//! A statement's walk alone, for what Diesel derives from it by default: its SQL text built
//! by walking (for a statement that otherwise pushes a text it keeps), and its binds,
//! collected into room made for all of them at once.
//!
//! The room matters for the statements sent at every node step. diesel-async collects a
//! statement's binds into an empty collector, whose two vectors then grow as they are pushed
//! (three allocations each for 16 binds, instead of one): about 1,000 of the client's
//! instructions per node step (`./scripts/profile`). A statement that knows how many values
//! it binds makes the room first, through [`collect_binds_into_room`].

use diesel::pg::{Pg, PgQueryBuilder};
use diesel::query_builder::bind_collector::RawBytesBindCollector;
use diesel::query_builder::{AstPass, QueryBuilder, QueryFragment};
use diesel::result::QueryResult;
use diesel::sql_types::TypeMetadata;

/// `statement`, as Diesel sees it through its walk alone: none of the statement's own
/// `to_sql` or `collect_binds` is used.
struct WalkOnly<'s, T: ?Sized>(&'s T);

impl<T: QueryFragment<Pg> + ?Sized> QueryFragment<Pg> for WalkOnly<'_, T> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }
}

/// The SQL text of `statement`, built by walking it.
pub(crate) fn walked_sql<T: QueryFragment<Pg> + ?Sized>(statement: &T) -> QueryResult<String> {
    let mut sql = PgQueryBuilder::default();
    walk_sql_into(statement, &mut sql)?;
    Ok(sql.finish())
}

/// Writes the SQL text of `statement` into `out` by walking it.
pub(crate) fn walk_sql_into<T: QueryFragment<Pg> + ?Sized>(
    statement: &T,
    out: &mut PgQueryBuilder,
) -> QueryResult<()> {
    WalkOnly(statement).to_sql(out, &Pg)
}

/// Collects the binds of `statement`, which binds `binds` values, into `out`, with room made
/// for all of them first. Debug builds (the tests) check the count, so that a statement
/// whose binds change without its count fails a test instead of growing unseen.
pub(crate) fn collect_binds_into_room<T: QueryFragment<Pg> + ?Sized>(
    statement: &T,
    binds: usize,
    out: &mut RawBytesBindCollector<Pg>,
    metadata_lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
    backend: &Pg,
) -> QueryResult<()> {
    out.binds.reserve_exact(binds);
    out.metadata.reserve_exact(binds);
    let before = out.binds.len();
    WalkOnly(statement).collect_binds(out, metadata_lookup, backend)?;
    debug_assert_eq!(
        out.binds.len() - before,
        binds,
        "a statement bound another number of values than it declares"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::stages;
    use diesel::prelude::*;

    /// A statement that binds 3 values.
    fn statement() -> impl QueryFragment<Pg> {
        stages::table
            .filter(stages::node_name.eq("a"))
            .filter(stages::iteration.eq(2))
            .filter(stages::attempt.eq(1))
            .select(stages::id)
    }

    #[test]
    fn binds_are_collected_as_diesel_collects_them_into_room_made_for_exactly_them() {
        let statement = statement();
        let mut grown = RawBytesBindCollector::<Pg>::new();
        statement
            .collect_binds(&mut grown, &mut FakeLookup, &Pg)
            .unwrap();
        let mut into_room = RawBytesBindCollector::<Pg>::new();
        collect_binds_into_room(&statement, 3, &mut into_room, &mut FakeLookup, &Pg).unwrap();
        assert_eq!(into_room.binds, grown.binds);
        assert_eq!(
            (into_room.binds.capacity(), into_room.metadata.capacity()),
            (3, 3)
        );
        assert_eq!(grown.binds.capacity(), 4, "grown one push at a time");
    }

    #[test]
    #[should_panic(expected = "another number of values")]
    #[cfg(debug_assertions)]
    fn a_statement_that_binds_more_than_it_declares_fails_in_tests() {
        let mut out = RawBytesBindCollector::<Pg>::new();
        let _ = collect_binds_into_room(&statement(), 2, &mut out, &mut FakeLookup, &Pg);
    }

    #[test]
    fn the_walked_text_is_the_statements_own() {
        assert_eq!(
            walked_sql(&statement()).unwrap(),
            diesel::debug_query::<Pg, _>(&statement())
                .to_string()
                .split(" -- binds")
                .next()
                .unwrap()
        );
    }

    /// A metadata lookup for statements of built-in types only, which never ask it.
    struct FakeLookup;

    impl diesel::pg::PgMetadataLookup for FakeLookup {
        fn lookup_type(
            &mut self,
            type_name: &str,
            _schema: Option<&str>,
        ) -> diesel::pg::PgTypeMetadata {
            panic!("a built-in type was looked up: {type_name}")
        }
    }
}
