//! A live object's own fields, kept as the JSON text the server sent until a path reads them.
//!
//! A no-op plan of a hundred thousand rooms reads every live object, and builds a map of
//! owned keys and values for none of them: [`LiveFields::holds`] tells whether the fields
//! hold what a manifest asks straight from the text. Building those maps was a third of the
//! live side's CPU and most of its memory (whose fresh pages the kernel must zero).
//!
//! # Guarantees
//! - **The text always parses.** It is checked as it is kept, by the same parser and rules
//!   that read it later (numbers in range, escapes whole, nesting within the limit).
//! - **The text and the map say the same.** Reading the fields (`Deref`) parses the text,
//!   once; changing them (`DerefMut`) drops the text, so it never describes fields that have
//!   changed since.
//! - **`holds` answers as the map would**: for each field asked about,
//!   `map.get(field).unwrap_or(&Value::Null) == value`, with `serde_json`'s own equality
//!   (numbers as `serde_json` reads them, strings unescaped). Where the text cannot tell
//!   (a key given twice, of which the map keeps the last), it answers "not held" and the
//!   plan compares the map. `holds_agrees_with_the_map` checks it on the edge cases.

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// An object's own fields: JSON text, parsed on first use, or a map.
#[derive(Clone, Debug)]
pub struct LiveFields(Fields);

#[derive(Clone, Debug)]
enum Fields {
    /// One JSON object's text, checked to parse, as it came; and its map once read.
    Text {
        text: Box<str>,
        parsed: OnceLock<Map<String, Value>>,
    },
    Map(Map<String, Value>),
}

impl Default for LiveFields {
    fn default() -> LiveFields {
        LiveFields(Fields::Map(Map::new()))
    }
}

impl From<Map<String, Value>> for LiveFields {
    fn from(map: Map<String, Value>) -> LiveFields {
        LiveFields(Fields::Map(map))
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
        match &self.0 {
            Fields::Text { text, parsed } => parsed.get_or_init(|| parse_object(text)),
            Fields::Map(map) => map,
        }
    }
}

impl DerefMut for LiveFields {
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        if let Fields::Text { text, parsed } = &mut self.0 {
            let map = parsed.take().unwrap_or_else(|| parse_object(text));
            self.0 = Fields::Map(map);
        }
        match &mut self.0 {
            Fields::Map(map) => map,
            Fields::Text { .. } => unreachable!("the fields became a map just above"),
        }
    }
}

/// The map of a text [`FieldsText::finish`] checked with the parser that reads it here.
fn parse_object(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).expect("fields kept as text were checked to parse")
}

impl LiveFields {
    /// The fields as a map of their own.
    pub fn to_map(&self) -> Map<String, Value> {
        (**self).clone()
    }

    /// Whether every field of `wanted` that `skip` does not name holds here exactly that
    /// value, an absent field holding null. Reads the text when the map was never built.
    pub fn holds(&self, wanted: &Map<String, Value>, skip: impl Fn(&str) -> bool) -> bool {
        let text = match &self.0 {
            Fields::Text { text, parsed } if parsed.get().is_none() => text,
            _ => {
                let map = &**self;
                return wanted.iter().all(|(field, value)| {
                    skip(field) || map.get(field).unwrap_or(&Value::Null) == value
                });
            }
        };
        let asked = wanted
            .iter()
            .filter(|(field, value)| !skip(field) && !value.is_null())
            .count();
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let held = serde::Deserializer::deserialize_map(
            &mut deserializer,
            FieldsHolding {
                wanted,
                skip: &skip,
            },
        );
        // Every non-null field asked about was met, once (a null one may be absent).
        matches!(held, Ok(count) if count == asked) && deserializer.end().is_ok()
    }
}

/// Writes an object's fields as one JSON object's text, field by field as a parser meets
/// them, each value as it stood in the source.
pub(crate) struct FieldsText {
    text: String,
}

impl Default for FieldsText {
    /// Room for a room's fields of a few members, so that most texts are allocated once.
    fn default() -> FieldsText {
        FieldsText {
            text: String::with_capacity(512),
        }
    }
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

    /// The fields, once their text is checked to parse as their map will be parsed: a
    /// captured value is only skimmed by the parser (`1e400`, a lone `\ud800` and nesting
    /// past the limit pass), and a text that could not be read later would have nowhere to
    /// go but a panic.
    ///
    /// # Errors
    /// The parser's refusal.
    pub(crate) fn finish(mut self) -> Result<LiveFields, serde_json::Error> {
        if self.text.is_empty() {
            self.text.push('{');
        }
        self.text.push('}');
        let mut deserializer = serde_json::Deserializer::from_str(&self.text);
        Readable.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(LiveFields(Fields::Text {
            text: self.text.into_boxed_str(),
            parsed: OnceLock::new(),
        }))
    }
}

impl LiveFields {
    /// An object's fields from the one JSON object's text they are stored as, checked as
    /// [`FieldsText::finish`] checks a text it built, and their `name` read on the way: the
    /// last given, as a map keeps it, and `None` unless it is a string.
    ///
    /// # Errors
    /// The parser's refusal, or a text that is not one object.
    pub(crate) fn from_object_text(
        text: &str,
    ) -> Result<(LiveFields, Option<String>), serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let name = serde::Deserializer::deserialize_map(&mut deserializer, ReadableNamed)?;
        deserializer.end()?;
        let fields = LiveFields(Fields::Text {
            text: text.into(),
            parsed: OnceLock::new(),
        });
        Ok((fields, name))
    }
}

/// Reads an object whole, as [`Readable`] does, keeping only its `name` when that is a
/// string.
struct ReadableNamed;

impl<'de> Visitor<'de> for ReadableNamed {
    type Value = Option<String>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object's fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut name = None;
        while let Some(key) = map.next_key_seed(Key)? {
            if key == "name" {
                name = match map.next_value::<Value>()? {
                    Value::String(text) => Some(text),
                    _ => None,
                };
            } else {
                map.next_value_seed(Readable)?;
            }
        }
        Ok(name)
    }
}

/// Reads a value whole, as a `Value` would be read, keeping nothing.
struct Readable;

impl<'de> DeserializeSeed<'de> for Readable {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Readable {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Readable)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Key)?.is_some() {
            map.next_value_seed(Readable)?;
        }
        Ok(())
    }
}

/// Where `key` stands among `fields` (for telling a key given twice), and its value.
fn field_at<'w>(fields: &'w Map<String, Value>, key: &str) -> Option<(u64, &'w Value)> {
    fields
        .iter()
        .enumerate()
        .find_map(|(index, (field, value))| (field == key).then_some((1 << index, value)))
}

/// At most this many fields are told apart (by the bits of a `u64`); a map of more is left
/// to the map's own comparison.
const FIELDS_TOLD_APART: usize = 64;

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
        if self.wanted.len() > FIELDS_TOLD_APART {
            return Err(A::Error::custom(DIFFERS));
        }
        let mut met = 0_u64;
        let mut held = 0;
        while let Some(key) = map.next_key_seed(Key)? {
            match field_at(self.wanted, &key) {
                Some((bit, value)) if !(self.skip)(&key) => {
                    if met & bit != 0 {
                        // Given twice: the map keeps the last, which the text cannot tell.
                        return Err(A::Error::custom(DIFFERS));
                    }
                    met |= bit;
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
        if fields.len() > FIELDS_TOLD_APART {
            return Err(A::Error::custom(DIFFERS));
        }
        let mut met = 0_u64;
        while let Some(key) = map.next_key_seed(Key)? {
            let Some((bit, value)) = field_at(fields, &key) else {
                return Err(A::Error::custom(DIFFERS));
            };
            if met & bit != 0 {
                return Err(A::Error::custom(DIFFERS));
            }
            met |= bit;
            map.next_value_seed(Equals(value))?;
        }
        same(met.count_ones() as usize == fields.len())
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
    use crate::api::wire::ShownObject;
    use serde_json::json;

    /// An object whose own fields are those of `text`, as every path shows it.
    fn shown(text: &str) -> String {
        let inner = &text[1..text.len() - 1];
        let comma = if inner.is_empty() { "" } else { "," };
        format!(r#"{{"kind":"ComplianceConfiguration","version":1{comma}{inner}}}"#)
    }

    /// The fields of `text` kept as the state's reader keeps them.
    fn kept(text: &str) -> LiveFields {
        let ShownObject(object) = serde_json::from_str(&shown(text)).unwrap();
        object.fields
    }

    fn never_parsed(fields: &LiveFields) -> bool {
        matches!(&fields.0, Fields::Text { parsed, .. } if parsed.get().is_none())
    }

    const WANTED: [&str; 26] = [
        "{}",
        r#"{"name": "a"}"#,
        r#"{"name": "b"}"#,
        r#"{"members": ["sip:a@x", "sip:b@x"]}"#,
        r#"{"members": ["sip:b@x", "sip:a@x"]}"#,
        r#"{"members": ["sip:a@x"]}"#,
        r#"{"members": []}"#,
        r#"{"disabled": false, "name": "a"}"#,
        r#"{"disabled": true, "name": "a"}"#,
        r#"{"disabled": null}"#,
        r#"{"absent": null}"#,
        r#"{"absent": false}"#,
        r#"{"count": 1, "ratio": 1.0}"#,
        r#"{"count": 1.0}"#,
        r#"{"ratio": 1}"#,
        r#"{"big": 18446744073709551615}"#,
        r#"{"name": "café", "quote": "a\"b\\c", "tab": "\t"}"#,
        r#"{"nested": {"a": [1, {"b": null}]}}"#,
        r#"{"nested": {"a": [1, {}]}}"#,
        r#"{"nested": {"a": [1, {"b": null, "c": 1}]}}"#,
        r#"{"nested": {"a": [1]}}"#,
        r#"{"x": {"a": 1, "b": 2}}"#,
        r#"{"x": {"a": 1}}"#,
        r#"{"we\"ird": 1, "n": null, "neg": -3}"#,
        r#"{"neg": -3.0, "café": 1}"#,
        r#"{"n": "null"}"#,
    ];

    /// For every text and every field list asked about (with and without fields skipped):
    /// what `holds` answers, and what the map answers.
    fn answers(texts: &[&str]) -> Vec<(bool, bool, String)> {
        let mut answers = Vec::new();
        for text in texts {
            let map: Map<String, Value> = serde_json::from_str(text).unwrap();
            for wanted in WANTED {
                let wanted: Map<String, Value> = serde_json::from_str(wanted).unwrap();
                for skip in [None, Some("name"), Some("members")] {
                    let skip = |field: &str| Some(field) == skip;
                    let by_map = wanted.iter().all(|(field, value)| {
                        skip(field) || map.get(field).unwrap_or(&Value::Null) == value
                    });
                    let fields = kept(text);
                    let by_text = fields.holds(&wanted, skip);
                    assert!(never_parsed(&fields), "{text}");
                    // Read, the text is the map, and answers as the map does.
                    assert_eq!(*fields, map, "{text}");
                    assert_eq!(fields.holds(&wanted, skip), by_map, "{text} parsed");
                    answers.push((by_text, by_map, format!("{text} holding {wanted:?}")));
                }
            }
        }
        answers
    }

    #[test]
    fn holds_agrees_with_the_map() {
        let answers = answers(&[
            "{}",
            r#"{"name":"a","members":["sip:a@x","sip:b@x"],"disabled":false}"#,
            r#"{"name":"a","members":[],"count":1,"ratio":1.0,"big":18446744073709551615}"#,
            r#"{"name":"caf\u00e9","quote":"a\"b\\c","tab":"\t","nested":{"a":[1,{"b":null}]}}"#,
            r#"{"we\"ird":1,"n":null,"neg":-3,"caf\u00e9":1}"#,
            r#"{"x":{"b":2,"a":1}}"#,
        ]);
        for (by_text, by_map, case) in &answers {
            assert_eq!(by_text, by_map, "{case}");
        }
        // Both answers were given, many times each.
        let held = answers.iter().filter(|(by_text, ..)| *by_text).count();
        assert!(held > 20 && answers.len() - held > 20, "{held}");
    }

    /// A key given twice: the map keeps the last value, which the text cannot tell; `holds`
    /// never says "held" where the map says otherwise.
    #[test]
    fn a_key_given_twice_is_left_to_the_map() {
        let answers = answers(&[
            r#"{"name":"a","name":"a"}"#,
            r#"{"name":"a","name":"b"}"#,
            r#"{"disabled":true,"name":"a","disabled":false}"#,
            r#"{"x":{"a":1,"a":1}}"#,
            r#"{"x":{"a":1,"a":1,"b":2}}"#,
        ]);
        for (by_text, by_map, case) in &answers {
            assert!(!by_text || *by_map, "{case}");
        }
        // The two answers differ where the map holds what the text's first value does not.
        assert!(answers.iter().any(|(by_text, by_map, _)| by_text != by_map));
    }

    /// Text the parser only skims when it captures a value, and refuses when it reads one, is
    /// refused as it is read, not when a path reads the fields.
    #[test]
    fn fields_that_would_not_parse_are_refused_as_they_are_read() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        for text in [
            r#"{"n":1e400}"#.to_owned(),
            r#"{"s":"\ud800"}"#.to_owned(),
            format!(r#"{{"deep":{deep}}}"#),
        ] {
            let read = serde_json::from_str::<ShownObject>(&shown(&text));
            assert!(read.is_err(), "{text}");
        }
    }

    #[test]
    fn changed_fields_drop_their_text() {
        let mut fields = kept(r#"{"name":"a","disabled":false}"#);
        fields.insert("disabled".to_owned(), Value::Bool(true));
        assert!(matches!(fields.0, Fields::Map(_)));
        let wanted = json!({"disabled": true});
        assert!(fields.holds(wanted.as_object().unwrap(), |_| false));
        let changed = json!({"name": "a", "disabled": true});
        assert_eq!(
            fields,
            LiveFields::from(changed.as_object().unwrap().clone())
        );
    }
}
