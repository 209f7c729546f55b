//! The JSON Schema an interrupt's answer must fit, and the check an answer passes before it
//! is recorded.
//!
//! The schemas come from `schemars` (a node asks with
//! [`NodeContext::interrupt_for`](crate::NodeContext::interrupt_for)), so the check knows the
//! keywords schemars emits, and not the whole of JSON Schema: a schema holding an assertion
//! it does not know is refused when the question is asked, rather than half checked when it
//! is answered.

use std::cell::Cell;
use std::fmt;

use serde_json::{Map, Value};

use super::json_kind;

/// Keywords that describe a value without constraining it.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "format",
    "contentEncoding",
    "contentMediaType",
];

/// Keywords the check asserts.
const ASSERTIONS: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "$ref",
];

/// Where an answer does not fit its schema, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Misfit {
    /// Where in the answer, as `answer.items[0].name`.
    pub(crate) at: String,
    /// The value there, as JSON (shortened if long); `None` if it is not the value itself
    /// that misfits (a field that should not be there, a repeated item).
    pub(crate) found: Option<String>,
    /// What the schema asks for there.
    pub(crate) why: String,
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.why)
    }
}

/// An interrupt's answer schema, checked to hold only keywords [`AnswerSchema::check`] knows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AnswerSchema(Value);

impl AnswerSchema {
    /// The schema of `A`, as schemars generates it; an error naming the first keyword the
    /// check does not know.
    pub(crate) fn of<A: schemars::JsonSchema>() -> Result<Self, String> {
        Self::new(schemars::schema_for!(A).to_value())
    }

    /// `schema`, if every keyword in it is known.
    pub(crate) fn new(schema: Value) -> Result<Self, String> {
        known_keywords(&schema, "#")?;
        Ok(AnswerSchema(schema))
    }

    /// A schema read back from an interrupt: checked when it was asked, so not again (one
    /// written by hand with keywords the check does not know is checked as far as it knows).
    pub(crate) fn stored(schema: Value) -> Self {
        AnswerSchema(schema)
    }

    /// The schema as JSON, to store.
    pub(crate) fn as_value(&self) -> &Value {
        &self.0
    }

    /// `Ok` if `answer` fits; otherwise where it first does not, from `answer`.
    pub(crate) fn check(&self, answer: &Value) -> Result<(), Misfit> {
        Checker {
            root: &self.0,
            depth: Cell::new(0),
        }
        .fits(&self.0, answer, "answer")
    }
}

/// Refuses a keyword that is neither an assertion the check makes nor an annotation.
fn known_keywords(schema: &Value, at: &str) -> Result<(), String> {
    let map = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(map) => map,
        other => {
            return Err(format!(
                "the schema at {at} is {other}, not an object or a boolean"
            ));
        }
    };
    for (keyword, value) in map {
        let here = format!("{at}/{keyword}");
        match keyword.as_str() {
            "properties" | "$defs" | "definitions" => {
                for (name, schema) in value.as_object().into_iter().flatten() {
                    known_keywords(schema, &format!("{here}/{name}"))?;
                }
            }
            "additionalProperties" | "items" | "not" => known_keywords(value, &here)?,
            "prefixItems" | "allOf" | "anyOf" | "oneOf" => {
                for (i, schema) in value.as_array().into_iter().flatten().enumerate() {
                    known_keywords(schema, &format!("{here}/{i}"))?;
                }
            }
            "$ref"
                if !value
                    .as_str()
                    .is_some_and(|r| r == "#" || r.starts_with("#/")) =>
            {
                return Err(format!(
                    "{here} is {value}: only references inside the schema (\"#/...\") are checked"
                ));
            }
            k if ASSERTIONS.contains(&k) || ANNOTATIONS.contains(&k) => {}
            k => {
                return Err(format!(
                    "{here}: answers cannot be checked against {k:?} (the check knows {}); \
                     ask with a type whose schema does not use it",
                    ASSERTIONS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// How deep the check goes, in schemas entered (each `$ref` followed, each nested value):
/// far past any real answer, and short of the stack's end for a schema whose references
/// loop without descending into the answer (`{"$ref": "#"}`, from a hand-written
/// `JsonSchema` impl or the database).
const MAX_DEPTH: u32 = 256;

struct Checker<'s> {
    root: &'s Value,
    depth: Cell<u32>,
}

impl<'s> Checker<'s> {
    fn fits(&self, schema: &'s Value, value: &Value, at: &str) -> Result<(), Misfit> {
        if self.depth.get() >= MAX_DEPTH {
            return Err(misfit(
                at,
                format!(
                    "the answer and its schema nest deeper than {MAX_DEPTH} levels here (do the schema's references loop?)"
                ),
            ));
        }
        self.depth.set(self.depth.get() + 1);
        let fits = self.fits_here(schema, value, at);
        self.depth.set(self.depth.get() - 1);
        fits.map_err(|mut misfit| {
            if misfit.at == at && misfit.found.is_none() {
                misfit.found = Some(shown(value));
            }
            misfit
        })
    }

    fn fits_here(&self, schema: &'s Value, value: &Value, at: &str) -> Result<(), Misfit> {
        let map = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Object(map) => map,
            _ => return Err(misfit(at, "nothing is allowed here")),
        };
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            self.fits(self.resolve(reference, at)?, value, at)?;
        }
        if let Some(types) = map.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !allowed.iter().any(|t| is_of_type(value, t)) {
                return Err(misfit(
                    at,
                    format!(
                        "expected {}, found {}",
                        allowed.join(" or "),
                        json_kind(value)
                    ),
                ));
            }
        }
        if let Some(allowed) = map.get("enum").and_then(Value::as_array)
            && !allowed.iter().any(|a| same(a, value))
        {
            let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(misfit(at, format!("expected one of {}", listed.join(", "))));
        }
        if let Some(expected) = map.get("const")
            && !same(expected, value)
        {
            return Err(misfit(at, format!("expected {expected}")));
        }
        match value {
            Value::Object(object) => self.fits_object(map, object, at)?,
            Value::Array(items) => self.fits_array(map, items, at)?,
            Value::String(text) => fits_string(map, text, at)?,
            Value::Number(_) => fits_number(map, value, at)?,
            Value::Null | Value::Bool(_) => {}
        }
        self.fits_combinations(map, value, at)
    }

    fn fits_combinations(
        &self,
        map: &'s Map<String, Value>,
        value: &Value,
        at: &str,
    ) -> Result<(), Misfit> {
        for schema in map
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.fits(schema, value, at)?;
        }
        if let Some(any) = map.get("anyOf").and_then(Value::as_array) {
            let mut misfits = Vec::new();
            for schema in any {
                match self.fits(schema, value, at) {
                    Ok(()) => {
                        misfits.clear();
                        break;
                    }
                    Err(m) => misfits.push(m),
                }
            }
            if !misfits.is_empty() {
                return Err(none_fits(at, misfits));
            }
        }
        if let Some(one) = map.get("oneOf").and_then(Value::as_array) {
            let (fitting, misfits): (Vec<_>, Vec<_>) = one
                .iter()
                .map(|schema| self.fits(schema, value, at))
                .partition(Result::is_ok);
            match fitting.len() {
                1 => {}
                0 => {
                    return Err(none_fits(
                        at,
                        misfits.into_iter().filter_map(Result::err).collect(),
                    ));
                }
                n => {
                    return Err(misfit(
                        at,
                        format!("fits {n} of the alternatives, not exactly one"),
                    ));
                }
            }
        }
        if let Some(not) = map.get("not")
            && self.fits(not, value, at).is_ok()
        {
            return Err(misfit(at, format!("must not fit {not}")));
        }
        Ok(())
    }

    fn fits_object(
        &self,
        map: &'s Map<String, Value>,
        object: &Map<String, Value>,
        at: &str,
    ) -> Result<(), Misfit> {
        for name in map
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = name.as_str()
                && !object.contains_key(name)
            {
                return Err(misfit(at, format!("the field {name:?} is required")));
            }
        }
        let properties = map.get("properties").and_then(Value::as_object);
        for (name, item) in object {
            let here = format!("{at}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(schema) => self.fits(schema, item, &here)?,
                None => match map.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        let known: Vec<&str> = properties
                            .into_iter()
                            .flatten()
                            .map(|(k, _)| k.as_str())
                            .collect();
                        return Err(misfit(
                            &here,
                            format!("no such field (the fields are {})", known.join(", ")),
                        ));
                    }
                    Some(schema) => self.fits(schema, item, &here)?,
                    None => {}
                },
            }
        }
        let count = object.len() as u64;
        if let Some(min) = map.get("minProperties").and_then(Value::as_u64)
            && count < min
        {
            return Err(misfit(
                at,
                format!("expected at least {min} fields, found {count}"),
            ));
        }
        if let Some(max) = map.get("maxProperties").and_then(Value::as_u64)
            && count > max
        {
            return Err(misfit(
                at,
                format!("expected at most {max} fields, found {count}"),
            ));
        }
        Ok(())
    }

    fn fits_array(
        &self,
        map: &'s Map<String, Value>,
        items: &[Value],
        at: &str,
    ) -> Result<(), Misfit> {
        let prefix = map.get("prefixItems").and_then(Value::as_array);
        let leading = prefix.map_or(0, Vec::len);
        for (i, item) in items.iter().enumerate() {
            let here = format!("{at}[{i}]");
            match prefix.and_then(|p| p.get(i)) {
                Some(schema) => self.fits(schema, item, &here)?,
                None if i >= leading => {
                    if let Some(schema) = map.get("items") {
                        self.fits(schema, item, &here)?;
                    }
                }
                None => {}
            }
        }
        let count = items.len() as u64;
        if let Some(min) = map.get("minItems").and_then(Value::as_u64)
            && count < min
        {
            return Err(misfit(
                at,
                format!("expected at least {min} items, found {count}"),
            ));
        }
        if let Some(max) = map.get("maxItems").and_then(Value::as_u64)
            && count > max
        {
            return Err(misfit(
                at,
                format!("expected at most {max} items, found {count}"),
            ));
        }
        if map.get("uniqueItems") == Some(&Value::Bool(true)) {
            for (i, item) in items.iter().enumerate() {
                if items[..i].iter().any(|earlier| same(earlier, item)) {
                    return Err(misfit(&format!("{at}[{i}]"), "repeats an earlier item"));
                }
            }
        }
        Ok(())
    }

    /// The schema `reference` ("#" or "#/a/b") points to in the root schema.
    fn resolve(&self, reference: &str, at: &str) -> Result<&'s Value, Misfit> {
        let pointer = reference.trim_start_matches('#');
        self.root.pointer(pointer).ok_or_else(|| {
            misfit(
                at,
                format!("the schema's reference {reference:?} leads nowhere"),
            )
        })
    }
}

fn fits_string(map: &Map<String, Value>, text: &str, at: &str) -> Result<(), Misfit> {
    let length = text.chars().count() as u64;
    if let Some(min) = map.get("minLength").and_then(Value::as_u64)
        && length < min
    {
        return Err(misfit(
            at,
            format!("expected at least {min} characters, found {length}"),
        ));
    }
    if let Some(max) = map.get("maxLength").and_then(Value::as_u64)
        && length > max
    {
        return Err(misfit(
            at,
            format!("expected at most {max} characters, found {length}"),
        ));
    }
    Ok(())
}

fn fits_number(map: &Map<String, Value>, value: &Value, at: &str) -> Result<(), Misfit> {
    let Some(n) = value.as_f64() else {
        return Ok(());
    };
    let bound = |keyword: &str| map.get(keyword).and_then(Value::as_f64);
    if let Some(min) = bound("minimum")
        && n < min
    {
        return Err(misfit(
            at,
            format!("expected at least {min}, found {value}"),
        ));
    }
    if let Some(max) = bound("maximum")
        && n > max
    {
        return Err(misfit(at, format!("expected at most {max}, found {value}")));
    }
    if let Some(min) = bound("exclusiveMinimum")
        && n <= min
    {
        return Err(misfit(
            at,
            format!("expected more than {min}, found {value}"),
        ));
    }
    if let Some(max) = bound("exclusiveMaximum")
        && n >= max
    {
        return Err(misfit(
            at,
            format!("expected less than {max}, found {value}"),
        ));
    }
    if let Some(step) = bound("multipleOf")
        && step > 0.0
        && (n / step).fract() != 0.0
    {
        return Err(misfit(
            at,
            format!("expected a multiple of {step}, found {value}"),
        ));
    }
    Ok(())
}

fn misfit(at: &str, why: impl Into<String>) -> Misfit {
    Misfit {
        at: at.to_owned(),
        found: None,
        why: why.into(),
    }
}

/// `value` as JSON, at most about 200 characters of it.
fn shown(value: &Value) -> String {
    const LONGEST: usize = 200;
    let text = value.to_string();
    match text.char_indices().nth(LONGEST) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// A misfit for a value that fits none of several alternatives: the one that went deepest,
/// since it is usually the alternative the answer meant.
fn none_fits(at: &str, misfits: Vec<Misfit>) -> Misfit {
    match misfits.into_iter().max_by_key(|m| m.at.len()) {
        Some(deepest) if deepest.at != at => deepest,
        Some(closest) => misfit(
            at,
            format!("fits none of the alternatives ({})", closest.why),
        ),
        None => misfit(at, "fits none of the alternatives"),
    }
}

/// Equality as JSON Schema means it: numbers by value (`1` is `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

fn is_of_type(value: &Value, name: &str) -> bool {
    match (name, value) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Review {
        approved: bool,
        reviewer: String,
        score: Option<u8>,
        tags: Vec<Tag>,
        pair: (u32, String),
    }

    #[derive(Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Tag {
        Style,
        Facts,
        Other { note: String },
    }

    fn review() -> AnswerSchema {
        AnswerSchema::of::<Review>().unwrap()
    }

    fn ok() -> Value {
        json!({"approved": true, "reviewer": "ann", "score": 7, "tags": ["style", {"other": {"note": "x"}}], "pair": [1, "a"]})
    }

    fn misfit_of(answer: Value) -> String {
        review().check(&answer).unwrap_err().to_string()
    }

    #[test]
    fn an_answer_of_the_type_fits_its_schema() {
        assert_eq!(review().check(&ok()), Ok(()));
        let mut answer = ok();
        answer["reviewer"] = json!(["x".repeat(300)]);
        let found = review().check(&answer).unwrap_err().found.unwrap();
        assert!(
            found.starts_with(r#"["xxx"#) && found.ends_with('…'),
            "{found}"
        );
        assert_eq!(found.chars().count(), 201);
        let mut without_optional = ok();
        without_optional["score"] = Value::Null;
        assert_eq!(review().check(&without_optional), Ok(()));
    }

    #[test]
    fn a_misfit_names_where_and_why() {
        let mut answer = ok();
        answer["approved"] = json!("yes");
        assert_eq!(
            misfit_of(answer),
            "answer.approved: expected boolean, found a string"
        );
        let mut answer = ok();
        answer.as_object_mut().unwrap().remove("reviewer");
        assert_eq!(
            misfit_of(answer),
            "answer: the field \"reviewer\" is required"
        );
        let mut answer = ok();
        answer["extra"] = json!(1);
        assert!(misfit_of(answer).starts_with("answer.extra: no such field"));
        let mut answer = ok();
        answer["score"] = json!(300);
        assert_eq!(
            misfit_of(answer),
            "answer.score: expected at most 255, found 300"
        );
        let mut answer = ok();
        answer["score"] = json!(1.5);
        assert!(
            misfit_of(answer).starts_with("answer.score: "),
            "a fraction is no integer"
        );
        let mut answer = ok();
        answer["pair"] = json!([1, 2]);
        assert_eq!(
            misfit_of(answer),
            "answer.pair[1]: expected string, found a number"
        );
        let mut answer = ok();
        answer["pair"] = json!([1, "a", 3]);
        assert!(misfit_of(answer).starts_with("answer.pair: expected at most 2 items"));
    }

    #[test]
    fn an_enum_s_misfit_names_the_variant_it_went_deepest_into() {
        let mut answer = ok();
        answer["tags"] = json!(["style", "grammar"]);
        assert!(misfit_of(answer).starts_with("answer.tags[1]: "));
        let mut answer = ok();
        answer["tags"] = json!([{"other": {"note": 5}}]);
        assert_eq!(
            misfit_of(answer),
            "answer.tags[0].other.note: expected string, found a number"
        );
    }

    #[test]
    fn bounds_lengths_and_constants_are_checked() {
        let schema = AnswerSchema::new(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 3},
                "n": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5},
                "kind": {"const": "a"},
                "set": {"type": "array", "uniqueItems": true, "minItems": 1}
            }
        }))
        .unwrap();
        let fails = |v: Value| schema.check(&v).unwrap_err().to_string();
        assert_eq!(
            schema.check(&json!({"name": "añb", "n": 1.5, "kind": "a", "set": [1]})),
            Ok(())
        );
        assert!(fails(json!({"name": "a"})).starts_with("answer.name: expected at least 2"));
        assert!(fails(json!({"name": "abcd"})).starts_with("answer.name: expected at most 3"));
        assert!(fails(json!({"n": 0})).starts_with("answer.n: expected more than 0"));
        assert!(fails(json!({"n": 0.7})).starts_with("answer.n: expected a multiple of 0.5"));
        assert_eq!(fails(json!({"kind": "b"})), "answer.kind: expected \"a\"");
        assert_eq!(
            fails(json!({"set": [1, 1.0]})),
            "answer.set[1]: repeats an earlier item"
        );
        assert!(fails(json!({"set": []})).starts_with("answer.set: expected at least 1 item"));
    }

    #[test]
    fn a_schema_with_a_keyword_the_check_does_not_know_is_refused() {
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        struct Code {
            #[schemars(regex(pattern = "^[A-Z]{3}$"))]
            code: String,
        }
        let e = AnswerSchema::of::<Code>().unwrap_err();
        assert!(
            e.starts_with(
                "#/properties/code/pattern: answers cannot be checked against \"pattern\""
            ),
            "{e}"
        );
        let e = AnswerSchema::new(json!({"$ref": "https://example.com/s.json"})).unwrap_err();
        assert!(e.contains("only references inside the schema"), "{e}");
    }

    #[test]
    fn a_schema_whose_references_loop_is_a_misfit_not_a_stack_overflow() {
        let schema = AnswerSchema::new(json!({"$ref": "#"})).unwrap();
        let e = schema.check(&json!(true)).unwrap_err();
        assert!(e.why.contains("do the schema's references loop?"), "{e}");
        // A deep answer against a recursive schema that descends with it is checked.
        let tree = AnswerSchema::new(json!({
            "type": "object",
            "properties": {"child": {"$ref": "#"}},
            "additionalProperties": false
        }))
        .unwrap();
        let mut deep = json!({});
        for _ in 0..50 {
            deep = json!({"child": deep});
        }
        assert_eq!(tree.check(&deep), Ok(()));
        deep["child"]["x"] = json!(1);
        assert!(
            tree.check(&deep)
                .unwrap_err()
                .at
                .starts_with("answer.child.x")
        );
    }

    #[test]
    fn the_false_schema_allows_nothing_and_not_refuses_what_fits() {
        let schema = AnswerSchema::new(json!({"not": {"type": "null"}, "items": false})).unwrap();
        assert_eq!(schema.check(&json!([])), Ok(()));
        assert_eq!(
            schema.check(&json!([1])).unwrap_err().to_string(),
            "answer[0]: nothing is allowed here"
        );
        assert!(
            schema
                .check(&Value::Null)
                .unwrap_err()
                .why
                .starts_with("must not fit")
        );
    }
}
