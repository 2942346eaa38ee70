//! Principals: who may appear in a member, manager, presenter, allowed, denied or creator list.
//!
//! The original accepted SIP URIs, AD groups, OUs and whole domains. Perch keeps three forms:
//! `sip:user@domain` (one user), `group:NAME` (a directory [`Group`](super::Group)) and
//! `domain:contoso.com` (every user of that SIP domain). A principal is always held in its
//! normalised form, so comparing two principals never depends on how a person typed them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest principal Perch accepts, in characters.
pub const MAX_PRINCIPAL_LEN: usize = 512;

/// One entry of a principal list, normalised.
///
/// The variants are declared in the order of their prefixes (`domain:` < `group:` < `sip:`),
/// so principals sort exactly as their text does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// `domain:contoso.com`, lower-cased.
    Domain(String),
    /// `group:NAME`; group names keep their case, as every other object name does.
    Group(String),
    /// `sip:user@domain`, lower-cased: SIP addresses are case-insensitive in Persistent Chat.
    User(String),
}

/// Why a string is not a principal. The message is shown to users as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid principal `{input}`: {reason}")]
pub struct PrincipalError {
    pub input: String,
    pub reason: &'static str,
}

impl Principal {
    /// Parses and normalises a principal.
    ///
    /// `SIP:Alice@Contoso.COM` and the bare `alice@contoso.com` both become
    /// `sip:alice@contoso.com`.
    ///
    /// # Errors
    /// Anything but the three documented forms, with a reason naming what is wrong.
    pub fn parse(input: &str) -> Result<Principal, PrincipalError> {
        let (form, rest) = checked(input)?;
        Ok(match form {
            // `rest` is `user@domain` as written; ASCII, the common case, needs no Unicode
            // case tables.
            Form::User if rest.is_ascii() => Principal::User(rest.to_ascii_lowercase()),
            Form::User => Principal::User(rest.to_lowercase()),
            Form::Group => Principal::Group(rest.to_owned()),
            Form::Domain => Principal::Domain(rest.to_ascii_lowercase()),
        })
    }

    /// The normalised text of a principal (what [`Principal::parse`] then
    /// [`Principal::into_text`] give), borrowed from `input` when `input` is already
    /// normalised: a manifest of a hundred thousand rooms holds a million principals, most of
    /// them written as they are stored.
    ///
    /// # Errors
    /// As [`Principal::parse`].
    pub fn normalised_text(input: &str) -> Result<std::borrow::Cow<'_, str>, PrincipalError> {
        if is_plain_stored_sip_address(input) {
            return Ok(std::borrow::Cow::Borrowed(input));
        }
        let (form, rest) = checked(input)?;
        let prefix = match form {
            Form::User => "sip:",
            Form::Group => "group:",
            Form::Domain => "domain:",
        };
        let lower_case = form == Form::Group
            || (rest.is_ascii() && !rest.bytes().any(|byte| byte.is_ascii_uppercase()));
        let written_normalised =
            lower_case && input.len() == prefix.len() + rest.len() && input.starts_with(prefix);
        if written_normalised {
            Ok(std::borrow::Cow::Borrowed(input))
        } else {
            Principal::parse(input).map(|principal| std::borrow::Cow::Owned(principal.into_text()))
        }
    }

    /// The principal whose text [`Principal::normalised_text`] or [`Principal::into_text`]
    /// gave, split at its scheme rather than checked again: the scope checks of a manifest
    /// read its million principals a second time. `None` without a known scheme; nothing
    /// else is checked, except in debug builds (the tests), which check that `text` parses to
    /// the same principal.
    pub(crate) fn from_normalised_text(text: &str) -> Option<Principal> {
        let principal = if let Some(address) = text.strip_prefix("sip:") {
            Principal::User(address.to_owned())
        } else if let Some(name) = text.strip_prefix("group:") {
            Principal::Group(name.to_owned())
        } else if let Some(domain) = text.strip_prefix("domain:") {
            Principal::Domain(domain.to_owned())
        } else {
            return None;
        };
        debug_assert_eq!(
            Principal::parse(text).as_ref(),
            Ok(&principal),
            "not a normalised principal"
        );
        Some(principal)
    }

    /// The principal as text, as [`fmt::Display`] writes it, built without the formatting
    /// machinery.
    pub fn into_text(self) -> String {
        let (scheme, rest) = match self {
            Principal::User(address) => ("sip:", address),
            Principal::Group(name) => ("group:", name),
            Principal::Domain(domain) => ("domain:", domain),
        };
        let mut text = String::with_capacity(scheme.len() + rest.len());
        text.push_str(scheme);
        text.push_str(&rest);
        text
    }

    /// The SIP domain a user belongs to; `None` for groups and domains.
    pub fn user_domain(&self) -> Option<&str> {
        match self {
            Principal::User(address) => split_at_byte(address, b'@').map(|(_, domain)| domain),
            _ => None,
        }
    }
}

/// Which of the three forms a principal has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    User,
    Group,
    Domain,
}

/// The one check of a principal: its form, and what follows the scheme as written (`input`
/// trimmed, for a bare address all of it).
fn checked(input: &str) -> Result<(Form, &str), PrincipalError> {
    let fail = |reason| PrincipalError {
        input: input.to_owned(),
        reason,
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(fail("a principal cannot be empty"));
    }
    // Bytes are never fewer than characters: counting is needed only past the limit.
    if trimmed.len() > MAX_PRINCIPAL_LEN && trimmed.chars().count() > MAX_PRINCIPAL_LEN {
        return Err(fail("longer than 512 characters"));
    }
    // Principals are short, and a manifest holds a million of them: a plain loop finds a byte
    // sooner than a string searcher is set up. The bytes sought are ASCII, so the text splits
    // at character boundaries.
    let (scheme, rest) = match split_at_byte(trimmed, b':') {
        Some((scheme, rest)) => (scheme, rest),
        None if trimmed.bytes().any(|byte| byte == b'@') => ("sip", trimmed),
        None => {
            return Err(fail(
                "expected sip:user@domain, group:NAME or domain:DOMAIN",
            ));
        }
    };
    // Schemes are matched in any case without a lower-cased copy.
    if scheme.eq_ignore_ascii_case("sip") {
        let (user, domain) = split_at_byte(rest, b'@')
            .ok_or_else(|| fail("a SIP address needs the form sip:user@domain"))?;
        let malformed = |c: char| c.is_whitespace() || c == '@' || c == ':';
        let user_malformed = if user.is_ascii() {
            user.bytes().any(|byte| malformed(char::from(byte)))
        } else {
            user.contains(malformed)
        };
        if user.is_empty() || user_malformed {
            return Err(fail("the user part of a SIP address is empty or malformed"));
        }
        if !is_domain(domain) {
            return Err(fail(
                "the domain of a SIP address is not a valid domain name",
            ));
        }
        Ok((Form::User, rest))
    } else if scheme.eq_ignore_ascii_case("group") {
        if rest.trim().is_empty() || rest.trim() != rest {
            return Err(fail("a group principal needs a group name: group:NAME"));
        }
        Ok((Form::Group, rest))
    } else if scheme.eq_ignore_ascii_case("domain") {
        if !is_domain(rest) {
            return Err(fail("not a valid domain name: domain:contoso.com"));
        }
        Ok((Form::Domain, rest))
    } else {
        Err(fail(
            "unknown kind of principal; expected sip:user@domain, group:NAME or domain:DOMAIN",
        ))
    }
}

/// Whether `text` is a SIP address written as it is stored, in the plainest form: `sip:`, a
/// user part of lower-case ASCII letters, digits, `.`, `_`, `-` and `+`, `@`, and a domain
/// in lower case. Most of the million principals a manifest of a hundred thousand rooms holds
/// are of this form, and it is told in one pass over each part where [`checked`] and the
/// case checks of [`Principal::normalised_text`] take several. Every text it accepts is one
/// `normalised_text` borrows, in printable ASCII
/// (`plain_stored_sip_addresses_are_written_normalised`); the others are judged in full.
pub(crate) fn is_plain_stored_sip_address(text: &str) -> bool {
    let Some(address) = text.strip_prefix("sip:") else {
        return false;
    };
    let user_len = address
        .bytes()
        .position(|byte| !matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'+'))
        .unwrap_or(address.len());
    let Some(domain) = address[user_len..].strip_prefix('@') else {
        return false;
    };
    user_len > 0
        && text.len() <= MAX_PRINCIPAL_LEN
        && is_domain(domain)
        && !domain.bytes().any(|byte| byte.is_ascii_uppercase())
}

/// Dot-separated labels of ASCII letters, digits and inner hyphens, of 1 to 63 bytes each,
/// 253 in all.
fn is_domain(text: &str) -> bool {
    if text.is_empty() || text.len() > 253 {
        return false;
    }
    // One pass over the bytes, a label at a time.
    let mut label_len = 0;
    let mut previous = b'.';
    for &byte in text.as_bytes() {
        if byte == b'.' {
            if label_len == 0 || previous == b'-' {
                return false;
            }
            label_len = 0;
        } else if byte.is_ascii_alphanumeric() || (byte == b'-' && label_len > 0) {
            label_len += 1;
            if label_len > 63 {
                return false;
            }
        } else {
            return false;
        }
        previous = byte;
    }
    label_len > 0 && previous != b'-'
}

/// `text` split around the first `byte` (ASCII), which neither part holds.
fn split_at_byte(text: &str, byte: u8) -> Option<(&str, &str)> {
    debug_assert!(byte.is_ascii());
    let at = text.bytes().position(|each| each == byte)?;
    Some((&text[..at], &text[at + 1..]))
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::User(address) => write!(f, "sip:{address}"),
            Principal::Group(name) => write!(f, "group:{name}"),
            Principal::Domain(domain) => write!(f, "domain:{domain}"),
        }
    }
}

impl schemars::JsonSchema for Principal {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Principal".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "sip:user@domain (one user), group:NAME (a Group) or domain:DOMAIN (every user of a SIP domain).",
            "type": "string",
            "pattern": "^([sS][iI][pP]:[^@\\s:]+@[A-Za-z0-9.-]+|[gG][rR][oO][uU][pP]:\\S.*|[dD][oO][mM][aA][iI][nN]:[A-Za-z0-9.-]+|[^@\\s:]+@[A-Za-z0-9.-]+)$",
            "examples": ["sip:alice@contoso.com", "group:Engineering", "domain:contoso.com"]
        })
    }
}

impl Serialize for Principal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Principal::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Principal {
    type Err = PrincipalError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Principal::parse(text)
    }
}

/// The directory groups known when a question about scope is asked: name to members.
///
/// Groups may contain groups; cycles are tolerated and simply end the walk. Each group's
/// members are held sorted and without duplicates (made so by [`Directory::new`], whatever
/// order they came in), so that a user is found in a group of thousands by one binary search:
/// a live stream's server judges a 16,000-member room for every stream on it.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    groups: BTreeMap<String, Vec<Principal>>,
}

impl Directory {
    pub fn new(groups: impl IntoIterator<Item = (String, Vec<Principal>)>) -> Directory {
        Directory {
            groups: groups
                .into_iter()
                .map(|(name, mut members)| {
                    // Stored lists are sorted already, which this sort checks in one pass.
                    normalise_list(&mut members);
                    (name, members)
                })
                .collect(),
        }
    }

    pub fn contains_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// The users `list` names, itself or through its groups (and theirs, and so on), when
    /// it takes in nobody else: `None` once a domain is among them. A group the directory
    /// lacks names nobody. A user may come more than once.
    ///
    /// # Guarantees
    /// For every user `u`: `covers(list, u)` implies `u` is in the answer, when there is one
    /// (a user is covered only by being named, by a domain, or by a group that names it).
    pub fn users_named_by<'a>(&'a self, list: &'a [Principal]) -> Option<Vec<&'a Principal>> {
        let mut users = Vec::new();
        let mut visited = BTreeSet::new();
        let mut pending = vec![list];
        while let Some(list) = pending.pop() {
            for entry in list {
                match entry {
                    Principal::User(_) => users.push(entry),
                    Principal::Domain(_) => return None,
                    Principal::Group(name) => {
                        if let Some((key, members)) = self.groups.get_key_value(name)
                            && visited.insert(key.as_str())
                        {
                            pending.push(members);
                        }
                    }
                }
            }
        }
        Some(users)
    }

    /// Whether `list` covers `principal`: names it, or names a domain or group that takes it in.
    ///
    /// A group is covered when the list names it (directly or through an enclosing group) or
    /// when the list covers every one of its members; an empty group is not covered.
    pub fn covers(&self, list: &[Principal], principal: &Principal) -> bool {
        self.covers_expanding(list, principal, &mut BTreeSet::new(), false)
    }

    /// [`Directory::covers`]; `expanding` holds the groups whose members are being checked, so
    /// that a group is never covered through itself (a cycle ends the walk).
    fn covers_expanding<'a>(
        &'a self,
        list: &[Principal],
        principal: &Principal,
        expanding: &mut BTreeSet<&'a str>,
        empty_groups_covered: bool,
    ) -> bool {
        if self.names(Listed::AsGiven(list), principal, &mut BTreeSet::new()) {
            return true;
        }
        let Principal::Group(name) = principal else {
            return false;
        };
        let Some((key, members)) = self.groups.get_key_value(name) else {
            return false;
        };
        if members.is_empty() {
            return empty_groups_covered;
        }
        if !expanding.insert(key.as_str()) {
            return false;
        }
        let covered = members
            .iter()
            .all(|member| self.covers_expanding(list, member, expanding, empty_groups_covered));
        expanding.remove(key.as_str());
        covered
    }

    /// Whether `list` names `principal`: the principal itself, a domain that takes in a user,
    /// or a group whose members name it (`visited`: the groups already walked).
    fn names<'a>(
        &'a self,
        list: Listed<'_>,
        principal: &Principal,
        visited: &mut BTreeSet<&'a str>,
    ) -> bool {
        // The entries that may name `principal` other than by being it: in a sorted list, the
        // domains and groups, which sort before every user.
        let walked = match list {
            Listed::AsGiven(list) => list,
            Listed::Sorted(list) => {
                if list.binary_search(principal).is_ok() {
                    return true;
                }
                &list[..list.partition_point(|entry| !matches!(entry, Principal::User(_)))]
            }
        };
        for entry in walked {
            if entry == principal {
                return true;
            }
            match entry {
                Principal::Domain(domain) if principal.user_domain() == Some(domain.as_str()) => {
                    return true;
                }
                Principal::Group(name) => {
                    let Some((key, members)) = self.groups.get_key_value(name) else {
                        continue;
                    };
                    if visited.insert(key.as_str())
                        && self.names(Listed::Sorted(members), principal, visited)
                    {
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    }

    /// Whether `principal` may be given a role under a category's allowed and denied lists:
    /// covered by the allowed list and not covered by the denied list (denied wins).
    pub fn within_scope(
        &self,
        allowed: &[Principal],
        denied: &[Principal],
        principal: &Principal,
    ) -> bool {
        // An empty group grants nobody anything, so it is within any scope; it is denied only
        // when the denied list names it.
        self.covers_expanding(allowed, principal, &mut BTreeSet::new(), true)
            && !self.covers(denied, principal)
    }
}

/// A list of principals as [`Directory::names`] walks it.
#[derive(Clone, Copy)]
enum Listed<'a> {
    /// In any order, perhaps with duplicates: every entry is looked at.
    AsGiven(&'a [Principal]),
    /// Sorted and without duplicates (a group of the directory): a user is looked up.
    Sorted(&'a [Principal]),
}

/// Sorts a list and drops duplicates, so that lists compare as sets.
pub fn normalise_list(list: &mut Vec<Principal>) {
    list.sort();
    list.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Principal {
        Principal::parse(text).unwrap()
    }

    #[test]
    fn normalises_case_and_prefix() {
        assert_eq!(p("SIP:Alice@Contoso.COM"), p("sip:alice@contoso.com"));
        assert_eq!(p("alice@contoso.com").to_string(), "sip:alice@contoso.com");
        assert_eq!(p("Domain:Contoso.com").to_string(), "domain:contoso.com");
        assert_eq!(p("group:Eng").to_string(), "group:Eng");
        assert_eq!(
            p("sip:Ärne@Contoso.com").to_string(),
            "sip:ärne@contoso.com"
        );
    }

    #[test]
    fn text_is_what_display_writes() {
        for text in ["sip:Ärne@x.com", "bob@X.com", "group:Eng", "DOMAIN:Y.com"] {
            let principal = p(text);
            assert_eq!(
                principal.clone().into_text(),
                principal.to_string(),
                "{text}"
            );
        }
    }

    /// `normalised_text` gives what `parse` then `into_text` give, borrowing only what is
    /// already normalised, and refuses what `parse` refuses with the same error.
    #[test]
    fn normalised_text_is_the_parsed_text() {
        let inputs = [
            "sip:ana@contoso.com",
            "SIP:Ana@Contoso.com",
            "sip:ana@Contoso.com",
            "Sip:ana@contoso.com",
            "ana@contoso.com",
            " sip:ana@contoso.com",
            "sip:ana@contoso.com ",
            "sip:ärne@x.com",
            "sip:Ärne@x.com",
            "group:Eng",
            "GROUP:Eng",
            "group: Eng",
            "domain:contoso.com",
            "domain:Contoso.com",
            "Domain:contoso.com",
            "domain:-x.com",
            "domain:x..com",
            "domain:x.com-",
            "domain:exämple.com",
            "sip:a b@x.com",
            "sip:a\u{a0}b@x.com",
            "sip:@x.com",
            "sip:a@",
            "x",
            "",
            "teams:ana",
        ];
        let mut borrowed = Vec::new();
        for input in inputs {
            let parsed = Principal::parse(input).map(Principal::into_text);
            let text = Principal::normalised_text(input);
            assert_eq!(
                text.as_ref().map(ToString::to_string).map_err(Clone::clone),
                parsed,
                "{input:?}"
            );
            if let Ok(std::borrow::Cow::Borrowed(_)) = text {
                borrowed.push(input);
            }
        }
        assert_eq!(
            borrowed,
            ["sip:ana@contoso.com", "group:Eng", "domain:contoso.com"]
        );
    }

    /// The one-pass check of a domain answers as its definition reads: labels split at dots,
    /// each of 1 to 63 letters, digits and hyphens, neither beginning nor ending with a hyphen.
    #[test]
    fn domains_are_checked_as_defined() {
        fn as_defined(text: &str) -> bool {
            !text.is_empty()
                && text.len() <= 253
                && text.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
        // Every text of up to four pieces of the alphabet, and labels around the limits.
        let alphabet = ["a", "Z", "0", "-", ".", "_", "ä", " "];
        let mut texts = crate::test_support::texts_of_pieces(&alphabet, 4);
        for label in [62, 63, 64] {
            texts.push("a".repeat(label));
            texts.push(format!("x.{}.com", "b".repeat(label)));
        }
        texts.push(["abc"; 63].join("."));
        texts.push(format!("{}.de", ["abc"; 63].join(".")));
        let mut accepted = 0;
        for text in &texts {
            assert_eq!(is_domain(text), as_defined(text), "{text:?}");
            accepted += usize::from(is_domain(text));
        }
        assert!(
            accepted > 100 && accepted < texts.len() / 2,
            "{accepted} of {}",
            texts.len()
        );
    }

    /// What the one-pass check takes is written as stored, in printable ASCII: the full
    /// check borrows it. And it takes the common forms, so that it saves work.
    #[test]
    fn plain_stored_sip_addresses_are_written_normalised() {
        let pieces = [
            "a", "Z", "0", "@", ".", "-", "_", "+", ":", " ", "ä", "\u{2028}",
        ];
        let mut texts: Vec<String> = crate::test_support::texts_of_pieces(&pieces, 5)
            .into_iter()
            .flat_map(|text| [format!("sip:{text}"), text])
            .collect();
        texts.extend([
            format!("sip:{}@x.com", "a".repeat(MAX_PRINCIPAL_LEN - 10)),
            format!("sip:{}@x.com", "a".repeat(MAX_PRINCIPAL_LEN - 9)),
            format!("sip:a@{}.com", "b".repeat(64)),
            format!("sip:a@{}", ["abc"; 64].join(".")),
        ]);
        let mut taken = 0;
        for text in &texts {
            if is_plain_stored_sip_address(text) {
                taken += 1;
                assert!(
                    text.bytes().all(|byte| (0x20..0x7f).contains(&byte)),
                    "{text:?}"
                );
                assert!(matches!(checked(text), Ok((Form::User, _))), "{text:?}");
                let parsed = Principal::parse(text).map(Principal::into_text);
                assert_eq!(parsed.as_deref(), Ok(text.as_str()), "{text:?}");
            }
        }
        assert!(taken > 100, "only {taken} of {} taken", texts.len());
        for common in [
            "sip:user7@contoso.com",
            "sip:ana.lopez@eu.contoso.com",
            "sip:first_last-2+chat@x-y.example.org",
        ] {
            assert!(is_plain_stored_sip_address(common), "{common:?}");
        }
        for other in [
            "sip:Ana@contoso.com",
            "sip:ana@Contoso.com",
            "SIP:ana@contoso.com",
            "ana@contoso.com",
            "sip:ana@contoso.com ",
            "sip:@contoso.com",
            "sip:ana@",
            "group:eng",
        ] {
            assert!(!is_plain_stored_sip_address(other), "{other:?}");
        }
    }

    /// The text a principal is normalised to splits back into the principal it parses to.
    #[test]
    fn normalised_text_splits_back_into_its_principal() {
        for input in [
            "SIP:Ana@Contoso.com",
            "ana@contoso.com",
            " sip:ärne@x.com ",
            "group:Eng",
            "group:a:b",
            "Domain:Contoso.com",
        ] {
            let text = Principal::normalised_text(input).unwrap();
            assert_eq!(
                Principal::from_normalised_text(&text),
                Principal::parse(input).ok(),
                "{input:?}"
            );
        }
        assert_eq!(Principal::from_normalised_text("teams:ana"), None);
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "not a normalised principal")]
    fn a_text_not_normalised_is_caught_in_tests() {
        let _ = Principal::from_normalised_text("sip:Ana@contoso.com");
    }

    #[test]
    fn principals_sort_as_their_text() {
        let mut principals = [
            p("sip:b@x.com"),
            p("group:Z"),
            p("domain:y.com"),
            p("sip:a@x.com"),
            p("group:A"),
        ];
        let mut texts: Vec<String> = principals.iter().map(ToString::to_string).collect();
        principals.sort();
        texts.sort();
        assert_eq!(
            principals
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            texts
        );
    }

    /// Groups are looked up by binary search: members given in any order, with duplicates,
    /// domains and nested groups among the users, are still found (and nobody else is).
    #[test]
    fn a_group_given_in_any_order_covers_its_members() {
        let mut big: Vec<Principal> = (0..2_000)
            .rev()
            .map(|n| p(&format!("sip:u{n}@x.com")))
            .collect();
        big.insert(700, p("group:inner"));
        big.insert(1_300, p("domain:y.com"));
        big.push(p("sip:u5@x.com"));
        let directory = Directory::new([
            ("big".to_owned(), big),
            (
                "inner".to_owned(),
                vec![p("sip:zed@z.com"), p("sip:amy@z.com")],
            ),
        ]);
        let list = [p("group:big")];
        for (principal, covered) in [
            ("sip:u0@x.com", true),
            ("sip:u1999@x.com", true),
            ("sip:u5@x.com", true),
            ("sip:u2000@x.com", false),
            ("sip:anyone@y.com", true),
            ("sip:amy@z.com", true),
            ("sip:zed@z.com", true),
            ("sip:bob@z.com", false),
            ("group:inner", true),
            ("group:big", true),
            ("domain:y.com", true),
            ("domain:x.com", false),
        ] {
            assert_eq!(
                directory.covers(&list, &p(principal)),
                covered,
                "{principal}"
            );
        }
    }

    /// A group is covered when the list covers each of its members, through whichever groups
    /// they sit in and in whatever order those were given.
    #[test]
    fn a_group_is_covered_by_covering_its_members_in_any_order() {
        for enclosing in [
            vec![p("group:Z"), p("group:Y")],
            vec![p("group:Y"), p("group:Z")],
        ] {
            let directory = Directory::new([
                ("A".to_owned(), enclosing.clone()),
                ("Z".to_owned(), vec![p("sip:u@x.com")]),
                ("Y".to_owned(), vec![p("sip:v@x.com")]),
                ("G".to_owned(), vec![p("sip:u@x.com")]),
                ("H".to_owned(), vec![p("sip:u@x.com"), p("sip:w@x.com")]),
                ("Loop".to_owned(), vec![p("group:Loop")]),
            ]);
            let list = [p("group:A")];
            assert!(directory.covers(&list, &p("group:G")), "{enclosing:?}");
            assert!(!directory.covers(&list, &p("group:H")), "{enclosing:?}");
            assert!(!directory.covers(&list, &p("group:Loop")), "{enclosing:?}");
        }
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "",
            "alice",
            "sip:alice",
            "sip:@contoso.com",
            "sip:alice@",
            "sip:alice@bad_domain",
            "OU=Eng,DC=corp,DC=test",
            "group:",
            "domain:",
            "tel:+123",
        ] {
            assert!(Principal::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn scope_follows_domains_groups_and_denied() {
        let directory = Directory::new([
            ("eng".to_owned(), vec![p("sip:a@x.com"), p("sip:b@y.com")]),
            ("outer".to_owned(), vec![p("group:eng")]),
            ("loop".to_owned(), vec![p("group:loop")]),
        ]);
        let allowed = [p("domain:x.com"), p("group:outer")];
        let denied = [p("sip:bad@x.com")];
        assert!(directory.within_scope(&allowed, &denied, &p("sip:z@x.com")));
        assert!(directory.within_scope(&allowed, &denied, &p("sip:b@y.com")));
        assert!(directory.within_scope(&allowed, &denied, &p("group:eng")));
        assert!(!directory.within_scope(&allowed, &denied, &p("sip:bad@x.com")));
        assert!(!directory.within_scope(&allowed, &denied, &p("sip:c@y.com")));
        assert!(!directory.within_scope(&allowed, &denied, &p("domain:y.com")));
        assert!(!directory.within_scope(&allowed, &denied, &p("group:loop")));
        let by_members = [p("sip:a@x.com"), p("sip:b@y.com")];
        assert!(directory.covers(&by_members, &p("group:eng")));
        let with_empty = Directory::new([("empty".to_owned(), vec![])]);
        assert!(with_empty.within_scope(&allowed, &denied, &p("group:empty")));
        assert!(!with_empty.within_scope(&allowed, &[p("group:empty")], &p("group:empty")));
    }
}
