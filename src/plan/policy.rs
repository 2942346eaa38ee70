//! Policies on the plan (`perch plan --policy FILE`): rules a repository keeps on the desired
//! state and on what a plan does, each `warn` or `deny`. Pure: the file's text in, the
//! violations out, each placed at the manifest document (and field) or the rule it concerns.
//!
//! ```yaml
//! rules:
//!   - rule: roomsHaveAManager          # every room names a manager
//!     level: deny
//!   - rule: secretRoomsNameTheirMembers # secret rooms list people or groups, not a domain
//!     level: warn
//!   - rule: namesMatch                 # names follow a pattern (a regular expression)
//!     kind: Room
//!     pattern: '^[a-z][a-z0-9-]*$'
//!     level: deny
//!   - rule: maxMessagesRemoved         # no removed room holds more than this many messages
//!     max: 1000
//!     level: deny
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::{Plan, Verb};
use crate::domain::Kind;
use crate::manifest::{Desired, Origin, Position, yaml};

/// How much a broken rule matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Printed; the plan goes on.
    Warn,
    /// Printed; the plan fails.
    Deny,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Warn => "warn",
            Level::Deny => "deny",
        })
    }
}

/// What a rule checks.
#[derive(Clone, Debug)]
enum Check {
    RoomsHaveAManager,
    SecretRoomsNameTheirMembers,
    NamesMatch {
        kind: Option<Kind>,
        pattern: regex::Regex,
    },
    MaxMessagesRemoved {
        max: u64,
    },
}

/// The rules' names, as a policy file spells them.
const RULES: &str =
    "roomsHaveAManager, secretRoomsNameTheirMembers, namesMatch, maxMessagesRemoved";

/// One rule of a policy file, with where it stands.
#[derive(Clone, Debug)]
struct Rule {
    name: String,
    level: Level,
    check: Check,
    file: Arc<PathBuf>,
    at: Position,
}

/// The rules of one or more policy files.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// Where a violation is: a manifest document (at a field, by JSON pointer) or a rule of the
/// policy (for what the plan does, which no manifest says).
#[derive(Clone, Debug)]
pub enum Place {
    Manifest { origin: Origin, pointer: String },
    Policy { file: Arc<PathBuf>, at: Position },
}

/// One rule broken.
#[derive(Clone, Debug)]
pub struct Violation {
    pub level: Level,
    pub rule: String,
    pub message: String,
    pub place: Place,
}

/// Patterns are compiled to at most this many bytes: a policy file is input too.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

impl Policy {
    /// Reads a policy file's text.
    ///
    /// # Errors
    /// `FILE:LINE:COLUMN: message` for the first thing that is not a rule as documented.
    pub fn parse(text: &str, file: &std::path::Path) -> Result<Policy, String> {
        let file = Arc::new(file.to_path_buf());
        let at_line = |at: Position, message: String| {
            format!("{}:{}:{}: {message}", file.display(), at.line, at.column)
        };
        let trees = yaml::parse_documents(text).map_err(|(at, message)| at_line(at, message))?;
        let mut rules = Vec::new();
        for tree in &trees {
            let mut positions = yaml::Positions::default();
            let document = yaml::to_json(tree, &mut positions);
            let Value::Object(mut top) = document else {
                return Err(at_line(
                    yaml::document_start(tree),
                    "a policy is a mapping with `rules:`".to_owned(),
                ));
            };
            top.remove("apiVersion");
            let listed = top.remove("rules");
            if let Some(other) = top.keys().next() {
                return Err(at_line(
                    positions.key(&format!("/{other}")),
                    format!(
                        "unknown key `{}`; a policy has `rules:`",
                        crate::text::excerpt(other, 64)
                    ),
                ));
            }
            let Some(Value::Array(listed)) = listed else {
                return Err(at_line(
                    yaml::document_start(tree),
                    "a policy has `rules:`, a list of rules".to_owned(),
                ));
            };
            for (index, entry) in listed.into_iter().enumerate() {
                let pointer = format!("/rules/{index}");
                let at = positions.value(&pointer);
                let rule = parse_rule(entry, &pointer, &positions)
                    .map_err(|(at, message)| at_line(at, message))?;
                rules.push(Rule {
                    name: rule.0,
                    level: rule.1,
                    check: rule.2,
                    file: file.clone(),
                    at,
                });
            }
        }
        Ok(Policy { rules })
    }

    /// Joins the rules of another file.
    pub fn extend(&mut self, other: Policy) {
        self.rules.extend(other.rules);
    }

    /// Every rule the desired state or the plan breaks, in rule order.
    pub fn check(&self, desired: &Desired, plan: &Plan) -> Vec<Violation> {
        let mut violations = Vec::new();
        for rule in &self.rules {
            let mut broken = |message: String, place: Place| {
                violations.push(Violation {
                    level: rule.level,
                    rule: rule.name.clone(),
                    message,
                    place,
                });
            };
            let at_field = |origin: &Origin, field: &str| Place::Manifest {
                origin: origin.clone(),
                pointer: format!("/{field}"),
            };
            match &rule.check {
                Check::RoomsHaveAManager => {
                    for ((kind, name), object) in desired.objects() {
                        let managers = object.fields.get("managers").and_then(Value::as_array);
                        if *kind == Kind::Room && managers.is_none_or(Vec::is_empty) {
                            broken(
                                format!("Room \"{name}\" names no manager"),
                                at_field(&object.origin, "managers"),
                            );
                        }
                    }
                }
                Check::SecretRoomsNameTheirMembers => {
                    for ((kind, name), object) in desired.objects() {
                        let secret =
                            object.fields.get("privacy").and_then(Value::as_str) == Some("secret");
                        if *kind != Kind::Room || !secret {
                            continue;
                        }
                        let domains: Vec<&str> = object
                            .fields
                            .get("members")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .filter(|member| member.starts_with("domain:"))
                            .collect();
                        if !domains.is_empty() {
                            broken(
                                format!(
                                    "secret Room \"{name}\" lets in a whole domain ({}); name its people or groups",
                                    domains.join(", ")
                                ),
                                at_field(&object.origin, "members"),
                            );
                        }
                    }
                }
                Check::NamesMatch { kind, pattern } => {
                    for ((object_kind, name), object) in desired.objects() {
                        if kind.is_some_and(|kind| kind != *object_kind) || pattern.is_match(name) {
                            continue;
                        }
                        broken(
                            format!(
                                "{object_kind} \"{name}\" does not match `{}`",
                                pattern.as_str()
                            ),
                            at_field(&object.origin, "name"),
                        );
                    }
                }
                Check::MaxMessagesRemoved { max } => {
                    let removed_rooms = plan.actions.iter().filter(|action| {
                        action.action == Verb::Remove && action.kind == Kind::Room
                    });
                    for action in removed_rooms {
                        // A count the target could not take is no count of zero.
                        let held = match action.messages {
                            Some(messages) if messages <= *max => continue,
                            Some(messages) => format!("{messages} message(s), more than {max}"),
                            None => format!(
                                "messages the target could not count (at most {max} allowed)"
                            ),
                        };
                        {
                            broken(
                                format!(
                                    "the plan removes Room \"{}\", which holds {held}",
                                    action.name
                                ),
                                Place::Policy {
                                    file: rule.file.clone(),
                                    at: rule.at,
                                },
                            );
                        }
                    }
                }
            }
        }
        violations
    }
}

type ParsedRule = (String, Level, Check);

fn parse_rule(
    entry: Value,
    pointer: &str,
    positions: &yaml::Positions,
) -> Result<ParsedRule, (Position, String)> {
    let at = |field: &str| positions.value(&format!("{pointer}/{field}"));
    let Value::Object(mut fields) = entry else {
        return Err((
            positions.value(pointer),
            "a rule is a mapping such as `{rule: roomsHaveAManager, level: deny}`".to_owned(),
        ));
    };
    let Some(Value::String(name)) = fields.remove("rule") else {
        return Err((
            positions.value(pointer),
            format!("a rule names its check in `rule:`, one of {RULES}"),
        ));
    };
    let level = match fields.remove("level").as_ref().and_then(Value::as_str) {
        Some("warn") => Level::Warn,
        Some("deny") => Level::Deny,
        _ => {
            return Err((
                at("level"),
                "a rule's `level:` is `warn` or `deny`".to_owned(),
            ));
        }
    };
    let check = match name.as_str() {
        "roomsHaveAManager" => Check::RoomsHaveAManager,
        "secretRoomsNameTheirMembers" => Check::SecretRoomsNameTheirMembers,
        "namesMatch" => {
            let kind = match fields.remove("kind") {
                None => None,
                Some(Value::String(kind)) => Some(
                    Kind::parse(&kind)
                        .filter(|kind| *kind != Kind::ComplianceConfiguration)
                        .ok_or_else(|| {
                            (
                                at("kind"),
                                "`kind:` is Category, Room, Addin or Group".to_owned(),
                            )
                        })?,
                ),
                Some(_) => {
                    return Err((at("kind"), "`kind:` is a kind's name".to_owned()));
                }
            };
            let Some(Value::String(pattern)) = fields.remove("pattern") else {
                return Err((
                    positions.value(pointer),
                    "namesMatch needs `pattern:`, a regular expression such as '^[a-z0-9-]+$'"
                        .to_owned(),
                ));
            };
            let pattern = regex::RegexBuilder::new(&pattern)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|error| (at("pattern"), format!("pattern: {error}")))?;
            Check::NamesMatch { kind, pattern }
        }
        "maxMessagesRemoved" => {
            let Some(max) = fields.remove("max").as_ref().and_then(Value::as_u64) else {
                return Err((
                    at("max"),
                    "maxMessagesRemoved needs `max:`, a whole number of messages".to_owned(),
                ));
            };
            Check::MaxMessagesRemoved { max }
        }
        other => {
            return Err((
                at("rule"),
                format!(
                    "unknown rule `{}`; the rules are {RULES}",
                    crate::text::excerpt(other, 64)
                ),
            ));
        }
    };
    if let Some(other) = fields.keys().next() {
        return Err((
            positions.key(&format!("{pointer}/{other}")),
            format!("rule {name} takes no `{}`", crate::text::excerpt(other, 64)),
        ));
    }
    Ok((name, level, check))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_files_are_read_strictly_and_placed() {
        let path = std::path::Path::new("policy.yaml");
        let policy = Policy::parse(
            "rules:\n  - rule: roomsHaveAManager\n    level: deny\n  - rule: namesMatch\n    kind: Room\n    pattern: '^[a-z-]+$'\n    level: warn\n",
            path,
        )
        .unwrap();
        assert_eq!(policy.rules.len(), 2);
        assert_eq!(policy.rules[1].at.line, 4);
        let refusals = [
            (
                "rules:\n  - rule: everything\n    level: deny\n",
                "policy.yaml:2:11: unknown rule `everything`",
            ),
            (
                "rules:\n  - rule: roomsHaveAManager\n    level: error\n",
                "policy.yaml:3:12: a rule's `level:` is `warn` or `deny`",
            ),
            (
                "rules:\n  - rule: namesMatch\n    pattern: '('\n    level: deny\n",
                "policy.yaml:3:14: pattern:",
            ),
            (
                "rules:\n  - rule: roomsHaveAManager\n    level: deny\n    max: 3\n",
                "policy.yaml:4:5: rule roomsHaveAManager takes no `max`",
            ),
            ("rule: x\n", "policy.yaml:1:1: unknown key `rule`"),
        ];
        for (text, expected) in refusals {
            let error = Policy::parse(text, path).unwrap_err();
            assert!(error.starts_with(expected), "{error}");
        }
    }
}
