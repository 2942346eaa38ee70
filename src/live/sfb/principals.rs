//! `--principal-map FILE`: Perch's `group:NAME` and `domain:NAME` principals and the Active
//! Directory distinguished names a Skype for Business server takes in their place, both ways.
//! Users are SIP addresses on both sides and need no entry.

use std::collections::BTreeMap;

use crate::domain::Principal;

/// The map, read from a YAML or JSON mapping of principal to distinguished name:
/// `group:Engineering: "CN=Engineering,OU=Groups,DC=contoso,DC=com"`.
#[derive(Clone, Debug, Default)]
pub struct PrincipalMap {
    to_dn: BTreeMap<Principal, String>,
    /// Keyed by the distinguished name in upper case: AD compares them without case.
    from_dn: BTreeMap<String, Principal>,
}

/// Whether text is an AD distinguished name rather than a SIP address.
pub fn is_distinguished_name(text: &str) -> bool {
    let upper = text.trim_start().to_ascii_uppercase();
    ["CN=", "OU=", "DC=", "O="]
        .iter()
        .any(|prefix| upper.starts_with(prefix))
}

fn dn_key(dn: &str) -> String {
    dn.split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_uppercase()
}

impl PrincipalMap {
    /// Reads the map's text (YAML or JSON, within the manifest limits).
    ///
    /// # Errors
    /// Text that is not a mapping of principals to distinguished names, naming the entry.
    pub fn parse(text: &str) -> Result<PrincipalMap, String> {
        let values = crate::manifest::yaml::parse_values(text)
            .map_err(|(at, message)| format!("{}:{}: {message}", at.line, at.column))?;
        let mut map = PrincipalMap::default();
        for value in values {
            let serde_json::Value::Object(entries) = value else {
                return Err("the principal map is a mapping of `group:NAME` or `domain:NAME` to a distinguished name".to_owned());
            };
            for (principal, dn) in entries {
                let parsed = Principal::parse(&principal)
                    .map_err(|error| format!("`{principal}`: {error}"))?;
                if matches!(parsed, Principal::User(_)) {
                    return Err(format!(
                        "`{principal}`: users are SIP addresses on both sides; map groups and domains only"
                    ));
                }
                let Some(dn) = dn.as_str().filter(|dn| is_distinguished_name(dn)) else {
                    return Err(format!(
                        "`{principal}` maps to {dn}, which is not a distinguished name (CN=..., OU=..., DC=...)"
                    ));
                };
                if let Some(other) = map.from_dn.insert(dn_key(dn), parsed.clone()) {
                    return Err(format!(
                        "`{dn}` is mapped twice: to `{other}` and to `{parsed}`"
                    ));
                }
                map.to_dn.insert(parsed, dn.to_owned());
            }
        }
        Ok(map)
    }

    /// Every principal the map names.
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.to_dn.keys()
    }

    /// The text the server takes for a principal: a SIP address as it is, a group or domain
    /// as its distinguished name.
    ///
    /// # Errors
    /// A group or domain the map does not name.
    pub fn to_server(&self, principal: &Principal) -> Result<String, String> {
        match principal {
            Principal::User(_) => Ok(principal.to_string()),
            other => self.to_dn.get(other).cloned().ok_or_else(|| {
                format!(
                    "`{other}` has no distinguished name in the principal map (--principal-map); add `{other}: \"CN=...,DC=...\"`"
                )
            }),
        }
    }

    /// A principal as the server wrote it: a SIP address, or a distinguished name the map
    /// names.
    ///
    /// # Errors
    /// A distinguished name the map does not name, or text that is neither.
    pub fn from_server(&self, text: &str) -> Result<Principal, String> {
        if is_distinguished_name(text) {
            return self.from_dn.get(&dn_key(text)).cloned().ok_or_else(|| {
                format!(
                    "`{text}` is a distinguished name the principal map (--principal-map) does not name; add `group:NAME: \"{text}\"`"
                )
            });
        }
        Principal::parse(text).map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_domains_map_both_ways_and_the_rest_is_an_error() {
        let map = PrincipalMap::parse(
            "group:Eng: \"CN=Eng,OU=Groups,DC=contoso,DC=com\"\ndomain:contoso.com: \"DC=contoso,DC=com\"\n",
        )
        .unwrap();
        let eng = Principal::parse("group:Eng").unwrap();
        assert_eq!(
            map.to_server(&eng).unwrap(),
            "CN=Eng,OU=Groups,DC=contoso,DC=com"
        );
        assert_eq!(
            map.from_server("cn=eng, ou=groups,dc=contoso,dc=com")
                .unwrap(),
            eng
        );
        assert_eq!(
            map.from_server("sip:Ann@Contoso.com").unwrap().to_string(),
            "sip:ann@contoso.com"
        );
        let unmapped = map
            .to_server(&Principal::parse("group:Ops").unwrap())
            .unwrap_err();
        assert!(unmapped.contains("`group:Ops`"), "{unmapped}");
        let unknown = map.from_server("CN=Ops,DC=contoso,DC=com").unwrap_err();
        assert!(unknown.contains("CN=Ops"), "{unknown}");
        assert!(PrincipalMap::parse("sip:a@b.com: \"CN=A\"").is_err());
        assert!(PrincipalMap::parse("group:A: not-a-dn").is_err());
    }
}
