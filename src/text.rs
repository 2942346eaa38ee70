//! Text from outside (manifests, request bodies, stored names) made safe to show a person:
//! inert on a terminal, and short.

use std::borrow::Cow;

/// Whether a terminal would obey `c` rather than show it, or show nothing for it: control
/// characters (ESC, CR, BEL, ...), the bidirectional controls that reorder a line, the line
/// and paragraph separators (U+2028, U+2029) that some viewers break a line at, and the
/// invisible characters that make two different names print alike (soft hyphen, zero-width
/// space, word joiner and invisible operators, the byte-order mark U+FEFF). The zero-width
/// joiners stay: scripts and emoji sequences need them.
pub fn is_unsafe_for_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{200B}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Text a terminal shows as it is and does not obey: every character
/// [`is_unsafe_for_terminal`] flags is written as a `\u{..}` escape.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_for_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe_for_terminal(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// At most `max` characters of `text`, terminal-safe, with `…` when cut: how a message quotes
/// a value it did not write.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut cut: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        cut.push('…');
    }
    terminal_safe(&cut).into_owned()
}

/// Every line of `text` made [`terminal_safe`], the line breaks between them kept: for output
/// assembled from many values (a plan, a drift report).
pub fn lines_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split('\n').enumerate() {
        if index > 0 {
            out.push('\n');
        }
        out.push_str(&terminal_safe(line));
    }
    out
}

/// Lower-case hexadecimal, two digits a byte: how Perch prints every hash.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_safe_escapes_controls_bidi_overrides_separators_and_invisibles_only() {
        let cases = [
            ("plain é 😀", "plain é 😀"),
            ("clear\u{1b}[2J", "clear\\u{1b}[2J"),
            (
                "forged\rPlan: 0 to create\u{7}",
                "forged\\u{d}Plan: 0 to create\\u{7}",
            ),
            ("\u{202E}gnp.exe", "\\u{202e}gnp.exe"),
            ("tab\tnewline\n", "tab\\u{9}newline\\u{a}"),
            (
                "line\u{2028}Plan: 0 to create\u{2029}",
                "line\\u{2028}Plan: 0 to create\\u{2029}",
            ),
            (
                "\u{feff}eng\u{200b}\u{ad}\u{2060}",
                "\\u{feff}eng\\u{200b}\\u{ad}\\u{2060}",
            ),
            (
                "👨\u{200d}👩\u{200d}👧 नि\u{200c}",
                "👨\u{200d}👩\u{200d}👧 नि\u{200c}",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(terminal_safe(input), expected, "{input:?}");
        }
    }

    #[test]
    fn lines_stay_lines_and_nothing_else_acts() {
        assert_eq!(
            lines_safe("a\r\nPlan: 0 to create\u{1b}[2J\nb"),
            "a\\u{d}\nPlan: 0 to create\\u{1b}[2J\nb"
        );
    }

    #[test]
    fn excerpts_are_short_and_inert() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("a much longer value", 6), "a much…");
        assert_eq!(excerpt("\u{1b}[2Jx", 3), "\\u{1b}[2…");
    }
}
