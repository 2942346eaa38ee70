//! The YAML that manifests are written in, read without libyaml: about four times faster
//! into the same JSON values on large manifests (`cargo bench --bench reconcile` prints both),
//! where libyaml took about half of `perch validate`'s CPU and two fifths of `perch plan`'s.
//!
//! # Guarantees
//! - **It accepts only what it is sure of.** Block mappings with plain keys, block
//!   sequences, one-line flow sequences, plain scalars that can only be strings, decimal
//!   integers, `true`, `false` and `null`, and one-line quoted scalars. Everything else
//!   (anchors, tags, block scalars, multi-line scalars, flow mappings, tabs, carriage returns,
//!   characters YAML does not print, keys given twice, a scalar that could be read as a
//!   number or a boolean in some other way) makes [`parse`] decline with `None`, and the
//!   caller reads the whole file with the full parser, which also words every error.
//! - **What it accepts reads as the full parser reads it**: the same values, documents and
//!   empty documents left out. `tests::agrees_with_the_full_parser` checks cases at the
//!   edges; `tests::generated_texts_agree` checks texts generated from manifest fragments.
//! - **It spends no more than the full parser may.** Nodes, nesting and scalar sizes are
//!   counted as [`crate::strict`] counts them; a text crossing a limit is declined, so the
//!   full parser reports the limit.

use serde_json::{Map, Number, Value};

use crate::strict::Limits;

/// Every document of `text` as JSON values, empty documents left out; `None` when the text
/// is not entirely within the subset, or crosses a limit.
pub(super) fn parse(text: &str, limits: Limits, documents_limit: usize) -> Option<Vec<Value>> {
    if !printable(text) {
        return None;
    }
    let mut reader = Reader {
        lines: Vec::new(),
        at: 0,
        nodes: 0,
        limits,
    };
    let mut values = Vec::new();
    let mut documents = 0usize;
    let mut rest = text;
    loop {
        let (lines, next) = document_lines(rest, std::mem::take(&mut reader.lines))?;
        documents += 1;
        if documents > documents_limit {
            return None;
        }
        reader.lines = lines;
        reader.at = 0;
        if let Some(first) = reader.lines.first() {
            let value = reader.block(first.indent, 0)?;
            if reader.at != reader.lines.len() {
                return None;
            }
            values.push(value);
        } else if !(documents == 1 && next.is_some()) {
            // An empty document is a null to the full parser, counted as a node; what stands
            // before a first `---` is a document only if it holds something.
            reader.charge()?;
        }
        match next {
            Some(after_marker) => rest = after_marker,
            None => return Some(values),
        }
    }
}

/// Whether every character is one the subset reads as itself: no tabs, carriage returns or
/// other controls, and nothing YAML does not print or reads as a line break (NEL, U+2028,
/// U+2029) or a byte order mark.
fn printable(text: &str) -> bool {
    // Each block of bytes is judged without an early exit and folded into one byte, which the
    // compiler turns into vector instructions (a count would widen every byte to a word).
    let is_control = |byte: u8| u8::from(byte < 0x20 && byte != b'\n') | u8::from(byte == 0x7f);
    let mut blocks = text.as_bytes().chunks_exact(64);
    let has_control = blocks
        .by_ref()
        .any(|block| block.iter().fold(0, |any, &byte| any | is_control(byte)) != 0)
        || blocks.remainder().iter().any(|&byte| is_control(byte) != 0);
    if has_control {
        return false;
    }
    text.is_ascii()
        || text.chars().all(|c| {
            c.is_ascii()
                || matches!(c, '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
                    && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
        })
}

/// One line that holds something: its indentation and what follows it, trailing spaces
/// removed.
#[derive(Clone, Copy, Debug)]
struct Line<'a> {
    indent: usize,
    content: &'a str,
}

/// The content lines of the document at the start of `text` (blank and comment lines left
/// out), reusing `lines`' allocation, and the text after the `---` that ends it, if one does.
fn document_lines<'a>(
    text: &'a str,
    mut lines: Vec<Line<'a>>,
) -> Option<(Vec<Line<'a>>, Option<&'a str>)> {
    lines.clear();
    let mut rest = text;
    while !rest.is_empty() {
        // Lines are short: a plain loop finds their ends sooner than a searcher is set up.
        let end = rest.bytes().position(|b| b == b'\n');
        let (line, after) = end.map_or((rest, ""), |end| (&rest[..end], &rest[end + 1..]));
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        let content = content.trim_end_matches(' ');
        if indent == 0 {
            if let Some(after_dashes) = content.strip_prefix("---") {
                // A document marker, alone or before a comment; `--- value` and the like are
                // for the full parser.
                return (after_dashes.is_empty() || is_comment(after_dashes))
                    .then_some((lines, Some(after)));
            }
            // Directives (`%YAML`) and document ends (`...`).
            if content.starts_with('%') || content.starts_with("...") {
                return None;
            }
        }
        if !content.is_empty() && !content.starts_with('#') {
            lines.push(Line { indent, content });
        }
        rest = after;
    }
    Some((lines, None))
}

/// Whether `text` is nothing but a comment: spaces, then `#`, with a space before the `#`.
fn is_comment(text: &str) -> bool {
    let trimmed = text.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.len() < text.len() && trimmed.starts_with('#'))
}

struct Reader<'a> {
    lines: Vec<Line<'a>>,
    at: usize,
    nodes: usize,
    limits: Limits,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.at).copied()
    }

    /// Counts a node as `strict::Budget` does; `None` past the limit.
    fn charge(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= self.limits.nodes).then_some(())
    }

    /// A scalar's text, counted as `strict` counts it: a node, within the bytes one scalar may
    /// hold.
    fn text(&mut self, text: String) -> Option<String> {
        self.charge()?;
        (text.len() <= self.limits.scalar_bytes).then_some(text)
    }

    /// A sequence or mapping at `depth`, whose children are one level deeper: `None` where
    /// `strict` would refuse the nesting.
    fn collection(&mut self, depth: usize) -> Option<()> {
        self.charge()?;
        (depth < self.limits.depth).then_some(())
    }

    /// The block mapping or sequence whose first line is the next, at `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Option<Value> {
        let first = self.peek()?;
        if is_sequence_entry(first.content) {
            self.sequence(indent, depth)
        } else {
            self.mapping(indent, depth)
        }
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Option<Value> {
        self.collection(depth)?;
        let mut entries = Map::new();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_sequence_entry(line.content) {
                return None;
            }
            let (key, rest) = split_key(line.content)?;
            self.at += 1;
            let key = self.text(key.to_owned())?;
            let value = self.value_after(rest, indent, depth + 1, true)?;
            match entries.entry(key) {
                serde_json::map::Entry::Vacant(entry) => entry.insert(value),
                serde_json::map::Entry::Occupied(_) => return None,
            };
        }
        Some(Value::Object(entries))
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Option<Value> {
        self.collection(depth)?;
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent || !is_sequence_entry(line.content) {
                // A deeper line continues nothing here; a shallower one, or a key at this
                // indentation, ends the sequence.
                if line.indent > indent {
                    return None;
                }
                break;
            }
            self.at += 1;
            let rest = &line.content[1..];
            items.push(self.value_after(rest, indent, depth + 1, false)?);
        }
        Some(Value::Array(items))
    }

    /// The value that follows a key's `:` or an entry's `-` on a line indented by `indent`:
    /// on the same line, or as a block on the lines after it.
    fn value_after(
        &mut self,
        rest: &'a str,
        indent: usize,
        depth: usize,
        in_mapping: bool,
    ) -> Option<Value> {
        if is_comment(rest) {
            return match self.peek() {
                Some(next) if next.indent > indent => self.block(next.indent, depth),
                // A mapping's sequence may stand at the mapping's own indentation.
                Some(next)
                    if in_mapping && next.indent == indent && is_sequence_entry(next.content) =>
                {
                    self.sequence(indent, depth)
                }
                _ => {
                    self.charge()?;
                    Some(Value::Null)
                }
            };
        }
        let value = self.inline(rest.trim_start_matches(' '), depth)?;
        // A deeper line after a value on this line would continue it, or be an error.
        match self.peek() {
            Some(next) if next.indent > indent => None,
            _ => Some(value),
        }
    }

    /// A value written on one line, with nothing but a comment after it.
    fn inline(&mut self, text: &'a str, depth: usize) -> Option<Value> {
        let (value, after) = match text.as_bytes().first()? {
            b'[' => self.flow_sequence(&text[1..], depth)?,
            b'{' => {
                let after = text.strip_prefix("{}")?;
                self.collection(depth)?;
                (Value::Object(Map::new()), after)
            }
            b'"' | b'\'' => self.quoted(text)?,
            _ => {
                let (plain, after) = block_plain(text)?;
                (self.plain(plain)?, after)
            }
        };
        is_comment(after).then_some(value)
    }

    /// A one-line quoted scalar at the start of `text`, and the rest after its closing quote.
    fn quoted(&mut self, text: &'a str) -> Option<(Value, &'a str)> {
        let (value, after) = match text.as_bytes().first()? {
            b'"' => double_quoted(&text[1..])?,
            b'\'' => single_quoted(&text[1..])?,
            _ => return None,
        };
        Some((Value::String(self.text(value)?), after))
    }

    /// `[a, "b", c]` on one line; `text` follows the `[`. Returns the rest after the `]`.
    fn flow_sequence(&mut self, text: &'a str, depth: usize) -> Option<(Value, &'a str)> {
        self.collection(depth)?;
        let mut rest = text.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(']') {
            return Some((Value::Array(Vec::new()), after));
        }
        // One allocation for the list: as many items as commas before the first `]`, and one
        // (a comma inside a quoted item counts one too many, a `]` inside one ends the count
        // early), and never more than the nodes left may make, so that a line of commas in a
        // comment or a string reserves nothing the text could not have cost.
        let bytes = rest.as_bytes();
        let list = &bytes[..memchr::memchr(b']', bytes).unwrap_or(bytes.len())];
        let commas = memchr::memchr_iter(b',', list).count();
        let left = self.limits.nodes.saturating_sub(self.nodes);
        let mut items = Vec::with_capacity((commas + 1).min(left));
        loop {
            let (item, after) = match rest.as_bytes().first()? {
                b'"' | b'\'' => self.quoted(rest)?,
                _ => {
                    let end = memchr::memchr2(b',', b']', rest.as_bytes())?;
                    let plain = rest[..end].trim_end_matches(' ');
                    // `sip:a@x` is a plain scalar in a flow sequence, but a `:` is where flow
                    // plain scalars differ most between parsers: only the principals' shape
                    // (`word:rest`, no space) may hold a flow indicator.
                    let indicator =
                        |byte: &u8| matches!(byte, b':' | b'#' | b'[' | b'{' | b'}' | b'"' | b'\'');
                    if !is_principal_like(plain) && plain.as_bytes().iter().any(indicator) {
                        return None;
                    }
                    (self.plain(plain)?, &rest[end..])
                }
            };
            items.push(item);
            let after = after.trim_start_matches(' ');
            if let Some(after) = after.strip_prefix(']') {
                return Some((Value::Array(items), after));
            }
            rest = after.strip_prefix(',')?.trim_start_matches(' ');
            if rest.starts_with(']') {
                // A trailing comma.
                return None;
            }
        }
    }

    /// A plain scalar, resolved as the full parser resolves it, or `None` where it might
    /// resolve otherwise.
    fn plain(&mut self, text: &str) -> Option<Value> {
        let first = *text.as_bytes().first()?;
        if first.is_ascii_digit() {
            let value: u64 = text.parse().ok()?;
            let canonical = text.len() <= 18 && (text.len() == 1 || first != b'0');
            if !canonical || !text.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            self.charge()?;
            return Some(Value::Number(Number::from(value)));
        }
        let relative_path = text.starts_with("./") || text.starts_with("../");
        if !(first.is_ascii_alphabetic()
            || first == b'_'
            || first == b'/'
            || first >= 0x80
            || relative_path)
        {
            return None;
        }
        if is_word_of_another_type(text) {
            self.charge()?;
            return match text {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                "null" => Some(Value::Null),
                _ => None,
            };
        }
        Some(Value::String(self.text(text.to_owned())?))
    }
}

/// A plain scalar in block context and what follows it (a comment, or nothing); `None` where
/// a `:` would make it a key.
fn block_plain(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    for (at, &byte) in bytes.iter().enumerate() {
        match byte {
            b':' if bytes.get(at + 1).is_none_or(|&next| next == b' ') => return None,
            b'#' if at > 0 && bytes[at - 1] == b' ' => {
                return Some((text[..at].trim_end_matches(' '), &text[at - 1..]));
            }
            _ => {}
        }
    }
    Some((text, ""))
}

/// Whether a plain scalar is, in any case, a word that some YAML reads as a boolean, a null
/// or a float.
fn is_word_of_another_type(text: &str) -> bool {
    const WORDS: [&str; 12] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "inf", "infinity", "nan",
    ];
    text.len() <= 8 && WORDS.iter().any(|word| word.eq_ignore_ascii_case(text))
}

/// `- item` or a lone `-`.
fn is_sequence_entry(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// The longest key libyaml takes as a plain key (keys here are ASCII: bytes are characters).
const MAX_KEY_BYTES: usize = 1024;

/// `key: rest` or `key:` with a key of letters, digits, `_` and `-` that begins with a letter
/// and reads as no other scalar.
fn split_key(content: &str) -> Option<(&str, &str)> {
    let bytes = content.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let end = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))?;
    let (key, rest) = (&content[..end], content[end..].strip_prefix(':')?);
    // libyaml forgets a possible key whose `:` comes more than 1,024 characters after it.
    if !(rest.is_empty() || rest.starts_with(' '))
        || key.len() > MAX_KEY_BYTES
        || is_word_of_another_type(key)
    {
        return None;
    }
    Some((key, rest))
}

/// `word:rest`, as principals are written: letters before the colon, then no space, colon,
/// `?` or flow punctuation (libyaml refuses a `:` followed by `?` in a flow sequence).
fn is_principal_like(text: &str) -> bool {
    let bytes = text.as_bytes();
    let Some(colon) = bytes.iter().position(|&byte| byte == b':') else {
        return false;
    };
    let (scheme, rest) = (&bytes[..colon], &bytes[colon + 1..]);
    !scheme.is_empty()
        && scheme.iter().all(u8::is_ascii_alphabetic)
        && !rest.is_empty()
        && !rest.iter().any(|byte| {
            matches!(
                byte,
                b':' | b'?' | b'#' | b'[' | b']' | b'{' | b'}' | b'"' | b'\'' | b' '
            )
        })
}

/// A double-quoted scalar closed on this line; `text` follows the opening quote. Only the
/// escapes `\"`, `\\`, `\n` and `\t` are taken.
fn double_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut rest = text;
    loop {
        let at = rest.find(['"', '\\'])?;
        value.push_str(&rest[..at]);
        if rest.as_bytes()[at] == b'"' {
            return Some((value, &rest[at + 1..]));
        }
        let escaped = match rest.as_bytes().get(at + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'n' => '\n',
            b't' => '\t',
            _ => return None,
        };
        value.push(escaped);
        rest = &rest[at + 2..];
    }
}

/// A single-quoted scalar closed on this line (`''` is a quote); `text` follows the opening
/// quote.
fn single_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut rest = text;
    loop {
        let at = rest.find('\'')?;
        value.push_str(&rest[..at]);
        if rest.as_bytes().get(at + 1) == Some(&b'\'') {
            value.push('\'');
            rest = &rest[at + 2..];
        } else {
            return Some((value, &rest[at + 1..]));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::fmt::Write as _;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    use super::*;
    use crate::manifest::yaml::{parse_values_fully, parse_values_within, value_limits};

    fn subset(text: &str) -> Option<Vec<Value>> {
        parse(text, value_limits(text), crate::manifest::LIMITS.documents)
    }

    /// What the subset made of `text`: `declined`, or `read` after checking that the full
    /// parser reads the same values; an `Err` names the difference.
    fn compare(text: &str) -> Result<&'static str, String> {
        let Some(values) = subset(text) else {
            return Ok("declined");
        };
        match parse_values_fully(text) {
            Ok(full) if full == values => Ok("read"),
            Ok(full) => Err(format!(
                "{text:?}: the subset read {values:?}, the full parser {full:?}"
            )),
            Err((_, message)) => Err(format!(
                "{text:?}: the subset read {values:?}, the full parser refused it: {message}"
            )),
        }
    }

    #[test]
    fn agrees_with_the_full_parser() {
        let cases = [
            (
                "the bench's rooms",
                "---\napiVersion: perch/v1\nkind: Room\nname: room-000001\ncategory: cat-1\nprivacy: closed\ndescription: Room number 1\nmembers: [sip:user7@contoso.com, sip:user8@contoso.com]\n",
            ),
            (
                "block lists, comments, markers with comments",
                "# top\n--- # first\na: 1\nlist:\n  - sip:a@x.com   # why\n  - 'b c'\n\n  # between\n  - \"d\\\"e\"\n---\n---\nb: {}\nc: []\n",
            ),
            (
                "a list at its key's indentation",
                "members:\n- a\n- b\nname: x\n",
            ),
            (
                "nesting",
                "a:\n  b:\n    - \n      c: d\n    -\n    - [x, 'y', \"z\"]\n  e: 0\n",
            ),
            ("empty values", "a:\nb: \"\"\nc: ''\nd: # nothing\n"),
            ("unicode", "a: Équipe ünd 東京\nb: x\u{a0}\n"),
            (
                "plain text with punctuation",
                "a: Tom's room, 50% [beta] & more! a:b c#d\n",
            ),
            ("words", "a: true\nb: false\nc: null\nd: nothing\n"),
            ("numbers", "a: 0\nb: 42\nc: 123456789012345678\n"),
            ("paths", "a: ./x\nb: ../y\nc: /z\n"),
            ("root indented", "  a: 1\n  b: 2\n"),
            ("only comments", "# a\n\n   # b\n"),
            ("empty", ""),
            // Declined: each is for the full parser.
            ("other booleans", "a: yes\n"),
            ("capitalised true", "a: True\n"),
            ("a tilde", "a: ~\n"),
            ("a float", "a: 1.5\n"),
            ("a leading zero", "a: 012\n"),
            ("a negative number", "a: -3\n"),
            ("a hexadecimal number", "a: 0x1f\n"),
            ("a long number", "a: 1234567890123456789\n"),
            ("inf", "a: .inf\n"),
            ("a leading dot", "a: .5\n"),
            ("nan as a word", "a: NaN\n"),
            ("an anchor and alias", "a: &x 1\nb: *x\n"),
            ("a tag", "a: !!str 1\n"),
            ("a block scalar", "a: |\n  text\n"),
            ("a folded scalar", "a: >\n  text\n"),
            ("a multi-line plain scalar", "a: one\n  two\n"),
            ("a multi-line flow sequence", "a: [x,\n  y]\n"),
            ("a trailing comma", "a: [x, ]\n"),
            ("a flow mapping", "a: {b: 1}\n"),
            ("a nested flow sequence", "a: [[x]]\n"),
            ("a quoted key", "\"a\": 1\n"),
            ("a key with a space", "a b: 1\n"),
            ("a key that is a word", "yes: 1\n"),
            ("a key given twice", "a: 1\na: 2\n"),
            ("a colon in a value", "a: b: c\n"),
            ("a value ending in a colon", "a: b:\n"),
            ("a compact mapping in a list", "a:\n  - b: 1\n"),
            ("a compact list in a list", "a:\n  - - b\n"),
            ("a tab", "a:\tb\n"),
            ("a carriage return", "a: b\r\n"),
            ("a byte order mark", "\u{feff}a: b\n"),
            ("a next-line character", "a: b\u{85}c\n"),
            ("a line separator", "a: b\u{2028}c\n"),
            ("a control character", "a: b\u{1}c\n"),
            ("a delete character", "a: b\u{7f}c\n"),
            ("an unknown escape", "a: \"\\x41\"\n"),
            ("an escaped slash", "a: \"\\/\"\n"),
            ("an unclosed quote", "a: \"b\n"),
            ("a quote then text", "a: \"b\" c\n"),
            ("a comment without a space", "a: [b]#c\n"),
            ("a directive", "%YAML 1.2\n---\na: 1\n"),
            ("a document end", "a: 1\n...\n"),
            ("a value after the marker", "--- a\n"),
            ("a scalar document", "just text\n"),
            ("a deeper line after a key", "a: 1\n  b: 2\n"),
            ("a shallower key", "a:\n    b: 1\n  c: 2\n"),
            ("a list where a key goes", "a: 1\n- b\n"),
            ("a question mark", "? a\n: b\n"),
            ("an indicator first", "a: @b\n"),
            ("a colon in a flow item", "a: [b: c]\n"),
            ("two colons in a flow item", "a: [sip:b:c]\n"),
            (
                "a question mark after a colon in a flow item",
                "a: [sip:?x]\n",
            ),
            ("a quote in a flow item", "a: [it's]\n"),
        ];
        let long_key = |bytes: usize| format!("b: 1\n{}: 1\n", "k".repeat(bytes));
        let (longest_key, too_long_key) = (long_key(MAX_KEY_BYTES), long_key(MAX_KEY_BYTES + 1));
        let cases = cases.into_iter().chain([
            ("the longest key libyaml takes", longest_key.as_str()),
            ("a key too long for libyaml", too_long_key.as_str()),
        ]);
        let mut shown = String::new();
        for (what, text) in cases {
            match compare(text) {
                Ok(outcome) => writeln!(shown, "{outcome}: {what}").unwrap(),
                Err(difference) => panic!("{what}: {difference}"),
            }
        }
        expect_test::expect![[r"
            read: the bench's rooms
            read: block lists, comments, markers with comments
            read: a list at its key's indentation
            read: nesting
            read: empty values
            read: unicode
            read: plain text with punctuation
            read: words
            read: numbers
            read: paths
            read: root indented
            read: only comments
            read: empty
            declined: other booleans
            declined: capitalised true
            declined: a tilde
            declined: a float
            declined: a leading zero
            declined: a negative number
            declined: a hexadecimal number
            declined: a long number
            declined: inf
            declined: a leading dot
            declined: nan as a word
            declined: an anchor and alias
            declined: a tag
            declined: a block scalar
            declined: a folded scalar
            declined: a multi-line plain scalar
            declined: a multi-line flow sequence
            declined: a trailing comma
            declined: a flow mapping
            declined: a nested flow sequence
            declined: a quoted key
            declined: a key with a space
            declined: a key that is a word
            declined: a key given twice
            declined: a colon in a value
            declined: a value ending in a colon
            declined: a compact mapping in a list
            declined: a compact list in a list
            declined: a tab
            declined: a carriage return
            declined: a byte order mark
            declined: a next-line character
            declined: a line separator
            declined: a control character
            declined: a delete character
            declined: an unknown escape
            declined: an escaped slash
            declined: an unclosed quote
            declined: a quote then text
            declined: a comment without a space
            declined: a directive
            declined: a document end
            declined: a value after the marker
            declined: a scalar document
            declined: a deeper line after a key
            declined: a shallower key
            declined: a list where a key goes
            declined: a question mark
            declined: an indicator first
            declined: a colon in a flow item
            declined: two colons in a flow item
            declined: a question mark after a colon in a flow item
            declined: a quote in a flow item
            read: the longest key libyaml takes
            declined: a key too long for libyaml
        "]]
        .assert_eq(&shown);
    }

    #[test]
    fn the_examples_are_read_by_the_subset_as_the_full_parser_reads_them() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("examples/categories.yaml")];
        for dir in ["examples", "examples/rooms"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 5, "the examples were not found: {files:?}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            assert_eq!(compare(&text), Ok("read"), "{}", file.display());
        }
    }

    #[test]
    fn the_broken_corpus_is_read_as_the_full_parser_reads_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/broken");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Err(difference) = compare(&text) {
                panic!("{}: {difference}", path.display());
            }
            seen += 1;
        }
        assert!(seen > 10, "the corpus was not found");
    }

    /// The subset counts nodes, nesting and scalar bytes as `strict` does: under small limits
    /// it declines exactly the texts the full parser refuses for crossing one.
    #[test]
    fn limits_are_counted_as_the_full_parser_counts_them() {
        let texts = [
            "a: 1\nb: [x, 'y']\nc:\n  - d\n  -\n  -\n    e: {}\n",
            "a:\n  b:\n    c: []\n---\nd: xyzzy\n",
            "- [a, b]\n- c\n",
            "a: 1\n---\n",
            "a: 1\n---\n---\n# c\n",
            "# c\n---\na: 1\n",
            "---\n",
            "# c\n",
            "",
        ];
        let mut compared = 0;
        for text in texts {
            for nodes in 0..16 {
                for depth in 0..5 {
                    for scalar_bytes in [0, 1, 4, 5, 100] {
                        let limits = Limits {
                            nodes,
                            depth,
                            scalar_bytes,
                            mapping: "mapping",
                        };
                        let full = parse_values_within(text, limits);
                        let read = parse(text, limits, 10);
                        assert_eq!(
                            read.is_some(),
                            full.is_ok(),
                            "{text:?} within {limits:?}: the full parser said {full:?}"
                        );
                        if let (Some(read), Ok(full)) = (read, full) {
                            assert_eq!(read, full);
                        }
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, texts.len() * 16 * 5 * 5);
    }

    /// Lines put together from manifest fragments and YAML's edges: whatever the subset reads,
    /// the full parser reads the same.
    #[test]
    fn generated_texts_agree() {
        let indent = prop_oneof![Just(""), Just(" "), Just("  "), Just("    ")];
        let key = prop_oneof![
            Just("name"),
            Just("members"),
            Just("description"),
            Just("a-b_c"),
            Just("On"),
            Just("x1"),
            Just("\"q\""),
        ];
        let scalar = prop_oneof![
            Just(""),
            Just("plain text"),
            Just("sip:ana@contoso.com"),
            Just("domain:contoso.com"),
            Just("https://x.example/a"),
            Just("./dir"),
            Just(".5"),
            Just("0"),
            Just("7"),
            Just("07"),
            Just("1e3"),
            Just("true"),
            Just("False"),
            Just("null"),
            Just("~"),
            Just("no"),
            Just("'it''s'"),
            Just("\"a\\\"b\\\\c\\n\""),
            Just("\"unclosed"),
            Just("[a, sip:b@c.d, 'e', \"f\"]"),
            Just("[sip:?x, sip:a@b.c]"),
            Just("[ ]"),
            Just("[a,b]"),
            Just("[a, ]"),
            Just("{}"),
            Just("{a: b}"),
            Just("a: b"),
            Just("a:"),
            Just("x # c"),
            Just("x#c"),
            Just("# c"),
            Just("&a x"),
            Just("*a"),
            Just("|"),
            Just("-"),
            Just("- x"),
            Just("é\u{a0}"),
            Just("\t"),
        ];
        let line = prop_oneof![
            (indent.clone(), key.clone(), scalar.clone())
                .prop_map(|(i, k, v)| format!("{i}{k}: {v}")),
            (indent.clone(), key).prop_map(|(i, k)| format!("{i}{k}:")),
            (indent.clone(), scalar.clone()).prop_map(|(i, v)| format!("{i}- {v}")),
            indent.clone().prop_map(|i| format!("{i}-")),
            Just("---".to_owned()),
            Just(String::new()),
            (indent, scalar).prop_map(|(i, v)| format!("{i}{v}")),
        ];
        let text = proptest::collection::vec(line, 1..12).prop_map(|lines| lines.join("\n"));
        let read = Cell::new(0usize);
        let mut runner = TestRunner::new(Config {
            cases: 4000,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&text, |text| {
                let outcome = compare(&text).map_err(TestCaseError::fail)?;
                if outcome == "read" {
                    read.set(read.get() + 1);
                }
                Ok(())
            })
            .unwrap();
        // Texts the subset declines prove nothing; enough of them must be read.
        assert!(
            read.get() > 400,
            "only {} of 4000 texts were read",
            read.get()
        );
    }
}
