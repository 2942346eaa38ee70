//! Request bodies read strictly: one JSON object, no key twice (which a lenient parser resolves
//! silently, last one winning, while manifests refuse it), nested at most [`MAX_DEPTH`] deep.

use serde::de::DeserializeSeed;
use serde_json::{Map, Value};

/// The deepest nesting a request body may have.
pub const MAX_DEPTH: usize = 32;

/// Parses a body that must be one JSON object.
///
/// # Errors
/// A message naming what is wrong: not JSON, not an object, a duplicate key, too deep.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    // The body's size is bounded by the route; nodes and values need no limit of their own.
    let budget = crate::strict::Budget::new(crate::strict::Limits {
        nodes: usize::MAX,
        depth: MAX_DEPTH,
        scalar_bytes: usize::MAX,
        mapping: "object",
    });
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = budget
        .seed()
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| format!("the body is not valid JSON: {error}"))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("the body must be a JSON object".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_one_object_without_repeated_keys_nor_deep_nesting() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        let cases = [
            (r#"{"name": "a", "x": {"y": [1, 2]}}"#.to_owned(), "ok"),
            (
                r#"{"name": "a", "name": "b"}"#.to_owned(),
                "the key `name` appears twice",
            ),
            (
                r#"{"x": {"k": 1, "k": 2}}"#.to_owned(),
                "the key `k` appears twice",
            ),
            ("[1, 2]".to_owned(), "must be a JSON object"),
            (r#"{"a": 1} trailing"#.to_owned(), "not valid JSON"),
            (deep, "nested more than 32 levels deep"),
        ];
        for (body, expected) in cases {
            let outcome = match parse_object(body.as_bytes()) {
                Ok(_) => "ok".to_owned(),
                Err(message) => message,
            };
            assert!(outcome.contains(expected), "{body}: {outcome}");
        }
    }
}
