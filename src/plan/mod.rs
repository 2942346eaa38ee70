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

/// The newest version of the JSON plan format (`perch plan --json`, `--out`). Format 2 adds
/// renames (`renamedFrom`) and forgetting (`forget`), which a reader of format 1 would carry
/// out wrongly; a plan without them is written as format 1, which every perch reads.
pub const PLAN_FORMAT_VERSION: u32 = 2;

/// The format a plan of these actions needs.
pub fn format_for(actions: &[Action]) -> u32 {
    if actions
        .iter()
        .any(|action| action.forget || action.renamed_from.is_some())
    {
        2
    } else {
        1
    }
}

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
    /// A `kind: Forget` document lets go of it.
    Forgotten,
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
            Reason::Forgotten => {
                f.write_str("a Forget document lets go of it: no longer managed, kept")
            }
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
            Reason::Forgotten,
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
    /// For a rename (`previousNames`): the name the live object has, under which it is
    /// written with its new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// The action only ends Perch's management (a `kind: Forget` document): the marks are
    /// cleared, the fields kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forget: bool,
    /// For a room's removal: the messages its history holds, which the removal deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
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

    /// The verb as people read it: `adopt` for an action that only marks an object managed,
    /// `forget` for one that only unmarks it, `rename` for a rename.
    pub fn verb_text(&self) -> String {
        if self.forget {
            "forget".to_owned()
        } else if self.adopt_only {
            "adopt".to_owned()
        } else if self.renamed_from.is_some() {
            "rename".to_owned()
        } else {
            self.action.to_string()
        }
    }

    /// The name the live object has now: the old one for a rename.
    pub fn live_name(&self) -> &str {
        self.renamed_from.as_deref().unwrap_or(&self.name)
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
    /// Managed objects `kind: Forget` documents let go of (unmarked on apply, kept).
    #[serde(default)]
    pub forget: usize,
    /// Messages in the history of the rooms the plan removes, when the target could count them.
    #[serde(default)]
    pub removed_messages: u64,
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
    /// Whether applying it would change the server (adoptions do not; forgetting does, as
    /// it hands objects over to people).
    pub fn has_changes(&self) -> bool {
        let Summary {
            create,
            change,
            remove,
            forget,
            ..
        } = self.summary;
        create + change + remove + forget > 0
    }
}

/// Why no plan can be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the plan would remove protected objects: {}", .0.join(", "))]
    RemovesProtected(Vec<String>),
    #[error(
        "the plan removes objects that objects it keeps still name, through an additive list, an ignored field or a Forget document: {}; drop the reference there too, or keep the object",
        .0.join(", ")
    )]
    RemovesNamed(Vec<String>),
}

/// Refuses a plan that removes an object something it keeps will still name: an additive
/// list keeps live entries, an ignored field its live value, a forgotten object all of it, so
/// the server would refuse the removal part way through the apply.
fn still_named(
    desired: &Desired,
    view: &Live,
    upserts: &[Action],
    removes: &[Action],
) -> Result<(), PlanError> {
    if removes.is_empty() {
        return Ok(());
    }
    let removing: BTreeSet<(Kind, &str)> = removes
        .iter()
        .map(|action| (action.kind, action.name.as_str()))
        .collect();
    let written: HashMap<(Kind, &str), &Map<String, Value>> = upserts
        .iter()
        .filter(|action| !action.forget)
        .filter_map(|action| Some(((action.kind, action.name.as_str()), action.object.as_ref()?)))
        .collect();
    let mut named = Vec::new();
    for (kind, name) in desired.objects().keys().chain(desired.forget().keys()) {
        let fields = written.get(&(*kind, name.as_str())).copied().or_else(|| {
            view.objects
                .get(&(*kind, name.clone()))
                .map(|object| &*object.fields)
        });
        let Some(fields) = fields else { continue };
        for (referenced, referenced_name) in select::references(*kind, fields) {
            if removing.contains(&(referenced, referenced_name.as_str())) {
                named.push(format!(
                    "{referenced} `{referenced_name}` (named by {kind} `{name}`)"
                ));
            }
        }
    }
    if named.is_empty() {
        Ok(())
    } else {
        Err(PlanError::RemovesNamed(named))
    }
}

/// What a plan is asked beyond the manifests.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Fields left alone on every object of a kind (`ignoreFields` in perch.yaml), beside each
    /// manifest's own.
    pub ignore_fields: BTreeMap<Kind, BTreeSet<String>>,
}

/// Computes the actions that make `live` match `desired`.
///
/// # Errors
/// [`PlanError::RemovesProtected`] when a protected object would be removed.
pub fn plan(desired: &Desired, live: &Live) -> Result<Plan, PlanError> {
    plan_with(desired, live, &PlanOptions::default())
}

/// [`plan`], with the repository's options.
///
/// Renames (`previousNames`) are planned against the live state as it will be once they are
/// done: the server points references at the new name itself (rooms at a renamed category or
/// add-in, lists at a renamed group), so those objects change only if the manifests change
/// them otherwise, and then without an expected version, since the rename moves it.
///
/// # Errors
/// [`PlanError::RemovesProtected`] when a protected object would be removed.
pub fn plan_with(desired: &Desired, live: &Live, options: &PlanOptions) -> Result<Plan, PlanError> {
    let renames = renames(desired, live);
    let live_after_renames;
    let view = if renames.is_empty() {
        live
    } else {
        live_after_renames = rename_in(live, &renames);
        &live_after_renames
    };
    // What a saved plan checks is the server before the apply: versions from `live`, under
    // the names objects have there.
    let version_before = |kind: Kind, name: &str| -> Option<i64> {
        let live_name = renames
            .get(&(kind, name.to_owned()))
            .map_or(name, String::as_str);
        live.objects
            .get(&(kind, live_name.to_owned()))
            .map(|object| object.meta.version)
    };
    let no_fields = BTreeSet::new();
    let mut summary = Summary::default();
    let mut reads = Vec::new();
    let mut upserts: Vec<Action> = Vec::new();
    // Both sides are in key order: walked side by side, each object is found without a
    // lookup (a hundred thousand lookups of a cloned key were a tenth of a no-op plan).
    let mut live_objects = view.objects.iter().peekable();
    let pairs: Vec<(&(Kind, String), &DesiredObject, Option<&LiveObject>)> = desired
        .objects()
        .iter()
        .map(|(key, wanted)| {
            while live_objects
                .next_if(|(live_key, _)| *live_key < key)
                .is_some()
            {}
            let current = live_objects
                .next_if(|(live_key, _)| *live_key == key)
                .map(|(_, object)| object);
            (key, wanted, current)
        })
        .collect();
    // Whether each live object holds the fields its manifest gives, judged on every core:
    // reading a hundred thousand objects' text is most of a no-op plan's own time.
    let fields_held = crate::parallel::map(&pairs, |(key, wanted, current)| {
        let ignored = options.ignore_fields.get(&key.0).unwrap_or(&no_fields);
        current.is_some_and(|current| same_managed_fields(wanted, current, ignored))
    });
    for ((key, wanted, current), fields_held) in pairs.into_iter().zip(fields_held) {
        let (kind, name) = key;
        let renamed_from = if renames.is_empty() {
            None
        } else {
            renames.get(key).map(String::as_str)
        };
        reads.push(Read {
            kind: *kind,
            name: name.clone(),
            version: if renamed_from.is_some() {
                None
            } else if renames.is_empty() {
                current.map(|object| object.meta.version)
            } else {
                version_before(*kind, name)
            },
        });
        if let Some(old) = renamed_from {
            reads.push(Read {
                kind: *kind,
                name: old.to_owned(),
                version: version_before(*kind, name),
            });
        }
        let ignored = options.ignore_fields.get(kind).unwrap_or(&no_fields);
        if let Some(action) = upsert(
            wanted,
            current,
            ignored,
            renamed_from,
            fields_held,
            &mut summary,
        ) {
            upserts.push(action);
        }
    }
    if let Some(wanted) = desired.compliance() {
        reads.push(Read {
            kind: Kind::ComplianceConfiguration,
            name: COMPLIANCE_NAME.to_owned(),
            version: live.compliance.as_ref().map(|object| object.meta.version),
        });
        let ignored = options
            .ignore_fields
            .get(&Kind::ComplianceConfiguration)
            .unwrap_or(&no_fields);
        let current = live.compliance.as_ref();
        let fields_held =
            current.is_some_and(|current| same_managed_fields(wanted, current, ignored));
        if let Some(mut action) = upsert(wanted, current, ignored, None, fields_held, &mut summary)
        {
            COMPLIANCE_NAME.clone_into(&mut action.name);
            upserts.push(action);
        }
    }

    let mut removes = Vec::new();
    let mut protected = Vec::new();
    let mut wanted_keys = desired.objects().keys().peekable();
    for (key, current) in &view.objects {
        let (kind, name) = key;
        while wanted_keys.next_if(|wanted| *wanted < key).is_some() {}
        if wanted_keys.peek() == Some(&key) {
            continue;
        }
        if let Some(_origin) = desired.forget().get(key) {
            if current.meta.managed || current.meta.protect {
                reads.push(Read {
                    kind: *kind,
                    name: name.clone(),
                    version: version_before(*kind, name),
                });
                summary.forget += 1;
                upserts.push(forget(*kind, name, current));
            } else {
                summary.unmanaged += 1;
            }
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
            version: version_before(*kind, name),
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
            renamed_from: None,
            forget: false,
            messages: None,
            live_updated_by: Some(current.meta.updated_by.clone()),
            live_updated_at: Some(current.meta.updated_at.clone()),
        });
    }
    if !protected.is_empty() {
        return Err(PlanError::RemovesProtected(protected));
    }
    still_named(desired, view, &upserts, &removes)?;

    let group_rank = group_ranks(desired, view);
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
        format_version: format_for(&actions),
        summary,
        actions,
        reads,
    })
}

/// The action that ends Perch's management of a live object and keeps it: its marks cleared,
/// its fields as they are (a `kind: Forget` document, or `perch forget`).
pub fn forget(kind: Kind, name: &str, current: &LiveObject) -> Action {
    Action {
        action: Verb::Set,
        kind,
        name: name.to_owned(),
        reason: Reason::Forgotten,
        expected_version: Some(current.meta.version),
        object: Some(current.fields.to_map()),
        changes: Vec::new(),
        protect: false,
        adopt_only: false,
        renamed_from: None,
        forget: true,
        messages: None,
        live_updated_by: Some(current.meta.updated_by.clone()),
        live_updated_at: Some(current.meta.updated_at.clone()),
    }
}

impl Plan {
    /// A plan of the one action given, reading the version it was made against.
    pub fn of_one(action: Action) -> Plan {
        let mut summary = Summary::default();
        if action.forget {
            summary.forget = 1;
        }
        Plan {
            format_version: format_for(std::slice::from_ref(&action)),
            summary,
            reads: vec![Read {
                kind: action.kind,
                name: action.name.clone(),
                version: action.expected_version,
            }],
            actions: vec![action],
        }
    }

    /// Records how many messages each removed room holds (by room id, as the target counted
    /// them), for the plan's lines and its summary.
    pub fn count_removed_messages(&mut self, live: &Live, counts: &BTreeMap<i64, u64>) {
        let mut total = 0;
        for action in &mut self.actions {
            if action.action != Verb::Remove || action.kind != Kind::Room {
                continue;
            }
            let Some(room) = live.objects.get(&(Kind::Room, action.name.clone())) else {
                continue;
            };
            let messages = counts.get(&room.meta.id).copied().unwrap_or(0);
            action.messages = Some(messages);
            total += messages;
        }
        self.summary.removed_messages = total;
    }

    /// The ids of the rooms the plan removes, for [`Plan::count_removed_messages`].
    pub fn removed_room_ids(&self, live: &Live) -> Vec<i64> {
        self.actions
            .iter()
            .filter(|action| action.action == Verb::Remove && action.kind == Kind::Room)
            .filter_map(|action| live.objects.get(&(Kind::Room, action.name.clone())))
            .map(|room| room.meta.id)
            .collect()
    }
}

/// The renames the manifests ask for: (kind, new name) -> the live name it has now. An object
/// is renamed when its name is not live and one of its previous names is (the newest first).
fn renames(desired: &Desired, live: &Live) -> BTreeMap<(Kind, String), String> {
    let mut renames = BTreeMap::new();
    // Names are one name whatever their case, as the server compares them: a previous name
    // typed in another case still finds the live object (built only when some are given).
    let mut live_names: Option<HashMap<(Kind, String), &String>> = None;
    for ((kind, name), wanted) in desired.objects() {
        if wanted.previous_names.is_empty() || live.objects.contains_key(&(*kind, name.clone())) {
            continue;
        }
        let live_names = live_names.get_or_insert_with(|| {
            live.objects
                .keys()
                .map(|(kind, name)| ((*kind, crate::domain::name_key(name)), name))
                .collect()
        });
        if let Some(old) = wanted
            .previous_names
            .iter()
            .rev()
            .find_map(|old| live_names.get(&(*kind, crate::domain::name_key(old))))
        {
            renames.insert((*kind, name.clone()), (*old).clone());
        }
    }
    renames
}

/// The live state as the renames leave it: each renamed object under its new name, and every
/// reference to it pointed at that name as the server does. Each rename is one transaction
/// that writes every object naming the old name once, so an object's version moves on by the
/// number of renames that repoint it; they all run before any action on the object itself
/// (groups, by rank, before add-ins, categories and rooms; removals last), so every action
/// expects that version.
fn rename_in(live: &Live, renames: &BTreeMap<(Kind, String), String>) -> Live {
    let new_of: BTreeMap<(Kind, &str), &str> = renames
        .iter()
        .map(|((kind, new), old)| ((*kind, old.as_str()), new.as_str()))
        .collect();
    let mut view = Live {
        objects: BTreeMap::new(),
        compliance: live.compliance.clone(),
    };
    for ((kind, name), object) in &live.objects {
        let mut object = object.clone();
        let mut key = name.clone();
        if let Some(new) = new_of.get(&(*kind, name.as_str())) {
            (*new).clone_into(&mut key);
            object.name.clone_from(&key);
            object
                .fields
                .insert("name".to_owned(), Value::String(key.clone()));
        }
        let mut repointing: BTreeSet<(Kind, String)> = BTreeSet::new();
        if *kind == Kind::Room {
            for (field, referenced) in [("category", Kind::Category), ("addin", Kind::Addin)] {
                if let Some(Value::String(text)) = object.fields.get_mut(field) {
                    // The map's keys borrow from `renames`; the lookup may not hold `text`.
                    let old = text.clone();
                    if let Some(new) = new_of.get(&(referenced, old.as_str())) {
                        (*new).clone_into(text);
                        repointing.insert((referenced, (*new).to_owned()));
                    }
                }
            }
        }
        for value in object.fields.values_mut() {
            let Value::Array(items) = value else { continue };
            let mut changed = false;
            for item in items.iter_mut() {
                let new_group = item
                    .as_str()
                    .and_then(|text| text.strip_prefix("group:"))
                    .and_then(|group| new_of.get(&(Kind::Group, group)))
                    .map(|new| (*new).to_owned());
                if let Some(new) = new_group {
                    *item = Value::String(format!("group:{new}"));
                    repointing.insert((Kind::Group, new));
                    changed = true;
                }
            }
            if changed {
                items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                items.dedup();
            }
        }
        object.meta.version += i64::try_from(repointing.len()).unwrap_or(i64::MAX);
        view.objects.insert((*kind, key), object);
    }
    view
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

/// The create or set action for one desired object, if any. `ignored` are the kind's fields
/// left alone beside the object's own; a rename (`renamed_from`) is an action even when
/// nothing else differs.
///
/// `fields_held`: whether `current` holds the fields `wanted` manages
/// ([`same_managed_fields`]), judged by the caller.
fn upsert(
    wanted: &DesiredObject,
    current: Option<&LiveObject>,
    ignored: &BTreeSet<String>,
    renamed_from: Option<&str>,
    fields_held: bool,
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
            renamed_from: None,
            forget: false,
            messages: None,
            live_updated_by: None,
            live_updated_at: None,
        });
    };
    let adopt = !current.meta.managed || current.meta.protect != wanted.protect;
    if renamed_from.is_none() && !adopt && fields_held {
        return None;
    }
    // What the manifest manages of a live object: not the fields left alone, and for an
    // additive list its entries beside the live ones.
    let mut managed = Map::new();
    for (field, value) in &wanted.fields {
        if ignored.contains(field) || wanted.ignore_fields.contains(field) {
            continue;
        }
        let value = match (value, current.fields.get(field)) {
            (Value::Array(entries), Some(Value::Array(live_entries)))
                if wanted.additive.contains(field) =>
            {
                let mut union = live_entries.clone();
                union.extend(entries.iter().cloned());
                union.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                union.dedup();
                Value::Array(union)
            }
            (value, _) => value.clone(),
        };
        managed.insert(field.clone(), value);
    }
    let mut changes = field_changes(&managed, &current.fields);
    if let Some(old) = renamed_from {
        changes.insert(
            0,
            FieldChange {
                field: "name".to_owned(),
                added: Vec::new(),
                removed: Vec::new(),
                from: Some(Value::String(old.to_owned())),
                to: Some(Value::String(wanted.name.clone())),
            },
        );
    }
    if changes.is_empty() && !adopt {
        return None;
    }
    let mut merged = current.fields.to_map();
    for (field, value) in managed {
        merged.insert(field, value);
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
        renamed_from: renamed_from.map(str::to_owned),
        forget: false,
        messages: None,
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

/// Whether every field the manifest manages of `current` holds, as stored, what the manifest
/// says: the common case of a no-op plan, told without building the managed fields, nor the
/// live object's map when it is still the text the server sent. (An additive list equal to
/// the live one is unchanged too: their union is the live list.) A value equal only once
/// normalised is left to [`field_changes`].
fn same_managed_fields(
    wanted: &DesiredObject,
    current: &LiveObject,
    ignored: &BTreeSet<String>,
) -> bool {
    current.fields.holds(&wanted.fields, |field| {
        ignored.contains(field) || wanted.ignore_fields.iter().any(|ignore| ignore == field)
    })
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

pub mod policy;
pub mod render;
pub mod select;
#[cfg(test)]
mod tests;
