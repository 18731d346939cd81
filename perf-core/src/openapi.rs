//! Schemas for values written either as a number or as text with a unit
//! (`512MB` or `536870912`, `100/s` or `100`), for servers that publish an
//! OpenAPI document (feature `openapi`).

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// `oneOf` a number (`number_type`: [`Type::Integer`] or [`Type::Number`])
/// and a string, with `description` and `examples`.
///
/// ```
/// use utoipa::openapi::schema::Type;
/// let schema = perf_core::openapi::number_or_text(Type::Integer, "bytes, or a size", &["512MB"]);
/// let json = serde_json::to_value(&schema).unwrap();
/// assert_eq!(json["oneOf"].as_array().unwrap().len(), 2);
/// ```
pub fn number_or_text(number_type: Type, description: &str, examples: &[&str]) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(number_type)
                .minimum(Some(0)),
        )
        .item(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .examples(examples.iter().copied())
        .into()
}
