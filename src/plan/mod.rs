//! The plan engine: (desired, live) -> ordered actions. Pure: no I/O, no clock, no await.
//!
//! # Guarantees
//! - Order respects dependencies both ways: groups, add-ins and categories are created or set
//!   before the rooms that use them; rooms are removed before what they used.
//! - Only fields a manifest gives are compared; lists compare as sets of normalised principals.
//! - Objects Perch does not manage are never changed or removed unless a manifest names them
//!   (then they are adopted).
//! - Applying a plan and planning again yields no actions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::api::wire::COMPLIANCE_NAME;
use crate::api::{Live, LiveObject};
use crate::domain::{Kind, Principal};
use crate::manifest::{Desired, DesiredObject};

/// The version of the JSON plan format (`perch plan --json`, `--out`).
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// What an action does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Create,
    Set,
    Remove,
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verb::Create => "create",
            Verb::Set => "set",
            Verb::Remove => "remove",
        })
    }
}

/// Why an action is in the plan. Sent in plans as its text (`reason`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Reason {
    /// A manifest names it and the server does not hold it.
    Absent,
    /// Perch manages it and no manifest names it any more.
    NoLongerInManifests,
    /// A manifest names an object Perch does not manage yet.
    NotYetManaged,
    /// Only the manifest's `protect` differs from the live mark.
    ProtectionDiffers,
    /// These fields differ, in the order the plan lists them.
    FieldsDiffer(Vec<String>),
    /// A reason this build does not know (read from a plan written by another).
    Other(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Absent => f.write_str("absent on the server"),
            Reason::NoLongerInManifests => {
                f.write_str("managed by perch and no longer in the manifests")
            }
            Reason::NotYetManaged => f.write_str("not yet managed by perch: adopt it"),
            Reason::ProtectionDiffers => f.write_str("protection differs"),
            Reason::FieldsDiffer(fields) => {
                let verb = if fields.len() == 1 {
                    "differs"
                } else {
                    "differ"
                };
                write!(f, "{} {verb}", fields.join(", "))
            }
            Reason::Other(text) => f.write_str(text),
        }
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> String {
        reason.to_string()
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Reason {
        let known = [
            Reason::Absent,
            Reason::NoLongerInManifests,
            Reason::NotYetManaged,
            Reason::ProtectionDiffers,
        ];
        if let Some(reason) = known.into_iter().find(|reason| reason.to_string() == text) {
            return reason;
        }
        match text
            .strip_suffix(" differs")
            .or_else(|| text.strip_suffix(" differ"))
        {
            Some(fields) => Reason::FieldsDiffer(fields.split(", ").map(str::to_owned).collect()),
            None => Reason::Other(text),
        }
    }
}

/// A change of one field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    pub field: String,
    /// For lists: entries added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    /// For lists: entries removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// For other fields: the live value (absent on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    /// For other fields: the desired value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub action: Verb,
    pub kind: Kind,
    pub name: String,
    /// Why it is in the plan.
    pub reason: Reason,
    /// The live version this action was planned against; `None` for creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
    /// The whole object to write, for create and set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
    /// Whether the manifest protects the object from removal.
    #[serde(default)]
    pub protect: bool,
    /// Whether this action only marks an unmanaged object as managed (no field changes).
    #[serde(default)]
    pub adopt_only: bool,
    /// Who changed the live object last, and when: shown by `drift`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_updated_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_updated_at: Option<String>,
}

impl Action {
    /// What it acts on: `Room "eng-news"`, or `ComplianceConfiguration`.
    pub fn subject(&self) -> String {
        if self.kind == Kind::ComplianceConfiguration {
            "ComplianceConfiguration".to_owned()
        } else {
            format!("{} \"{}\"", self.kind, self.name)
        }
    }

    /// The verb as people read it: `adopt` for an action that only marks an object managed.
    pub fn verb_text(&self) -> String {
        if self.adopt_only {
            "adopt".to_owned()
        } else {
            self.action.to_string()
        }
    }
}

/// One line: `create Room "eng-news"`.
impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb_text(), self.subject())
    }
}

/// The version of one live object a plan read (`None`: absent), to refuse a stale plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Read {
    pub kind: Kind,
    pub name: String,
    pub version: Option<i64>,
}

/// Counts for the closing line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub create: usize,
    pub change: usize,
    pub remove: usize,
    /// Unmanaged objects the manifests name, marked as managed on apply.
    pub adopt: usize,
    /// Live objects Perch does not manage and the manifests do not name: left alone.
    pub unmanaged: usize,
}

/// An ordered list of actions, with what it read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[must_use]
pub struct Plan {
    pub format_version: u32,
    pub summary: Summary,
    pub actions: Vec<Action>,
    pub reads: Vec<Read>,
}

impl Plan {
    /// Whether applying it would change the server's configuration (adoptions do not).
    pub fn has_changes(&self) -> bool {
        let Summary {
            create,
            change,
            remove,
            ..
        } = self.summary;
        create + change + remove > 0
    }
}

/// Why no plan can be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the plan would remove protected objects: {}", .0.join(", "))]
    RemovesProtected(Vec<String>),
}

/// Computes the actions that make `live` match `desired`.
///
/// # Errors
/// [`PlanError::RemovesProtected`] when a protected object would be removed.
pub fn plan(desired: &Desired, live: &Live) -> Result<Plan, PlanError> {
    let mut summary = Summary::default();
    let mut reads = Vec::new();
    let mut upserts: Vec<Action> = Vec::new();
    for ((kind, name), wanted) in desired.objects() {
        let current = live.objects.get(&(*kind, name.clone()));
        reads.push(Read {
            kind: *kind,
            name: name.clone(),
            version: current.map(|object| object.meta.version),
        });
        if let Some(action) = upsert(wanted, current, &mut summary) {
            upserts.push(action);
        }
    }
    if let Some(wanted) = desired.compliance() {
        reads.push(Read {
            kind: Kind::ComplianceConfiguration,
            name: COMPLIANCE_NAME.to_owned(),
            version: live.compliance.as_ref().map(|object| object.meta.version),
        });
        if let Some(mut action) = upsert(wanted, live.compliance.as_ref(), &mut summary) {
            COMPLIANCE_NAME.clone_into(&mut action.name);
            upserts.push(action);
        }
    }

    let mut removes = Vec::new();
    let mut protected = Vec::new();
    for ((kind, name), current) in &live.objects {
        if desired.objects().contains_key(&(*kind, name.clone())) {
            continue;
        }
        if !current.meta.managed {
            summary.unmanaged += 1;
            continue;
        }
        if current.meta.protect {
            protected.push(format!("{kind} `{name}`"));
            continue;
        }
        reads.push(Read {
            kind: *kind,
            name: name.clone(),
            version: Some(current.meta.version),
        });
        summary.remove += 1;
        removes.push(Action {
            action: Verb::Remove,
            kind: *kind,
            name: name.clone(),
            reason: Reason::NoLongerInManifests,
            expected_version: Some(current.meta.version),
            object: None,
            changes: Vec::new(),
            protect: false,
            adopt_only: false,
            live_updated_by: Some(current.meta.updated_by.clone()),
            live_updated_at: Some(current.meta.updated_at.clone()),
        });
    }
    if !protected.is_empty() {
        return Err(PlanError::RemovesProtected(protected));
    }

    let group_rank = group_ranks(desired, live);
    let rank = |action: &Action| group_rank.get(&action.name).copied().unwrap_or(0);
    upserts.sort_by(|a, b| {
        (
            create_order(a.kind),
            if a.kind == Kind::Group { rank(a) } else { 0 },
            &a.name,
        )
            .cmp(&(
                create_order(b.kind),
                if b.kind == Kind::Group { rank(b) } else { 0 },
                &b.name,
            ))
    });
    removes.sort_by(|a, b| {
        (
            remove_order(a.kind),
            if a.kind == Kind::Group {
                usize::MAX - rank(a)
            } else {
                0
            },
            &a.name,
        )
            .cmp(&(
                remove_order(b.kind),
                if b.kind == Kind::Group {
                    usize::MAX - rank(b)
                } else {
                    0
                },
                &b.name,
            ))
    });
    let mut actions = upserts;
    actions.extend(removes);
    Ok(Plan {
        format_version: PLAN_FORMAT_VERSION,
        summary,
        actions,
        reads,
    })
}

fn create_order(kind: Kind) -> u8 {
    match kind {
        Kind::Group => 0,
        Kind::Addin => 1,
        Kind::Category => 2,
        Kind::Room => 3,
        Kind::ComplianceConfiguration => 4,
    }
}

fn remove_order(kind: Kind) -> u8 {
    match kind {
        Kind::Room => 0,
        Kind::Category => 1,
        Kind::Addin => 2,
        Kind::Group => 3,
        Kind::ComplianceConfiguration => 4,
    }
}

/// How many levels of groups `name` names through `members`; a cycle stops where it comes
/// back to a group it is already inside.
fn depth(
    name: &str,
    members: &BTreeMap<String, Vec<String>>,
    memo: &mut HashMap<String, usize>,
    visiting: &mut BTreeSet<String>,
) -> usize {
    if let Some(known) = memo.get(name) {
        return *known;
    }
    if !visiting.insert(name.to_owned()) {
        return 0;
    }
    let value = members
        .get(name)
        .into_iter()
        .flatten()
        .map(|child| depth(child, members, memo, visiting) + 1)
        .max()
        .unwrap_or(0);
    visiting.remove(name);
    memo.insert(name.to_owned(), value);
    value
}

/// Ranks groups so that a group comes after every group it names (creation order), using
/// the desired members where given and the live ones otherwise.
fn group_ranks(desired: &Desired, live: &Live) -> HashMap<String, usize> {
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let groups_in = |fields: &Map<String, Value>| -> Vec<String> {
        fields
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| item.as_str()?.strip_prefix("group:").map(str::to_owned))
            .collect()
    };
    for ((kind, name), object) in &live.objects {
        if *kind == Kind::Group {
            members.insert(name.clone(), groups_in(&object.fields));
        }
    }
    for ((kind, name), object) in desired.objects() {
        if *kind == Kind::Group && object.fields.contains_key("members") {
            members.insert(name.clone(), groups_in(&object.fields));
        }
    }
    let mut memo = HashMap::new();
    for name in members.keys() {
        depth(name, &members, &mut memo, &mut BTreeSet::new());
    }
    memo
}

/// The create or set action for one desired object, if any.
fn upsert(
    wanted: &DesiredObject,
    current: Option<&LiveObject>,
    summary: &mut Summary,
) -> Option<Action> {
    let Some(current) = current else {
        summary.create += 1;
        // The name is in the action's own line already.
        let changes = wanted
            .fields
            .iter()
            .filter(|(field, _)| field.as_str() != "name")
            .map(|(field, value)| creation_change(field, value))
            .collect();
        return Some(Action {
            action: Verb::Create,
            kind: wanted.kind,
            name: wanted.name.clone(),
            reason: Reason::Absent,
            expected_version: None,
            object: Some(wanted.fields.clone()),
            changes,
            protect: wanted.protect,
            adopt_only: false,
            live_updated_by: None,
            live_updated_at: None,
        });
    };
    let changes = field_changes(&wanted.fields, &current.fields);
    let adopt = !current.meta.managed || current.meta.protect != wanted.protect;
    if changes.is_empty() && !adopt {
        return None;
    }
    let mut merged = current.fields.clone();
    for (field, value) in &wanted.fields {
        merged.insert(field.clone(), value.clone());
    }
    let reason = if !changes.is_empty() {
        Reason::FieldsDiffer(changes.iter().map(|change| change.field.clone()).collect())
    } else if current.meta.managed {
        Reason::ProtectionDiffers
    } else {
        Reason::NotYetManaged
    };
    let adopt_only = changes.is_empty();
    if adopt_only {
        summary.adopt += 1;
    } else {
        summary.change += 1;
    }
    Some(Action {
        action: Verb::Set,
        kind: wanted.kind,
        name: wanted.name.clone(),
        reason,
        expected_version: Some(current.meta.version),
        object: Some(merged),
        changes,
        protect: wanted.protect,
        adopt_only,
        live_updated_by: Some(current.meta.updated_by.clone()),
        live_updated_at: Some(current.meta.updated_at.clone()),
    })
}

fn creation_change(field: &str, value: &Value) -> FieldChange {
    match value {
        Value::Array(items) => FieldChange {
            field: field.to_owned(),
            added: items.iter().map(value_text).collect(),
            removed: Vec::new(),
            from: None,
            to: None,
        },
        other => FieldChange {
            field: field.to_owned(),
            added: Vec::new(),
            removed: Vec::new(),
            from: None,
            to: Some(other.clone()),
        },
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The fields the manifest gives whose live value differs. Lists compare as sets.
fn field_changes(wanted: &Map<String, Value>, live: &Map<String, Value>) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    for (field, desired_value) in wanted {
        let live_value = live.get(field).unwrap_or(&Value::Null);
        if desired_value == live_value {
            // Both sides hold lists sorted and deduplicated, so equal lists are equal sets.
            continue;
        }
        match (desired_value, live_value) {
            (Value::Array(desired_items), live_items) => {
                let desired_set = principal_set(desired_items);
                let live_set =
                    principal_set(live_items.as_array().map(Vec::as_slice).unwrap_or_default());
                if desired_set != live_set {
                    changes.push(FieldChange {
                        field: field.clone(),
                        added: desired_set.difference(&live_set).cloned().collect(),
                        removed: live_set.difference(&desired_set).cloned().collect(),
                        from: None,
                        to: None,
                    });
                }
            }
            (desired_value, live_value) if !same_value(desired_value, live_value) => {
                changes.push(FieldChange {
                    field: field.clone(),
                    added: Vec::new(),
                    removed: Vec::new(),
                    from: Some(live_value.clone()),
                    to: Some(desired_value.clone()),
                });
            }
            _ => {}
        }
    }
    changes
}

fn same_value(desired: &Value, live: &Value) -> bool {
    desired == live
}

/// Normalised principals of a list; entries that are not principals compare as written.
fn principal_set(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .map(|item| {
            let text = value_text(item);
            Principal::parse(&text).map_or(text, |principal| principal.to_string())
        })
        .collect()
}

/// The objects a saved plan read whose live version has changed since, described.
pub fn stale_reads(plan: &Plan, live: &Live) -> Vec<String> {
    plan.reads
        .iter()
        .filter_map(|read| {
            let now = if read.kind == Kind::ComplianceConfiguration {
                live.compliance.as_ref().map(|object| object.meta.version)
            } else {
                live.objects
                    .get(&(read.kind, read.name.clone()))
                    .map(|object| object.meta.version)
            };
            let describe = |version: Option<i64>| {
                version.map_or("absent".to_owned(), |v| format!("version {v}"))
            };
            (now != read.version).then(|| {
                let by = live
                    .objects
                    .get(&(read.kind, read.name.clone()))
                    .map(|object| {
                        format!(
                            " (changed by {} at {})",
                            object.meta.updated_by, object.meta.updated_at
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "{} `{}`: {} when planned, {} now{by}",
                    read.kind,
                    read.name,
                    describe(read.version),
                    describe(now)
                )
            })
        })
        .collect()
}

pub mod render;
#[cfg(test)]
mod tests;
