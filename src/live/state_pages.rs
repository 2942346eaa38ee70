//! The objects of `GET /v1/state` taken as they arrive: the document a Perch server sends is
//! split into pages of whole objects while it downloads, and each page is read on another
//! thread ([`super::live_from_pages`]) while the next arrives, rather than holding the whole
//! document (sixty megabytes for a hundred thousand objects, held twice while collected) and
//! reading it when the last byte is in.
//!
//! # Guarantees
//! - **Only a document as Perch writes it is split**: one that does not begin with the
//!   opening of a layout ([`StateLayout::opening`]: objects as shown, or rows) is left for
//!   the reader of whole documents (another format, another writer), which says what it is.
//! - **A split never changes what is read.** Objects are split at the commas between them,
//!   found by following strings and nesting; the pages are then parsed in full. Text that is
//!   not one array of elements followed by [`STATE_CLOSING`] is an error, never a shorter
//!   state: a document cut short names that it was.

use crate::api::wire::{STATE_CLOSING, StateLayout};
#[cfg(test)]
use crate::api::wire::{STATE_OPENING, STATE_ROWS_OPENING};

/// The size a page reaches before it is handed on: large enough that its parse is not
/// dwarfed by handing it over, small enough that the reader starts early.
const PAGE_BYTES: usize = 512 * 1024;

/// Splits the text after a document's opening into pages of comma-separated elements.
#[derive(Debug, Default)]
pub(crate) struct Splitter {
    /// The layout the document's opening named: what follows its elements must be read in it
    /// too.
    layout: StateLayout,
    /// The text not yet handed on.
    pending: Vec<u8>,
    /// How much of `pending` has been followed.
    followed: usize,
    /// Where in `pending` the last comma between elements is.
    last_comma: Option<usize>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Where in `pending` the array closed: what follows it is the document's tail.
    closed_at: Option<usize>,
    /// Whether a page was handed on: then the text left at the end must hold an element.
    handed_on: bool,
}

/// Why the text is not a state document as Perch writes it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SplitError {
    #[error("the state document was cut short")]
    CutShort,
    #[error("the state document is not the JSON expected after its objects")]
    BadTail,
    #[error("the state document is not the JSON expected (a bracket closes what was not open)")]
    Unbalanced,
    #[error("the state document is not the JSON expected (an empty element)")]
    EmptyElement,
    #[error("the state document is not UTF-8")]
    NotUtf8,
}

/// The most text a document may hold after its objects (fields a later format might add).
const MAX_TAIL_BYTES: usize = 64 * 1024;

impl From<SplitError> for super::TargetError {
    fn from(error: SplitError) -> Self {
        super::TargetError::Unreadable(error.to_string())
    }
}

impl Splitter {
    /// A splitter for the text after the opening of a document in `layout`.
    pub(crate) fn new(layout: StateLayout) -> Splitter {
        Splitter {
            layout,
            ..Splitter::default()
        }
    }

    /// Takes the next part of the text; returns a page when one has filled.
    pub(crate) fn push(&mut self, part: &[u8]) -> Result<Option<String>, SplitError> {
        self.pending.extend_from_slice(part);
        self.follow()?;
        let Some(comma) = self.last_comma.filter(|comma| *comma >= PAGE_BYTES) else {
            return Ok(None);
        };
        // The page keeps the buffer, and only what follows the comma (less than a part) is
        // copied into a new one.
        let rest = self.pending.split_off(comma + 1);
        let mut page = std::mem::replace(&mut self.pending, rest);
        self.followed -= page.len();
        if let Some(closed_at) = &mut self.closed_at {
            *closed_at -= page.len();
        }
        self.last_comma = None;
        page.pop(); // the comma
        // A page of nothing would read as no objects where the document holds an empty
        // element, which the whole document's parse refuses.
        if is_blank(&page) {
            return Err(SplitError::EmptyElement);
        }
        self.handed_on = true;
        String::from_utf8(page)
            .map(Some)
            .map_err(|_| SplitError::NotUtf8)
    }

    /// The last page, once the text has ended: `None` when the document holds no object.
    pub(crate) fn finish(mut self) -> Result<Option<String>, SplitError> {
        let Some(closed_at) = self.closed_at else {
            return Err(SplitError::CutShort);
        };
        let tail = self.pending.split_off(closed_at + 1);
        check_tail(&tail, self.layout)?;
        self.pending.truncate(closed_at);
        if is_blank(&self.pending) {
            // After a page, the text before the `]` followed a comma: a trailing comma.
            return if self.handed_on {
                Err(SplitError::EmptyElement)
            } else {
                Ok(None)
            };
        }
        String::from_utf8(self.pending)
            .map(Some)
            .map_err(|_| SplitError::NotUtf8)
    }

    /// Follows the text not yet followed: strings, nesting, and the commas between elements,
    /// up to the array's `]`.
    fn follow(&mut self) -> Result<(), SplitError> {
        if let Some(closed_at) = self.closed_at {
            if self.pending.len() - closed_at > MAX_TAIL_BYTES {
                return Err(SplitError::BadTail);
            }
            self.followed = self.pending.len();
            return Ok(());
        }
        let mut at = self.followed;
        while at < self.pending.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    at += 1;
                    continue;
                }
                // Strings are most of the text: skip to the next quote or backslash.
                let Some(found) = memchr::memchr2(b'"', b'\\', &self.pending[at..]) else {
                    break;
                };
                at += found;
                if self.pending[at] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                }
                at += 1;
                continue;
            }
            match self.pending[at] {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b']' if self.depth == 0 => {
                    self.closed_at = Some(at);
                    self.followed = at + 1;
                    // What follows the array is the tail, checked whole at the end.
                    return self.follow();
                }
                b'}' | b']' => {
                    self.depth = self.depth.checked_sub(1).ok_or(SplitError::Unbalanced)?;
                }
                b',' if self.depth == 0 => self.last_comma = Some(at),
                _ => {}
            }
            at += 1;
        }
        self.followed = self.pending.len();
        Ok(())
    }
}

/// JSON's white space only.
fn is_blank(text: &[u8]) -> bool {
    text.iter()
        .all(|byte| matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
}

/// What follows the objects' `]`: [`STATE_CLOSING`]'s `}` as Perch writes it, or the rest of
/// a document in this format with more fields after its objects, read as the whole-document
/// reader reads them, which must find the layout the opening named (a `layout` given again
/// after the objects is refused, as a field given twice).
fn check_tail(tail: &[u8], layout: StateLayout) -> Result<(), SplitError> {
    let closing = &STATE_CLOSING.as_bytes()[1..];
    if tail.starts_with(closing) && is_blank(&tail[closing.len()..]) {
        return Ok(());
    }
    let mut document = layout.opening().as_bytes().to_vec();
    document.push(b']');
    document.extend_from_slice(tail);
    match serde_json::from_slice::<crate::api::wire::StateDocumentRead>(&document) {
        Ok(read) if read.layout == layout => Ok(()),
        Err(_) if tail.is_empty() => Err(SplitError::CutShort),
        Ok(_) | Err(_) => Err(SplitError::BadTail),
    }
}

/// How a document's first bytes begin it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// Too few have arrived to say.
    Undecided,
    /// As Perch writes a document of this layout: [`Splitter`] may take what follows its
    /// opening ([`StateLayout::opening`]).
    Perch(StateLayout),
    /// Otherwise: for the reader of whole documents.
    Other,
}

/// How a document whose first bytes are `start` begins.
pub(crate) fn opening_of(start: &[u8]) -> Opening {
    let mut undecided = false;
    for layout in [StateLayout::Objects, StateLayout::Rows] {
        let opening = layout.opening().as_bytes();
        if start.starts_with(opening) {
            return Opening::Perch(layout);
        }
        undecided |= opening.starts_with(start);
    }
    if undecided {
        Opening::Undecided
    } else {
        Opening::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document's pages, its text given `part` bytes at a time.
    fn pages_of(document: &str, part: usize) -> Result<Vec<String>, SplitError> {
        let body = document
            .strip_prefix(STATE_OPENING)
            .expect("a document as Perch writes it");
        let mut splitter = Splitter::new(StateLayout::Objects);
        let mut pages = Vec::new();
        for part in body.as_bytes().chunks(part.max(1)) {
            pages.extend(splitter.push(part)?);
        }
        pages.extend(splitter.finish()?);
        Ok(pages)
    }

    /// The objects of a document as split and then parsed page by page.
    fn read(document: &str, part: usize) -> Result<Vec<serde_json::Value>, String> {
        let mut objects = Vec::new();
        for page in pages_of(document, part).map_err(|error| error.to_string())? {
            let page: Vec<serde_json::Value> =
                serde_json::from_str(&format!("[{page}]")).map_err(|error| error.to_string())?;
            objects.extend(page);
        }
        Ok(objects)
    }

    /// Objects with the text that could mislead a split: commas, brackets and quotes in
    /// strings, escapes, nesting, text that is not ASCII.
    fn objects(count: usize) -> Vec<serde_json::Value> {
        (0..count)
            .map(|index| {
                serde_json::json!({
                    "kind": "Room",
                    "name": format!("room-{index}"),
                    "description": format!("a, \"}}],\" ] }} [{{ \\ ü {index}"),
                    "members": ["sip:a@x.com", "sip:b@x.com"],
                    "nested": {"list": [[], [{}], {"a,b": "]"}]},
                    "filler": "x".repeat(index % 700),
                })
            })
            .collect()
    }

    /// `document` with its closing `]}` written as `closing`.
    fn closed_as(document: &str, closing: &str) -> String {
        let at = document.rfind(STATE_CLOSING).expect("a closing");
        format!(
            "{}{closing}{}",
            &document[..at],
            &document[at + STATE_CLOSING.len()..]
        )
    }

    fn document(objects: &[serde_json::Value]) -> String {
        let elements: Vec<String> = objects.iter().map(ToString::to_string).collect();
        format!("{STATE_OPENING}{}{STATE_CLOSING}\n", elements.join(","))
    }

    #[test]
    fn the_pages_hold_every_object_whatever_the_parts() {
        for count in [0, 1, 2, 3_000] {
            let objects = objects(count);
            let document = document(&objects);
            for part in [1, 7, 4096, 1 << 20, document.len()] {
                if count == 3_000 && part < 4096 {
                    continue; // a byte at a time through 1.2 MB is slow in a debug build
                }
                let read = read(&document, part).expect("a whole document");
                assert_eq!(read, objects, "{count} objects in parts of {part}");
                if count == 3_000 {
                    let pages = pages_of(&document, part).expect("a whole document");
                    assert!(pages.len() > 1, "a large document is handed on in pages");
                }
            }
        }
    }

    #[test]
    fn a_document_not_whole_is_an_error() {
        let whole = document(&objects(2));
        let cut = &whole[..whole.len() - 3];
        assert_eq!(pages_of(cut, 5), Err(SplitError::CutShort));
        let before_closing = &whole[..whole.len() - 2];
        assert_eq!(pages_of(before_closing, 5), Err(SplitError::CutShort));
        let trailing = format!("{}x", whole.trim_end());
        assert_eq!(pages_of(&trailing, 5), Err(SplitError::BadTail));
        let second = format!("{}{STATE_CLOSING}", whole.trim_end());
        assert_eq!(pages_of(&second, 5), Err(SplitError::BadTail));
        let unbalanced = format!("{STATE_OPENING}{{}}}},{{}}{STATE_CLOSING}");
        assert_eq!(pages_of(&unbalanced, 5), Err(SplitError::Unbalanced));
        // Empty elements, which the whole document's parse refuses, refused whether they fall
        // where a page ends or within one: a trailing comma, and nothing between two commas.
        let large = document(&objects(3_000));
        let blank = " ".repeat(PAGE_BYTES + 10);
        let big = serde_json::json!({ "filler": "x".repeat(PAGE_BYTES + 10) });
        for refused in [
            closed_as(&large, ",]}"),
            format!("{STATE_OPENING}{{}},{blank},{{}}{STATE_CLOSING}"),
            format!("{STATE_OPENING}{{}},{blank}{STATE_CLOSING}"),
            // A page of nothing but white space between two pages.
            format!("{STATE_OPENING}{big},{blank},{{}}{STATE_CLOSING}"),
        ] {
            assert!(serde_json::from_str::<serde_json::Value>(&refused).is_err());
            for part in [4096, refused.len()] {
                assert!(read(&refused, part).is_err(), "in parts of {part}");
            }
        }
        assert_eq!(
            pages_of(&closed_as(&large, ",]}"), large.len() + 1),
            Err(SplitError::EmptyElement)
        );
    }

    /// A document of this format with fields after its objects (which a later server may
    /// add) reads as the whole-document reader reads it.
    #[test]
    fn fields_after_the_objects_are_read_as_a_whole_document_would_be() {
        let objects = objects(2);
        let base = document(&objects);
        let with_field = closed_as(&base, "], \"generation\": 7 }");
        let pages = pages_of(&with_field, 3).expect("a document with a field after its objects");
        assert_eq!(pages.len(), 1);
        // A layout named after the objects, where the opening named none (objects as
        // shown), would have the whole document read in another layout.
        for refused in [
            "], \"objects\": []}",
            "], 7}",
            "]} {}",
            "], \"layout\": \"rows\"}",
        ] {
            let document = closed_as(&base, refused);
            assert_eq!(
                pages_of(&document, 3),
                Err(SplitError::BadTail),
                "{refused}"
            );
        }
    }

    /// After rows, the tail is read in the rows' layout: another field is taken, the layout
    /// given again is a field given twice.
    #[test]
    fn the_tail_of_rows_is_read_as_rows() {
        assert_eq!(
            check_tail(br#","generation":7}"#, StateLayout::Rows),
            Ok(())
        );
        assert_eq!(
            check_tail(br#","layout":"objects"}"#, StateLayout::Rows),
            Err(SplitError::BadTail)
        );
        assert_eq!(
            check_tail(br#","layout":"rows"}"#, StateLayout::Rows),
            Err(SplitError::BadTail)
        );
    }

    #[test]
    fn only_the_opening_perch_writes_is_split() {
        let opening = STATE_OPENING.as_bytes();
        let rows = STATE_ROWS_OPENING.as_bytes();
        assert_eq!(opening_of(b""), Opening::Undecided);
        assert_eq!(opening_of(&opening[..5]), Opening::Undecided);
        assert_eq!(opening_of(&rows[..25]), Opening::Undecided);
        assert!(!opening.starts_with(&rows[..25]));
        assert_eq!(opening_of(opening), Opening::Perch(StateLayout::Objects));
        assert_eq!(opening_of(rows), Opening::Perch(StateLayout::Rows));
        assert_eq!(opening_of(b"{\"formatVersion\":2"), Opening::Other);
        assert_eq!(opening_of(b"{ \"formatVersion\""), Opening::Other);
        assert_eq!(
            opening_of(b"{\"formatVersion\":1,\"layout\":\"cols\""),
            Opening::Other
        );
        // Each opening names the format this build reads, and its own layout.
        for layout in [StateLayout::Objects, StateLayout::Rows] {
            let document = format!("{}{STATE_CLOSING}", layout.opening());
            let read: crate::api::wire::StateDocumentRead =
                serde_json::from_str(&document).expect("JSON");
            assert_eq!(read.format_version, crate::api::wire::STATE_FORMAT_VERSION);
            assert_eq!(read.layout, layout);
        }
    }
}
