//! A live object's own fields, kept as the JSON text the server sent until a path reads them.
//!
//! A no-op plan of a hundred thousand rooms reads every live object, and builds a map of
//! owned keys and values for none of them: [`LiveFields::holds`] tells whether the fields
//! hold what a manifest asks straight from the text. Building those maps was a third of the
//! live side's CPU and most of its memory (whose fresh pages the kernel must zero).
//!
//! # Guarantees
//! - **The text and the map say the same.** Reading the fields (`Deref`) parses the text,
//!   once; changing them (`DerefMut`) drops the text, so it never describes fields that have
//!   changed since.
//! - **`holds` answers as the map would**: for each field asked about,
//!   `map.get(field).unwrap_or(&Value::Null) == value`, with `serde_json`'s own equality
//!   (numbers as `serde_json` reads them, strings unescaped). `holds_agrees_with_the_map`
//!   checks it on the edge cases; a text it cannot read is "not held", and the plan then
//!   compares the map.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// An object's own fields: JSON text, parsed on first use, or a map.
#[derive(Clone, Debug, Default)]
pub struct LiveFields {
    /// The fields as one JSON object's text, while they are as they came.
    text: Option<Box<str>>,
    /// The fields parsed; always set when `text` is `None`.
    parsed: OnceLock<Map<String, Value>>,
}

impl From<Map<String, Value>> for LiveFields {
    fn from(map: Map<String, Value>) -> LiveFields {
        LiveFields {
            text: None,
            parsed: OnceLock::from(map),
        }
    }
}

impl PartialEq for LiveFields {
    fn eq(&self, other: &LiveFields) -> bool {
        **self == **other
    }
}

impl Deref for LiveFields {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        self.parsed
            .get_or_init(|| parse_object(self.text.as_deref().unwrap_or("{}")))
    }
}

impl DerefMut for LiveFields {
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        if let Some(text) = self.text.take()
            && self.parsed.get().is_none()
        {
            self.parsed = OnceLock::from(parse_object(&text));
        }
        if self.parsed.get().is_none() {
            self.parsed = OnceLock::from(Map::new());
        }
        self.parsed
            .get_mut()
            .expect("the fields were parsed just above")
    }
}

/// The fields of a text [`FieldsText`] wrote: keys escaped by `serde_json` and values the
/// parser had accepted, so only a defect of ours could make it fail.
fn parse_object(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).expect("fields kept as text are one JSON object")
}

impl LiveFields {
    /// The fields as a map of their own.
    pub fn to_map(&self) -> Map<String, Value> {
        (**self).clone()
    }

    /// Whether every field of `wanted` that `skip` does not name holds here exactly that
    /// value, an absent field holding null. Reads the text when the map was never built.
    pub fn holds(&self, wanted: &Map<String, Value>, skip: impl Fn(&str) -> bool) -> bool {
        if let Some(map) = self.parsed.get() {
            return wanted.iter().all(|(field, value)| {
                skip(field) || map.get(field).unwrap_or(&Value::Null) == value
            });
        }
        let Some(text) = self.text.as_deref() else {
            return wanted.values().all(Value::is_null);
        };
        let asked = wanted
            .iter()
            .filter(|(field, value)| !skip(field) && !value.is_null())
            .count();
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let seen = serde::Deserializer::deserialize_map(
            &mut deserializer,
            FieldsHolding {
                wanted,
                skip: &skip,
            },
        );
        // Each non-null field asked about is met once in a text without repeated keys; a
        // repeated one (the map keeps its last value) is "not held", left to the map.
        matches!(seen, Ok(count) if count == asked) && deserializer.end().is_ok()
    }
}

/// Writes an object's fields as one JSON object's text, field by field as a parser meets
/// them, each value as it stood in the source.
#[derive(Default)]
pub(crate) struct FieldsText {
    text: String,
}

impl FieldsText {
    pub(crate) fn push(&mut self, key: &str, key_was_escaped: bool, value: &RawValue) {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        if key_was_escaped {
            // Written again with its escapes; a string always serialises.
            self.text
                .push_str(&serde_json::to_string(key).unwrap_or_default());
        } else {
            self.text.push('"');
            self.text.push_str(key);
            self.text.push('"');
        }
        self.text.push(':');
        self.text.push_str(value.get());
    }

    pub(crate) fn finish(mut self) -> LiveFields {
        if self.text.is_empty() {
            self.text.push('{');
        }
        self.text.push('}');
        LiveFields {
            text: Some(self.text.into_boxed_str()),
            parsed: OnceLock::new(),
        }
    }
}

/// A map key as the parser gives it: borrowed from the text when it holds no escapes.
pub(crate) struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_owned()))
    }
}

/// Counts the fields of an object that hold what `wanted` asks; fails at the first that
/// does not.
struct FieldsHolding<'w, F> {
    wanted: &'w Map<String, Value>,
    skip: &'w F,
}

impl<'de, F: Fn(&str) -> bool> Visitor<'de> for FieldsHolding<'_, F> {
    type Value = usize;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object's fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut held = 0;
        while let Some(key) = map.next_key_seed(Key)? {
            match self.wanted.get(key.as_ref()) {
                Some(value) if !(self.skip)(&key) => {
                    map.next_value_seed(Equals(value))?;
                    held += usize::from(!value.is_null());
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(held)
    }
}

/// Reads a value and succeeds only if it equals this one as `serde_json` compares values:
/// numbers built as its `Value` builds them, so that `1` and `1.0` differ as they do there.
struct Equals<'v>(&'v Value);

const DIFFERS: &str = "differs";

impl<'de> DeserializeSeed<'de> for Equals<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Equals<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<(), E> {
        same(*self.0 == Value::Bool(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<(), E> {
        same(matches!(self.0, Value::Number(number) if *number == Number::from(value)))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<(), E> {
        same(matches!(self.0, Value::Number(number) if *number == Number::from(value)))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<(), E> {
        let read = Number::from_f64(value).map_or(Value::Null, Value::Number);
        same(*self.0 == read)
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<(), E> {
        same(matches!(self.0, Value::String(text) if text == value))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        same(self.0.is_null())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Value::Array(items) = self.0 else {
            return Err(A::Error::custom(DIFFERS));
        };
        let mut items = items.iter();
        loop {
            match items.next() {
                Some(item) => {
                    if seq.next_element_seed(Equals(item))?.is_none() {
                        return Err(A::Error::custom(DIFFERS));
                    }
                }
                None => {
                    return match seq.next_element::<IgnoredAny>()? {
                        Some(_) => Err(A::Error::custom(DIFFERS)),
                        None => Ok(()),
                    };
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Value::Object(fields) = self.0 else {
            return Err(A::Error::custom(DIFFERS));
        };
        let mut seen = 0;
        while let Some(key) = map.next_key_seed(Key)? {
            let Some(value) = fields.get(key.as_ref()) else {
                return Err(A::Error::custom(DIFFERS));
            };
            map.next_value_seed(Equals(value))?;
            seen += 1;
        }
        same(seen == fields.len())
    }
}

fn same<E: serde::de::Error>(equal: bool) -> Result<(), E> {
    if equal {
        Ok(())
    } else {
        Err(E::custom(DIFFERS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The fields of `text` kept as text, as the state's reader keeps them.
    fn kept(text: &str) -> LiveFields {
        let map: std::collections::BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(text).unwrap();
        let mut fields = FieldsText::default();
        for (key, value) in &map {
            let escaped = serde_json::to_string(key).unwrap() != format!("\"{key}\"");
            fields.push(key, escaped, value);
        }
        fields.finish()
    }

    #[test]
    fn holds_agrees_with_the_map() {
        let texts = [
            "{}",
            r#"{"name":"a","members":["sip:a@x","sip:b@x"],"disabled":false}"#,
            r#"{"name":"a","members":[],"count":1,"ratio":1.0,"big":18446744073709551615}"#,
            r#"{"name":"caf\u00e9","quote":"a\"b\\c","tab":"\t","nested":{"a":[1,{"b":null}]}}"#,
            r#"{"we\"ird":1,"n":null,"neg":-3}"#,
        ];
        let wanted = [
            json!({}),
            json!({"name": "a"}),
            json!({"name": "b"}),
            json!({"members": ["sip:a@x", "sip:b@x"]}),
            json!({"members": ["sip:b@x", "sip:a@x"]}),
            json!({"members": ["sip:a@x"]}),
            json!({"members": []}),
            json!({"disabled": false, "name": "a"}),
            json!({"disabled": null}),
            json!({"absent": null}),
            json!({"absent": false}),
            json!({"count": 1, "ratio": 1.0}),
            json!({"count": 1.0}),
            json!({"ratio": 1}),
            json!({"big": 18_446_744_073_709_551_615_u64}),
            json!({"name": "café", "quote": "a\"b\\c", "tab": "\t"}),
            json!({"nested": {"a": [1, {"b": null}]}}),
            json!({"nested": {"a": [1, {}]}}),
            json!({"nested": {"a": [1, {"b": null, "c": 1}]}}),
            json!({"nested": {"a": [1]}}),
            json!({"we\"ird": 1, "n": null, "neg": -3}),
            json!({"neg": -3.0}),
            json!({"n": "null"}),
        ];
        let mut checked = 0;
        for text in texts {
            let map: Map<String, Value> = serde_json::from_str(text).unwrap();
            for wanted in &wanted {
                let Value::Object(wanted) = wanted else {
                    unreachable!()
                };
                for skip in [None, Some("name"), Some("members")] {
                    let skip = |field: &str| Some(field) == skip;
                    let expected = wanted.iter().all(|(field, value)| {
                        skip(field) || map.get(field).unwrap_or(&Value::Null) == value
                    });
                    let fields = kept(text);
                    assert_eq!(
                        fields.holds(wanted, skip),
                        expected,
                        "{text} holding {wanted:?}"
                    );
                    // The text was never parsed, and parses to the map.
                    assert!(fields.parsed.get().is_none());
                    assert_eq!(*fields, map);
                    // Parsed, it answers the same.
                    assert_eq!(fields.holds(wanted, skip), expected);
                    checked += usize::from(expected);
                }
            }
        }
        // Both answers were given, many times each.
        assert!(checked > 20, "{checked}");
    }

    #[test]
    fn a_repeated_key_is_left_to_the_map() {
        let fields = LiveFields {
            text: Some(r#"{"name":"a","name":"b"}"#.into()),
            parsed: OnceLock::new(),
        };
        let wanted = json!({"name": "b"});
        assert!(!fields.holds(wanted.as_object().unwrap(), |_| false));
        assert_eq!(fields["name"], "b");
    }

    #[test]
    fn changed_fields_drop_their_text() {
        let mut fields = kept(r#"{"name":"a","disabled":false}"#);
        fields.insert("disabled".to_owned(), Value::Bool(true));
        assert!(fields.text.is_none());
        let wanted = json!({"disabled": true});
        assert!(fields.holds(wanted.as_object().unwrap(), |_| false));
        assert_eq!(fields.clone(), fields);
    }
}
