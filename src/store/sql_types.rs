//! How the model's values are stored: a run id as `uuid`, a status as its lower-case name in
//! `text`, stored JSON as `jsonb`, each readable and writable by Diesel.
//!
//! The model itself knows nothing of Diesel; the impls live here, next to the tables. Each
//! `…Proxy` struct only carries Diesel's derives for the type it wraps (`foreign_derive`):
//! that type can then be used in queries (`runs::status.eq(RunStatus::Running)`) and read
//! from rows.

use std::io::Write;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
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
        out.write_all(&[JSONB_VERSION])?;
        out.write_all(self.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

#[derive(AsExpression)]
#[diesel(foreign_derive)]
#[diesel(sql_type = Jsonb)]
#[allow(dead_code)]
struct JsonTextProxy(JsonText);

impl ToSql<Jsonb, Pg> for JsonText {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&[JSONB_VERSION])?;
        out.write_all(self.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}
