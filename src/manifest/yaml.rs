//! YAML documents as trees that remember where each key and value stood.

use std::collections::HashMap;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// A 1-based line and column in a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl Position {
    fn of(location: &serde_saphyr::Location) -> Position {
        Position {
            line: u32::try_from(location.line()).unwrap_or(u32::MAX),
            column: u32::try_from(location.column()).unwrap_or(u32::MAX),
        }
    }
}

/// One YAML value with the positions of everything inside it.
#[derive(Clone, Debug)]
pub enum Node {
    Null,
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(String),
    Sequence(Vec<Spanned<Node>>),
    Mapping(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Integer(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Node, E> {
        Ok(i64::try_from(value).map_or(Node::Float(value as f64), Node::Integer))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        Ok(Node::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Text(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Node, E> {
        Ok(Node::Text(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Mapping(entries))
    }
}

/// Where each part of a document stood: JSON pointer to the position of its value, and of its
/// key for mapping entries.
#[derive(Clone, Debug, Default)]
pub struct Positions {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
    /// The text of every string inside a sequence, to find list entries after sorting.
    texts: HashMap<String, String>,
}

impl Positions {
    /// The position of the value at `pointer`, or of the nearest enclosing value known.
    pub fn value(&self, pointer: &str) -> Position {
        let mut pointer = pointer;
        loop {
            if let Some(position) = self.values.get(pointer) {
                return *position;
            }
            match pointer.rfind('/') {
                Some(index) => pointer = &pointer[..index],
                None => return Position { line: 1, column: 1 },
            }
        }
    }

    /// The position of the key of the entry at `pointer`, falling back to its value.
    pub fn key(&self, pointer: &str) -> Position {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.value(pointer))
    }
}

impl Positions {
    /// The pointer of the entry of list `field` whose text, normalised as a principal, is
    /// `normalised`.
    pub fn find_list_item(&self, field: &str, normalised: &str) -> Option<String> {
        let _ = normalised;
        let prefix = format!("/{field}/");
        let mut candidates: Vec<(&String, &str)> = self
            .texts
            .iter()
            .filter(|(pointer, _)| pointer.starts_with(&prefix))
            .map(|(pointer, text)| (pointer, text.as_str()))
            .collect();
        candidates.sort();
        candidates
            .into_iter()
            .find(|(_, text)| {
                crate::domain::Principal::parse(text).is_ok_and(|p| p.to_string() == normalised)
            })
            .map(|(pointer, _)| pointer.clone())
    }
}

/// Turns a positioned YAML tree into JSON, recording positions by JSON pointer.
pub fn to_json(node: &Spanned<Node>, positions: &mut Positions) -> Value {
    to_json_at(node, String::new(), positions)
}

fn to_json_at(node: &Spanned<Node>, pointer: String, positions: &mut Positions) -> Value {
    let value = match &node.value {
        Node::Null => Value::Null,
        Node::Bool(value) => Value::Bool(*value),
        Node::Integer(value) => Value::Number((*value).into()),
        Node::Float(value) => Number::from_f64(*value).map_or(Value::Null, Value::Number),
        Node::Text(text) => Value::String(text.clone()),
        Node::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    let child = format!("{pointer}/{index}");
                    if let Node::Text(text) = &item.value {
                        positions.texts.insert(child.clone(), text.clone());
                    }
                    to_json_at(item, child, positions)
                })
                .collect(),
        ),
        Node::Mapping(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let child = format!("{pointer}/{}", escape_pointer(&key.value));
                positions
                    .keys
                    .insert(child.clone(), Position::of(&key.referenced));
                let json = to_json_at(value, child, positions);
                map.insert(key.value.clone(), json);
            }
            Value::Object(map)
        }
    };
    positions
        .values
        .insert(pointer, Position::of(&node.referenced));
    value
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// The position of a document's first key (or of the document itself when it is no mapping).
pub fn document_start(tree: &Spanned<Node>) -> Position {
    match &tree.value {
        Node::Mapping(entries) => entries
            .first()
            .map_or(Position::of(&tree.referenced), |(key, _)| {
                Position::of(&key.referenced)
            }),
        _ => Position::of(&tree.referenced),
    }
}

/// The spanned parser's limits, the same as the fast path's ([`super::source::LIMITS`]).
pub fn options() -> serde_saphyr::Options {
    let limits = super::source::LIMITS;
    let mut options = serde_saphyr::Options::default();
    options.budget = serde_saphyr::budget! {
        max_documents: limits.documents,
        max_nodes: limits.nodes,
        max_events: limits.nodes.saturating_mul(2),
        max_depth: limits.depth,
        max_total_scalar_bytes: usize::try_from(limits.file_bytes).unwrap_or(usize::MAX),
        max_reader_input_bytes: Some(usize::try_from(limits.file_bytes).unwrap_or(usize::MAX)),
    };
    options
}

/// Parses every document of a YAML stream into JSON values, without positions: the fast path.
///
/// Text within the subset manifests are written in is read by [`super::yaml_subset`]; any
/// other by libyaml's parser (through `serde_yaml_ng`), about twice as fast as the spanned
/// parser on large manifests. Documents that are empty are skipped, as the spanned parser
/// skips them, so that document numbers agree between the three.
///
/// # Errors
/// The parser's message and position.
pub fn parse_values(text: &str) -> Result<Vec<serde_json::Value>, (Position, String)> {
    match super::yaml_subset::parse(text, value_limits(text), super::source::LIMITS.documents) {
        Some(values) => Ok(values),
        None => parse_values_fully(text),
    }
}

/// What one file's values may cost: [`super::source::LIMITS`], nodes in proportion to its size.
pub(super) fn value_limits(text: &str) -> crate::strict::Limits {
    let limits = super::source::LIMITS;
    crate::strict::Limits {
        nodes: super::source::node_limit(text.len()),
        depth: limits.depth,
        scalar_bytes: limits.scalar_bytes,
        mapping: "mapping",
    }
}

/// [`parse_values`] through libyaml alone, whatever the text.
pub(super) fn parse_values_fully(text: &str) -> Result<Vec<serde_json::Value>, (Position, String)> {
    parse_values_within(text, value_limits(text))
}

/// [`parse_values_fully`] within other limits than a manifest's.
pub(super) fn parse_values_within(
    text: &str,
    value_limits: crate::strict::Limits,
) -> Result<Vec<serde_json::Value>, (Position, String)> {
    let limits = super::source::LIMITS;
    let budget = crate::strict::Budget::new(value_limits);
    let mut values = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        if index >= limits.documents {
            return Err((
                Position { line: 1, column: 1 },
                format!(
                    "more than {} documents in one file, the limit",
                    limits.documents
                ),
            ));
        }
        let value = de::DeserializeSeed::deserialize(budget.seed(), document).map_err(|error| {
            let position = error
                .location()
                .map_or(Position { line: 1, column: 1 }, |location| Position {
                    line: u32::try_from(location.line()).unwrap_or(u32::MAX),
                    column: u32::try_from(location.column()).unwrap_or(u32::MAX),
                });
            let message = error.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            (position, message)
        })?;
        if !value.is_null() {
            values.push(value);
        }
    }
    Ok(values)
}

/// Parses every document of a YAML stream.
///
/// # Errors
/// The first syntax error, with its position when the parser knows it.
pub fn parse_documents(text: &str) -> Result<Vec<Spanned<Node>>, (Position, String)> {
    serde_saphyr::from_multiple_with_options::<Spanned<Node>>(text, options()).map_err(|error| {
        let position = error
            .location()
            .map_or(Position { line: 1, column: 1 }, |location| {
                Position::of(&location)
            });
        (position, clean_message(&error.to_string()))
    })
}

/// The first line of a parser's message, without the position it repeats (ours leads the
/// line already) and without the snippet it draws (we draw our own).
fn clean_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let first = first.split(" at line ").next().unwrap_or(first);
    match first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((_, text)) => text.to_owned(),
        None => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_keys_and_values() {
        let text = "apiVersion: perch/v1\nkind: Room\nmembers:\n  - sip:a@x.com\n  - sip:b@x.com\n---\nkind: Group\n";
        let documents = parse_documents(text).unwrap();
        assert_eq!(documents.len(), 2);
        let mut positions = Positions::default();
        let json = to_json(&documents[0], &mut positions);
        assert_eq!(json["members"][1], "sip:b@x.com");
        assert_eq!(
            positions.value("/members/1"),
            Position { line: 5, column: 5 }
        );
        assert_eq!(positions.key("/kind"), Position { line: 2, column: 1 });
        assert_eq!(positions.value("/kind"), Position { line: 2, column: 7 });
        let mut second = Positions::default();
        to_json(&documents[1], &mut second);
        assert_eq!(second.key("/kind"), Position { line: 7, column: 1 });
    }

    #[test]
    fn syntax_errors_have_positions() {
        // The positions the spanned parser reports; one that fell back to 1:1 changes this
        // snapshot. (saphyr places a tab in the indentation at the end of the line before.)
        let cases = [
            ("name: a\nlist: [1, 2\nb: c\n", "an unclosed flow sequence"),
            ("name: a\n\tkey: b\n", "a tab in the indentation"),
            ("a: 1\n---\nb: [\n", "an error in the second document"),
        ];
        let mut shown = String::new();
        for (text, what) in cases {
            let (position, _) = parse_documents(text).unwrap_err();
            shown.push_str(&format!("{what}: {}:{}\n", position.line, position.column));
        }
        expect_test::expect![[r"
            an unclosed flow sequence: 3:2
            a tab in the indentation: 1:7
            an error in the second document: 3:4
        "]]
        .assert_eq(&shown);
    }
}
