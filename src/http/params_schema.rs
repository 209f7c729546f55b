//! The contract's schema of a run's params: a JSON object, and, since PostgreSQL's `jsonb`
//! cannot store one, no NUL character in any key or string at any depth. (A derived schema
//! would say "any object", and a client reading the contract would not know that a NUL is a
//! 400.)

use std::borrow::Cow;

use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// Any text without a NUL character.
const NO_NUL: &str = r"^[^\x00]*$";

/// The name of the recursive schema of a JSON value without NUL characters.
const JSON_VALUE: &str = "JsonValue";

/// A run's params, as the contract describes them.
pub(crate) struct RunParams;

impl PartialSchema for RunParams {
    fn schema() -> RefOr<Schema> {
        object_of(Ref::from_schema_name(JSON_VALUE).into())
            .description(Some(
                "The run's params: a JSON object. No key or string may hold a NUL character (\\u0000), which PostgreSQL cannot store.",
            ))
            .build()
            .into()
    }
}

impl ToSchema for RunParams {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RunParams")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((JSON_VALUE.to_owned(), JsonValue::schema()));
    }
}

/// Any JSON value without a NUL character in a key or string: what an answer or a message
/// may be.
pub(crate) struct JsonValue;

impl PartialSchema for JsonValue {
    fn schema() -> RefOr<Schema> {
        let value: RefOr<Schema> = Ref::from_schema_name(JSON_VALUE).into();
        let json_value = AnyOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([
                Type::Null,
                Type::Boolean,
                Type::Number,
            ])))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(NO_NUL)),
            )
            .item(ArrayBuilder::new().items(value.clone()))
            .item(object_of(value))
            .description(Some(
                "A JSON value with no NUL character in any key or string.",
            ))
            .build();
        Schema::AnyOf(json_value).into()
    }
}

impl ToSchema for JsonValue {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(JSON_VALUE)
    }
}

/// An object whose keys have no NUL and whose values are `values`.
fn object_of(values: RefOr<Schema>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NO_NUL)),
        ))
        .additional_properties(Some(values))
}
