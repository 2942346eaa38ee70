//! Bearer tokens' rules: their public id, how long they live, whether one still works.

/// Hex characters of a token's SHA-256 that name it in lists and revocations: enough to be
/// unique among any server's tokens, useless for signing in.
pub const TOKEN_ID_LEN: usize = 16;

/// The longest lifetime a token may be given: ten years.
pub const MAX_LIFETIME_SECONDS: i64 = 10 * 366 * 86_400;

/// A token's public id: the start of its hash.
pub fn token_id(hash: &str) -> &str {
    hash.get(..TOKEN_ID_LEN).unwrap_or(hash)
}

/// Whether `text` could be a token id (hex, [`TOKEN_ID_LEN`] or more characters, at most a
/// whole hash).
pub fn looks_like_token_id(text: &str) -> bool {
    (TOKEN_ID_LEN..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A lifetime as people write it: a number and `m`, `h`, `d` or `w` (`90m`, `12h`, `30d`,
/// `52w`), in seconds.
///
/// # Errors
/// Anything else, or a lifetime over ten years or under a minute.
pub fn parse_lifetime(text: &str) -> Result<i64, String> {
    let invalid = || format!("`{text}` is not a lifetime such as 90m, 12h, 30d or 52w");
    let text = text.trim();
    let unit = text.chars().last().ok_or_else(invalid)?;
    let number: i64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| invalid())?;
    let seconds = match unit {
        'm' => number.checked_mul(60),
        'h' => number.checked_mul(3600),
        'd' => number.checked_mul(86_400),
        'w' => number.checked_mul(7 * 86_400),
        _ => None,
    }
    .ok_or_else(invalid)?;
    if !(60..=MAX_LIFETIME_SECONDS).contains(&seconds) {
        return Err(format!(
            "a token lives between one minute and ten years, not `{text}`"
        ));
    }
    Ok(seconds)
}

/// Whether a token with this expiry still works at `now` (both in the stored time form, which
/// sorts as text).
pub fn is_current(expires_at: Option<&str>, now: &str) -> bool {
    expires_at.is_none_or(|expires_at| now < expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_as_people_write_them() {
        let cases = [
            ("90m", Ok(5400)),
            ("12h", Ok(43_200)),
            ("30d", Ok(2_592_000)),
            ("52w", Ok(31_449_600)),
            ("30s", Err(())),
            ("0d", Err(())),
            ("-1d", Err(())),
            ("11y", Err(())),
            ("5000w", Err(())),
            ("d", Err(())),
            ("", Err(())),
            ("99999999999999999999d", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_lifetime(text).map_err(|_| ()), expected, "{text}");
        }
    }

    #[test]
    fn a_token_works_until_its_expiry() {
        let at = "2026-11-25T10:00:00.000000Z";
        assert!(is_current(None, at));
        assert!(is_current(Some("2026-11-25T10:00:00.000001Z"), at));
        assert!(!is_current(Some(at), at));
        assert!(!is_current(Some("2026-01-01T00:00:00.000000Z"), at));
        assert_eq!(token_id("0123456789abcdef0123"), "0123456789abcdef");
        assert!(looks_like_token_id("0123456789abcdef"));
        assert!(!looks_like_token_id("perch_0123456789abcdef"));
    }
}
