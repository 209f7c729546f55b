//! How the model's values are stored: a run id as `uuid`, a status as its lower-case name in
//! `text`, stored JSON as `jsonb`, each readable and writable by Diesel.
//!
//! The model itself knows nothing of Diesel; the impls live here, next to the tables. Each
//! `…Proxy` struct only carries Diesel's derives for the type it wraps (`foreign_derive`):
//! that type can then be used in queries (`runs::status.eq(RunStatus::Running)`) and read
//! from rows.

use std::io::Write;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::{
    AppearsOnTable, AsExpression, Expression, SelectableExpression, ValidGrouping, is_aggregate,
};
use diesel::pg::{Pg, PgValue};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{Jsonb, Text, Uuid as SqlUuid};

use crate::model::{JsonText, RawJson, RunId, RunStatus, StageStatus};

#[derive(AsExpression, FromSqlRow)]
#[diesel(foreign_derive)]
#[diesel(sql_type = SqlUuid)]
#[allow(dead_code)]
struct RunIdProxy(RunId);

impl ToSql<SqlUuid, Pg> for RunId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.as_uuid().as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<SqlUuid, Pg> for RunId {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        <uuid::Uuid as FromSql<SqlUuid, Pg>>::from_sql(bytes).map(RunId::from_uuid)
    }
}

/// A status is stored as its lower-case name.
macro_rules! text_status {
    ($status:ident, $proxy:ident) => {
        #[derive(AsExpression, FromSqlRow)]
        #[diesel(foreign_derive)]
        #[diesel(sql_type = Text)]
        #[allow(dead_code)]
        struct $proxy($status);

        impl ToSql<Text, Pg> for $status {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                out.write_all(self.as_str().as_bytes())?;
                Ok(IsNull::No)
            }
        }

        impl FromSql<Text, Pg> for $status {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = std::str::from_utf8(bytes.as_bytes())?;
                Ok(text.parse()?)
            }
        }
    };
}

text_status!(RunStatus, RunStatusProxy);
text_status!(StageStatus, StageStatusProxy);

/// The version byte of PostgreSQL's binary `jsonb` format: the JSON text follows it.
const JSONB_VERSION: u8 = 1;

#[derive(AsExpression, FromSqlRow)]
#[diesel(foreign_derive)]
#[diesel(sql_type = Jsonb)]
#[allow(dead_code)]
struct RawJsonProxy(RawJson);

/// Stored JSON is read as the text PostgreSQL returns, without parsing it into numbers.
impl FromSql<Jsonb, Pg> for RawJson {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let bytes = value.as_bytes();
        let (version, text) = bytes
            .split_first()
            .ok_or("an empty jsonb value from the database")?;
        if *version != JSONB_VERSION {
            return Err(format!("unsupported jsonb format version {version}").into());
        }
        let text = std::str::from_utf8(text)?;
        Ok(RawJson::parse(text.to_owned())?)
    }
}

impl ToSql<Jsonb, Pg> for RawJson {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        jsonb_text(self.as_str(), out)
    }
}

/// JSON text in PostgreSQL's binary `jsonb` format: the version byte, then the text.
fn jsonb_text(text: &str, out: &mut Output<'_, '_, Pg>) -> serialize::Result {
    out.write_all(&[JSONB_VERSION])?;
    out.write_all(text.as_bytes())?;
    Ok(IsNull::No)
}

#[derive(AsExpression)]
#[diesel(foreign_derive)]
#[diesel(sql_type = Jsonb)]
#[allow(dead_code)]
struct JsonTextProxy(JsonText);

impl ToSql<Jsonb, Pg> for JsonText {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        jsonb_text(self.as_str(), out)
    }
}

/// A status written into a statement as a literal (`'completed'`) instead of bound: for the
/// statuses a statement always writes or matches, which then cost nothing to bind at every
/// execution. Its SQL depends on its value, not only on its type, so it has no static
/// query id: a statement holding one is prepared by its SQL text, unless it is sent under a
/// shape's own id (`of_static_shape`), whose SQL is checked not to vary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatusLiteral<S>(pub(crate) S);

/// A status with a lower-case name: what [`StatusLiteral`] writes.
pub(crate) trait StatusName: Copy + Send + Sync + 'static {
    fn name(self) -> &'static str;
}

impl StatusName for RunStatus {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl StatusName for StageStatus {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl<S> Expression for StatusLiteral<S> {
    type SqlType = Text;
}

impl<S: StatusName> QueryFragment<Pg> for StatusLiteral<S> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // A name is lower-case letters and `_` only (tested below): nothing to quote.
        out.push_sql("'");
        out.push_sql(self.0.name());
        out.push_sql("'");
        Ok(())
    }
}

impl<S> QueryId for StatusLiteral<S> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<S, QS> AppearsOnTable<QS> for StatusLiteral<S> {}

impl<S, QS> SelectableExpression<QS> for StatusLiteral<S> {}

impl<S, GB> ValidGrouping<GB> for StatusLiteral<S> {
    type IsAggregate = is_aggregate::Never;
}

/// The first attempt of a stage, `1`, written into a statement instead of bound: what the
/// started stage of a node commit's next node always records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FirstAttempt;

impl Expression for FirstAttempt {
    type SqlType = diesel::sql_types::Integer;
}

impl QueryFragment<Pg> for FirstAttempt {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("1");
        Ok(())
    }
}

impl QueryId for FirstAttempt {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<QS> AppearsOnTable<QS> for FirstAttempt {}

impl<QS> SelectableExpression<QS> for FirstAttempt {}

impl<GB> ValidGrouping<GB> for FirstAttempt {
    type IsAggregate = is_aggregate::Never;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_name_is_a_literal_with_nothing_to_quote() {
        let names = RunStatus::ALL
            .iter()
            .map(|s| s.name())
            .chain(StageStatus::ALL.iter().map(|s| s.name()));
        for name in names {
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name:?}"
            );
        }
    }

    #[test]
    fn a_status_literal_is_written_into_the_statement_not_bound() {
        use crate::store::schema::stages;
        use diesel::prelude::*;
        let query = stages::table
            .filter(stages::status.eq(StatusLiteral(StageStatus::Started)))
            .select(stages::run_id);
        let sql = diesel::debug_query::<Pg, _>(&query).to_string();
        assert!(sql.contains("\"stages\".\"status\" = 'started'"), "{sql}");
        assert!(sql.contains("binds: []"), "{sql}");
    }

    #[test]
    fn the_first_attempt_is_written_into_the_statement_not_bound() {
        use crate::store::schema::stages;
        use diesel::prelude::*;
        let query = stages::table
            .filter(stages::attempt.eq(FirstAttempt))
            .select(stages::run_id);
        let sql = diesel::debug_query::<Pg, _>(&query).to_string();
        assert!(sql.contains("\"stages\".\"attempt\" = 1"), "{sql}");
        assert!(sql.contains("binds: []"), "{sql}");
    }
}
