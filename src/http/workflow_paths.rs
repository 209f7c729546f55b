//! Each registered workflow's own `POST /workflows/<name>/execute` in the contract, with its
//! params' JSON Schema as the request body (a JSON workflow's is any object), so that a
//! client (or the fuzz) knows what each workflow takes.
//!
//! The schemas come from `schemars` (JSON Schema 2020-12, which OpenAPI 3.1 uses). Three
//! things are added to each so that the contract says exactly what the server accepts:
//! PostgreSQL's `jsonb` cannot store a NUL character, so every string and key is `^[^\x00]*$`;
//! a sized integer (`"format": "uint32"`) gets the bounds of its size; and the body is
//! required when the params have required fields. Their `$defs` become components named
//! `<workflow>.<type>`.

use serde_json::{Map, Value, json};

use crate::Registry;

/// Text without a NUL character.
const NO_NUL: &str = r"^[^\x00]*$";

/// The generic execute path, whose operation each workflow's copies.
const GENERIC: &str = "/workflows/{name}/execute";

/// Adds each of `registry`'s workflows' execute path to `spec` (an OpenAPI document).
pub(crate) fn add_workflow_paths(spec: &mut Value, registry: &Registry) {
    // The body is optional (none is no params), but when sent it is an object: `null` is
    // refused, so the schema must not offer it (utoipa writes an `Option` body as nullable).
    if let Some(body) = spec["paths"][GENERIC]["post"].get_mut("requestBody") {
        body["required"] = json!(false);
        body["content"]["application/json"]["schema"] =
            json!({"$ref": "#/components/schemas/RunParams"});
    }
    let Some(generic) = spec["paths"][GENERIC].get("post").cloned() else {
        return;
    };
    for def in registry.iter() {
        let name = def.name();
        let (body, required) = match def.params_schema() {
            Some(mut schema) => {
                let defs = take_defs(&mut schema);
                for (def_name, mut def_schema) in defs {
                    rewrite_refs(&mut def_schema, name);
                    tighten(&mut def_schema);
                    spec["components"]["schemas"][format!("{name}.{def_name}")] = def_schema;
                }
                rewrite_refs(&mut schema, name);
                tighten(&mut schema);
                let required = schema["required"].as_array().is_some_and(|r| !r.is_empty());
                (schema, required)
            }
            None => (json!({"$ref": "#/components/schemas/RunParams"}), false),
        };
        let mut operation = generic.clone();
        operation["operationId"] = json!(format!("execute_{name}"));
        operation["summary"] = json!(format!("Starts a run of {name}"));
        operation["description"] = json!(format!(
            "{}\n\nStarts a run of this workflow here and streams its progress as Server-Sent Events, or, with `?wait=true`, answers with the final run.",
            def.description()
        ));
        if let Some(parameters) = operation["parameters"].as_array_mut() {
            parameters.retain(|p| p["in"] != "path");
        }
        operation["requestBody"] = json!({
            "description": "The run's params",
            "required": required,
            "content": {"application/json": {"schema": body}},
        });
        if let Some(bad) = operation["responses"].get_mut("400") {
            bad["description"] = json!(
                "The body does not fit the workflow's params (the message names the field and what was expected), or `wait` is not a boolean"
            );
        }
        if let Some(responses) = operation["responses"].as_object_mut() {
            responses.remove("404");
        }
        spec["paths"][format!("/workflows/{name}/execute")] = json!({"post": operation});
    }
}

/// Removes and returns the schema's `$defs` (and its `$schema` keyword, which an embedded
/// schema does not carry).
fn take_defs(schema: &mut Value) -> Map<String, Value> {
    let Some(root) = schema.as_object_mut() else {
        return Map::new();
    };
    root.remove("$schema");
    match root.remove("$defs") {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    }
}

/// Points `#/$defs/X` references at the components they become.
fn rewrite_refs(schema: &mut Value, workflow: &str) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get_mut("$ref")
                && let Some(def) = target.strip_prefix("#/$defs/")
            {
                *target = format!("#/components/schemas/{workflow}.{def}");
            }
            map.values_mut().for_each(|v| rewrite_refs(v, workflow));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, workflow)),
        _ => {}
    }
}

/// Whether a schema's `type` is, or includes, `kind`.
fn has_type(schema: &Map<String, Value>, kind: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == kind,
        Some(Value::Array(types)) => types.iter().any(|t| t == kind),
        _ => false,
    }
}

/// The bounds of a sized integer format.
fn integer_bounds(format: &str) -> Option<(i128, i128)> {
    Some(match format {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" => (i64::MIN.into(), i64::MAX.into()),
        "uint8" => (0, u8::MAX.into()),
        "uint16" => (0, u16::MAX.into()),
        "uint32" => (0, u32::MAX.into()),
        "uint64" | "uint" => (0, u64::MAX.into()),
        _ => return None,
    })
}

/// `n` as a JSON number.
fn number(n: i128) -> Value {
    match i64::try_from(n) {
        Ok(n) => n.into(),
        Err(_) => u64::try_from(n).unwrap_or(u64::MAX).into(),
    }
}

/// Adds what the server checks beyond the schema: no NUL in strings and keys, and the
/// bounds of sized integers.
fn tighten(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if has_type(map, "string") && !map.contains_key("pattern") {
                map.insert("pattern".to_owned(), json!(NO_NUL));
            }
            if has_type(map, "object") && !map.contains_key("propertyNames") {
                map.insert(
                    "propertyNames".to_owned(),
                    json!({"type": "string", "pattern": NO_NUL}),
                );
            }
            let bounds = map
                .get("format")
                .and_then(Value::as_str)
                .and_then(integer_bounds);
            if let (true, Some((low, high))) = (has_type(map, "integer"), bounds) {
                let current = map.get("minimum").and_then(Value::as_f64);
                if current.is_none_or(|c| c < low as f64) {
                    map.insert("minimum".to_owned(), number(low));
                }
                map.entry("maximum").or_insert(number(high));
            }
            for (key, value) in map.iter_mut() {
                // `enum` and `const` values, `default` and `examples` are data, not schemas.
                if !matches!(key.as_str(), "enum" | "const" | "default" | "examples") {
                    tighten(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tighten),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_keys_and_sized_integers_say_what_the_server_accepts() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "note": {"type": ["string", "null"], "default": "x"},
                "keep": {"type": "integer", "format": "uint32", "minimum": 0},
                "kind": {"enum": ["a", "b"]},
            },
        });
        tighten(&mut schema);
        assert_eq!(schema["properties"]["text"]["pattern"], NO_NUL);
        assert_eq!(schema["properties"]["note"]["pattern"], NO_NUL);
        assert_eq!(schema["properties"]["note"]["default"], "x");
        assert_eq!(schema["properties"]["keep"]["maximum"], u32::MAX);
        assert_eq!(schema["properties"]["keep"]["minimum"], 0);
        assert_eq!(schema["propertyNames"]["pattern"], NO_NUL);
        assert_eq!(schema["properties"]["kind"], json!({"enum": ["a", "b"]}));
    }

    #[test]
    fn definitions_become_components_named_after_the_workflow() {
        let mut schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "properties": {"item": {"$ref": "#/$defs/Item"}},
            "$defs": {"Item": {"type": "object"}},
        });
        let defs = take_defs(&mut schema);
        rewrite_refs(&mut schema, "summarize");
        assert_eq!(defs.keys().collect::<Vec<_>>(), ["Item"]);
        assert_eq!(
            schema,
            json!({"properties": {"item": {"$ref": "#/components/schemas/summarize.Item"}}})
        );
    }
}
