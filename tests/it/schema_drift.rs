//! `src/store/schema.rs` against what the migrations create: a column added, dropped, renamed,
//! retyped or made (not) nullable on one side only fails this test.
//!
//! For each table, the column list of `schema.rs` (names, PostgreSQL type OIDs as Diesel maps
//! the declared SQL types, nullability) is compared with `pg_attribute` of a freshly migrated
//! schema; the set of tables is compared too.

use diesel::pg::{Pg, PgMetadataLookup, PgTypeMetadata};
use diesel::sql_types::is_nullable::{IsNullable, NotNull};
use diesel::sql_types::{Bool, HasSqlType, Integer, SqlType, Text};
use diesel::{Column, Expression, QueryableByName, Table};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use workflows::schema::{checkpoints, decisions, interrupts, messages, runs, stages};
use workflows::testing::IsolatedSchema;

#[derive(Debug, PartialEq, Eq, QueryableByName)]
struct ColumnShape {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    type_oid: i32,
    #[diesel(sql_type = Bool)]
    nullable: bool,
}

/// Built-in types carry their OID; a type that needs a lookup is not expected here.
struct NoLookup;

impl PgMetadataLookup for NoLookup {
    fn lookup_type(&mut self, type_name: &str, _schema: Option<&str>) -> PgTypeMetadata {
        panic!("schema.rs uses type {type_name}, which needs a lookup: extend this test")
    }
}

trait Nullability {
    const NULLABLE: bool;
}
impl Nullability for IsNullable {
    const NULLABLE: bool = true;
}
impl Nullability for NotNull {
    const NULLABLE: bool = false;
}

fn shape<C>() -> ColumnShape
where
    C: Column + Expression,
    C::SqlType: SqlType,
    <C::SqlType as SqlType>::IsNull: Nullability,
    Pg: HasSqlType<C::SqlType>,
{
    let metadata = <Pg as HasSqlType<C::SqlType>>::metadata(&mut NoLookup);
    ColumnShape {
        name: C::NAME.to_owned(),
        type_oid: metadata.oid().expect("a built-in type") as i32,
        nullable: <<C::SqlType as SqlType>::IsNull as Nullability>::NULLABLE,
    }
}

/// The columns of a `table!`'s `all_columns` tuple, in order.
trait ColumnShapes {
    fn shapes() -> Vec<ColumnShape>;
}

macro_rules! column_shapes_for_tuples {
    ($($c:ident)+) => {
        impl<$($c),+> ColumnShapes for ($($c,)+)
        where
            $($c: Column + Expression,
              $c::SqlType: SqlType,
              <$c::SqlType as SqlType>::IsNull: Nullability,
              Pg: HasSqlType<$c::SqlType>,)+
        {
            fn shapes() -> Vec<ColumnShape> {
                vec![$(shape::<$c>()),+]
            }
        }
    };
}
column_shapes_for_tuples!(A B C D E);
column_shapes_for_tuples!(A B C D E F);
column_shapes_for_tuples!(A B C D E F G H);
column_shapes_for_tuples!(A B C D E F G H I);
column_shapes_for_tuples!(A B C D E F G H I J);
column_shapes_for_tuples!(A B C D E F G H I J K L);
column_shapes_for_tuples!(A B C D E F G H I J K L M N O P Q R S);
column_shapes_for_tuples!(A B C D E F G H I J K L M N O P Q R S T);

fn declared<T: Table>() -> Vec<ColumnShape>
where
    T::AllColumns: ColumnShapes,
{
    <T::AllColumns as ColumnShapes>::shapes()
}

async fn in_database(conn: &mut AsyncPgConnection, table: &str) -> Vec<ColumnShape> {
    diesel::sql_query(
        "SELECT attname::text AS name, atttypid::int AS type_oid, NOT attnotnull AS nullable
           FROM pg_attribute
          WHERE attrelid = to_regclass(quote_ident(current_schema()) || '.' || $1)
            AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum",
    )
    .bind::<Text, _>(table)
    .load(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn schema_rs_matches_the_migrated_database() {
    let schema = IsolatedSchema::create().await.unwrap();
    let mut conn = schema.pool().get().await.unwrap();

    let declared_tables = [
        ("checkpoints", declared::<checkpoints::table>()),
        ("decisions", declared::<decisions::table>()),
        ("interrupts", declared::<interrupts::table>()),
        ("messages", declared::<messages::table>()),
        ("runs", declared::<runs::table>()),
        ("stages", declared::<stages::table>()),
    ];
    for (table, columns) in &declared_tables {
        assert_eq!(
            &in_database(&mut conn, table).await,
            columns,
            "table {table}: src/store/schema.rs differs from the migrations; regenerate it with ./scripts/schema"
        );
    }

    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let tables: Vec<String> = diesel::sql_query(
        "SELECT tablename::text AS name FROM pg_tables
          WHERE schemaname = current_schema() AND tablename <> '__diesel_schema_migrations'
          ORDER BY 1",
    )
    .load::<Name>(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|n| n.name)
    .collect();
    let declared_names: Vec<_> = declared_tables.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        tables, declared_names,
        "tables in the database vs src/store/schema.rs"
    );
}

#[test]
fn the_comparison_sees_types_and_nullability() {
    // Guards the guard: a check that always passed would be worthless.
    let runs = declared::<runs::table>();
    let params = runs.iter().find(|c| c.name == "params").unwrap();
    assert_eq!((params.type_oid, params.nullable), (3802, true)); // jsonb
    let id = runs.iter().find(|c| c.name == "id").unwrap();
    assert_eq!((id.type_oid, id.nullable), (2950, false)); // uuid
    let iteration = declared::<stages::table>()
        .into_iter()
        .find(|c| c.name == "iteration")
        .unwrap();
    assert_eq!((iteration.type_oid, iteration.nullable), (23, false)); // int4
}
