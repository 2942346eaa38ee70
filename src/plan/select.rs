//! `--target KIND/NAME` and `--exclude KIND/NAME`: a part of a plan, with what that part
//! needs. Pure, like the engine.
//!
//! # Guarantees
//! - A kept action keeps the actions it depends on: creating or changing a room keeps the
//!   creation or change of its category, add-in and the groups its lists name; removing a
//!   category, add-in or group keeps the actions on the objects that still use it. Each one
//!   pulled in is said, with why.
//! - A dependency that `--exclude` leaves out is an error naming both, never a plan that
//!   fails half way on the server.
//! - The part keeps the whole plan's reads, so a saved part is refused when anything the whole
//!   plan read has changed.

use std::collections::BTreeSet;

use globset::{GlobBuilder, GlobMatcher};
use serde_json::{Map, Value};

use super::{Action, COMPLIANCE_NAME, Plan, Summary, Verb};
use crate::api::Live;
use crate::domain::Kind;

/// One `KIND/NAME` pattern: a kind (or `*`) and a glob over names.
#[derive(Clone, Debug)]
pub struct Pattern {
    text: String,
    kind: Option<Kind>,
    name: GlobMatcher,
}

impl Pattern {
    /// Reads `Room/eng-*`, `*/legacy-*`, `Category/Engineering` or `ComplianceConfiguration`.
    ///
    /// # Errors
    /// A kind Perch does not have, a missing name, or a glob that does not compile.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text == Kind::ComplianceConfiguration.as_str() {
            return Ok(Pattern {
                text: text.to_owned(),
                kind: Some(Kind::ComplianceConfiguration),
                name: compile(COMPLIANCE_NAME, text)?,
            });
        }
        let (kind, name) = text.split_once('/').ok_or_else(|| {
            format!("`{text}` is not KIND/NAME (e.g. Room/eng-news, Room/eng-*, */legacy-*)")
        })?;
        let kind = match kind {
            "*" => None,
            kind => Some(
                Kind::ALL
                    .into_iter()
                    .find(|known| known.as_str().eq_ignore_ascii_case(kind))
                    .ok_or_else(|| {
                        format!(
                            "`{text}`: `{kind}` is not a kind; use Category, Room, Addin, Group or *"
                        )
                    })?,
            ),
        };
        if name.is_empty() {
            return Err(format!("`{text}` names no object after the `/`"));
        }
        Ok(Pattern {
            text: text.to_owned(),
            kind,
            name: compile(name, text)?,
        })
    }

    fn matches(&self, kind: Kind, name: &str) -> bool {
        self.kind.is_none_or(|wanted| wanted == kind) && self.name.is_match(name)
    }
}

/// Names are one name whatever their case (as the server compares them), so globs match
/// without case too.
fn compile(glob: &str, text: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(glob)
        .case_insensitive(true)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|error| format!("`{text}`: {error}"))
}

/// What `--target` and `--exclude` ask for.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub targets: Vec<Pattern>,
    pub excludes: Vec<Pattern>,
}

impl Selection {
    /// Whether it selects the whole plan.
    pub fn is_everything(&self) -> bool {
        self.targets.is_empty() && self.excludes.is_empty()
    }

    fn chosen(&self, action: &Action) -> bool {
        let named = |pattern: &Pattern| {
            pattern.matches(action.kind, &action.name)
                || pattern.matches(action.kind, action.live_name())
        };
        (self.targets.is_empty() || self.targets.iter().any(named))
            && !self.excludes.iter().any(named)
    }

    fn excluded_by(&self, action: &Action) -> Option<&str> {
        self.excludes
            .iter()
            .find(|pattern| {
                pattern.matches(action.kind, &action.name)
                    || pattern.matches(action.kind, action.live_name())
            })
            .map(|pattern| pattern.text.as_str())
    }
}

/// The part of a plan a selection keeps.
#[derive(Debug)]
pub struct Selected {
    pub plan: Plan,
    /// Actions kept only because a chosen one needs them: (action, why).
    pub pulled_in: Vec<(String, String)>,
    /// Actions of the whole plan left out.
    pub left_out: usize,
}

/// The objects `fields` names: a room's category and add-in, and the groups of any list.
pub(super) fn references(kind: Kind, fields: &Map<String, Value>) -> Vec<(Kind, String)> {
    let mut named = Vec::new();
    if kind == Kind::Room {
        for (field, referenced) in [("category", Kind::Category), ("addin", Kind::Addin)] {
            if let Some(Value::String(name)) = fields.get(field) {
                named.push((referenced, name.clone()));
            }
        }
    }
    for value in fields.values() {
        let Value::Array(items) = value else { continue };
        for item in items {
            if let Some(group) = item.as_str().and_then(|text| text.strip_prefix("group:")) {
                named.push((Kind::Group, group.to_owned()));
            }
        }
    }
    named
}

/// Keeps the actions `selection` chooses and those they depend on.
///
/// # Errors
/// A chosen action that needs one `--exclude` leaves out, naming both.
pub fn select(plan: Plan, live: &Live, selection: &Selection) -> Result<Selected, String> {
    if selection.is_everything() {
        return Ok(Selected {
            plan,
            pulled_in: Vec::new(),
            left_out: 0,
        });
    }
    let actions = &plan.actions;
    let mut kept: BTreeSet<usize> = (0..actions.len())
        .filter(|index| selection.chosen(&actions[*index]))
        .collect();
    let mut pulled_in = Vec::new();
    let mut queue: Vec<usize> = kept.iter().copied().collect();
    while let Some(index) = queue.pop() {
        let action = &actions[index];
        for (dependency, why) in dependencies(index, actions, live) {
            if kept.contains(&dependency) {
                continue;
            }
            let needed = &actions[dependency];
            if let Some(pattern) = selection.excluded_by(needed) {
                return Err(format!(
                    "`{action}` needs `{needed}` ({why}), which --exclude {pattern} leaves out; exclude both or neither"
                ));
            }
            kept.insert(dependency);
            queue.push(dependency);
            pulled_in.push((needed.to_string(), format!("{why} ({action})")));
        }
    }
    let left_out = actions.len() - kept.len();
    let Plan {
        summary,
        actions,
        reads,
        ..
    } = plan;
    let actions: Vec<Action> = actions
        .into_iter()
        .enumerate()
        .filter(|(index, _)| kept.contains(index))
        .map(|(_, action)| action)
        .collect();
    let summary = recount(&actions, summary);
    Ok(Selected {
        plan: Plan {
            format_version: super::format_for(&actions),
            summary,
            actions,
            reads,
        },
        pulled_in,
        left_out,
    })
}

/// The actions `actions[index]` cannot do without, with why.
fn dependencies(index: usize, actions: &[Action], live: &Live) -> Vec<(usize, &'static str)> {
    let action = &actions[index];
    let mut needed = Vec::new();
    match action.action {
        Verb::Create | Verb::Set if !action.forget => {
            let Some(object) = &action.object else {
                return needed;
            };
            for (kind, name) in references(action.kind, object) {
                if let Some(found) = actions.iter().position(|other| {
                    other.kind == kind
                        && other.name == name
                        && matches!(other.action, Verb::Create | Verb::Set)
                }) {
                    needed.push((found, "it is used"));
                }
            }
        }
        Verb::Remove => {
            // Whatever still points at the removed object must stop first: its own action
            // (a removal or a change of the reference) is in the plan.
            let removed = (action.kind, action.name.as_str());
            for (other_index, other) in actions.iter().enumerate() {
                if other_index == index {
                    continue;
                }
                let Some(current) = live
                    .objects
                    .get(&(other.kind, other.live_name().to_owned()))
                else {
                    continue;
                };
                let points_here = references(other.kind, &current.fields)
                    .iter()
                    .any(|(kind, name)| (*kind, name.as_str()) == removed);
                if points_here {
                    needed.push((other_index, "it stops using what is removed"));
                }
            }
        }
        _ => {}
    }
    needed
}

/// The summary's counts for the actions kept; what the whole plan saw of the server stays.
fn recount(actions: &[Action], whole: Summary) -> Summary {
    let mut summary = Summary {
        unmanaged: whole.unmanaged,
        ..Summary::default()
    };
    for action in actions {
        if action.forget {
            summary.forget += 1;
        } else if action.adopt_only {
            summary.adopt += 1;
        } else {
            match action.action {
                Verb::Create => summary.create += 1,
                Verb::Set => summary.change += 1,
                Verb::Remove => summary.remove += 1,
            }
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(verb: Verb, kind: Kind, name: &str, object: Option<Value>) -> Action {
        Action {
            action: verb,
            kind,
            name: name.to_owned(),
            reason: super::super::Reason::Absent,
            expected_version: None,
            object: object.and_then(|value| value.as_object().cloned()),
            changes: Vec::new(),
            protect: false,
            adopt_only: false,
            renamed_from: None,
            forget: false,
            messages: None,
            live_updated_by: None,
            live_updated_at: None,
        }
    }

    fn plan(actions: Vec<Action>) -> Plan {
        Plan {
            format_version: super::super::PLAN_FORMAT_VERSION,
            summary: recount(&actions, Summary::default()),
            actions,
            reads: Vec::new(),
        }
    }

    fn selection(targets: &[&str], excludes: &[&str]) -> Selection {
        Selection {
            targets: targets.iter().map(|t| Pattern::parse(t).unwrap()).collect(),
            excludes: excludes
                .iter()
                .map(|t| Pattern::parse(t).unwrap())
                .collect(),
        }
    }

    fn names(selected: &Selected) -> Vec<String> {
        selected
            .plan
            .actions
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_chosen_room_brings_what_it_uses_and_says_so() {
        let whole = plan(vec![
            action(Verb::Create, Kind::Group, "eng", None),
            action(Verb::Create, Kind::Category, "Engineering", None),
            action(Verb::Create, Kind::Category, "Sales", None),
            action(
                Verb::Create,
                Kind::Room,
                "eng-news",
                Some(serde_json::json!({"category": "Engineering", "members": ["group:eng"]})),
            ),
            action(Verb::Create, Kind::Room, "sales-news", None),
        ]);
        let live = Live::default();
        let selected = select(whole.clone(), &live, &selection(&["Room/eng-*"], &[])).unwrap();
        assert_eq!(
            names(&selected),
            [
                "create Group \"eng\"",
                "create Category \"Engineering\"",
                "create Room \"eng-news\""
            ]
        );
        assert_eq!(selected.pulled_in.len(), 2);
        assert_eq!(selected.left_out, 2);
        assert_eq!(selected.plan.summary.create, 3);

        let refused = select(
            whole.clone(),
            &live,
            &selection(&["Room/eng-news"], &["Category/*"]),
        )
        .unwrap_err();
        assert!(refused.contains("--exclude Category/*"), "{refused}");

        let excluded = select(whole, &live, &selection(&[], &["*/sales*", "Room/*"])).unwrap();
        assert_eq!(
            names(&excluded),
            ["create Group \"eng\"", "create Category \"Engineering\""]
        );
    }

    #[test]
    fn patterns_are_read_strictly() {
        assert!(
            Pattern::parse("Rooms/x")
                .unwrap_err()
                .contains("not a kind")
        );
        assert!(
            Pattern::parse("eng-news")
                .unwrap_err()
                .contains("KIND/NAME")
        );
        assert!(
            Pattern::parse("Room/")
                .unwrap_err()
                .contains("names no object")
        );
        assert!(Pattern::parse("room/eng-[").is_err());
        assert!(Pattern::parse("ComplianceConfiguration").is_ok());
        assert!(
            Pattern::parse("room/eng-*")
                .unwrap()
                .matches(Kind::Room, "eng-x")
        );
    }
}
