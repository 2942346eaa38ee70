//! Plans as PowerShell: each plan action as the Persistent Chat cmdlets that carry it out on a
//! Skype for Business Server 2015 pool. Pure: text in, text out.
//!
//! Every parameter name and parameter set is the cmdlets' documented syntax
//! (`tests/fixtures/sfb/cmdlets.json`, from `MicrosoftDocs/office-docs-powershell`; a test
//! checks every generated invocation against it). Every value is a single-quoted string (or
//! `$true`/`$false`, or a list of quoted strings), with the quotes PowerShell recognises doubled
//! (`'` and the typographic ‘ ’ ‚ ‛), so no text from a manifest or a snapshot can end a string
//! early: `$(...)`, backticks and newlines stay text inside single quotes.

use serde_json::{Map, Value};

use super::principals::PrincipalMap;
use super::snapshot::XML_ADAPTER;
use crate::domain::{Kind, Principal};
use crate::plan::{Action, FieldChange, Verb};

/// Where the script's cmdlets act.
#[derive(Clone, Debug)]
pub struct Context {
    /// The pool's FQDN: identities are `pool\name`, and `New-*` cmdlets that take
    /// `-PersistentChatPoolFqdn` get it.
    pub pool: String,
    /// The compliance configuration's identity (`global` when the snapshot has none).
    pub compliance_identity: String,
}

/// A value as a PowerShell single-quoted string literal.
pub fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for character in text.chars() {
        if matches!(
            character,
            '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}'
        ) {
            quoted.push(character);
        }
        quoted.push(character);
    }
    quoted.push('\'');
    quoted
}

/// Text for a `#` comment: one line, nothing that could end it.
pub fn comment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn flag(value: bool) -> &'static str {
    if value { "$true" } else { "$false" }
}

/// One cmdlet invocation being built.
struct Invocation {
    text: String,
    /// How many parameters it has.
    parameters: usize,
}

impl Invocation {
    fn new(cmdlet: &str) -> Invocation {
        Invocation {
            text: cmdlet.to_owned(),
            parameters: 0,
        }
    }

    fn param(mut self, name: &str, value: &str) -> Invocation {
        self.text.push_str(&format!(" -{name} {value}"));
        self.parameters += 1;
        self
    }

    fn switch(mut self, name: &str) -> Invocation {
        self.text.push_str(&format!(" -{name}"));
        self.parameters += 1;
        self
    }

    fn no_confirm(mut self) -> Invocation {
        self.text.push_str(" -Confirm:$false");
        self
    }
}

fn text<'a>(fields: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    fields.get(field).and_then(Value::as_str)
}

fn identity(context: &Context, name: &str) -> String {
    quote(&format!("{}\\{name}", context.pool))
}

/// A name the pool can take: its identities are `pool\name`, so a name may not hold `\`.
fn check_name(name: &str) -> Result<(), String> {
    if name.contains('\\') {
        Err(format!(
            "`{}`: a name with `\\` cannot be a Skype for Business identity (pool\\name)",
            comment(name)
        ))
    } else {
        Ok(())
    }
}

/// `@('a', 'b')` of principals as the server takes them.
fn principal_list(map: &PrincipalMap, entries: &[String]) -> Result<String, String> {
    let mut quoted = Vec::with_capacity(entries.len());
    for entry in entries {
        let principal = Principal::parse(entry).map_err(|error| error.to_string())?;
        quoted.push(quote(&map.to_server(&principal)?));
    }
    Ok(format!("@({})", quoted.join(", ")))
}

/// `@{Add=@(...); Remove=@(...)}`, the cmdlets' list modifier.
fn list_modifier(
    map: &PrincipalMap,
    added: &[String],
    removed: &[String],
) -> Result<String, String> {
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("Add={}", principal_list(map, added)?));
    }
    if !removed.is_empty() {
        parts.push(format!("Remove={}", principal_list(map, removed)?));
    }
    Ok(format!("@{{{}}}", parts.join("; ")))
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The cmdlets' spelling of an enum value (`open` -> `Open`).
fn enum_name(value: &str) -> String {
    let mut characters = value.chars();
    characters
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + characters.as_str())
        .unwrap_or_default()
}

fn invitations(value: &Value) -> String {
    quote(
        if value == &Value::Bool(false) || value.as_str() == Some("false") {
            "False"
        } else {
            "Inherit"
        },
    )
}

/// Adds `set` to `out` when it carries a parameter beyond its identity: a change of Perch's own
/// marks (managed, protect) has nothing to run on the pool.
fn push_set(out: &mut Vec<String>, set: Invocation) {
    // Its first parameter is the identity.
    if set.parameters > 1 {
        out.push(set.text);
    } else {
        out.push("# nothing to run on the pool: only Perch's own marks change.".to_owned());
    }
}

/// The principal lists of a category and of a room: (field, cmdlet parameter).
const CATEGORY_LISTS: [(&str, &str); 3] = [
    ("allowedMembers", "AllowedMembers"),
    ("deniedMembers", "DeniedMembers"),
    ("creators", "Creators"),
];
const ROOM_LISTS: [(&str, &str); 3] = [
    ("members", "Members"),
    ("managers", "Managers"),
    ("presenters", "Presenters"),
];

/// `Set-*` with the lists of a new object added, when it has any (`New-*` takes none).
fn set_new_lists(
    out: &mut Vec<String>,
    mut set: Invocation,
    lists: &[(&str, &str)],
    object: &Map<String, Value>,
    map: &PrincipalMap,
) -> Result<(), String> {
    for (field, parameter) in lists {
        let entries = strings(object.get(*field));
        if !entries.is_empty() {
            set = set.param(parameter, &list_modifier(map, &entries, &[])?);
        }
    }
    if set.parameters > 1 {
        out.push(set.text);
    }
    Ok(())
}

/// A list change as its parameter and value, if `change` is one of `lists`.
fn list_change<'a>(
    lists: &'a [(&'a str, &'a str)],
    change: &FieldChange,
    map: &PrincipalMap,
) -> Result<Option<(&'a str, String)>, String> {
    match lists.iter().find(|(field, _)| *field == change.field) {
        Some((_, parameter)) => Ok(Some((
            parameter,
            list_modifier(map, &change.added, &change.removed)?,
        ))),
        None => Ok(None),
    }
}

/// The comment for a field no cmdlet parameter sets.
fn no_parameter(out: &mut Vec<String>, field: &str) {
    out.push(format!(
        "# {}: no cmdlet parameter; left as it is.",
        comment(field)
    ));
}

/// The lines that carry out one action (cmdlets, and comments for what no cmdlet does).
///
/// # Errors
/// A principal the map cannot translate, or a value the server cannot take.
pub fn lines(
    action: &Action,
    context: &Context,
    map: &PrincipalMap,
) -> Result<Vec<String>, String> {
    let empty = Map::new();
    let object = action.object.as_ref().unwrap_or(&empty);
    let name = action.name.as_str();
    check_name(name)?;
    if let Some(category) = text(object, "category") {
        check_name(category)?;
    }
    let mut out = vec![format!("# {}", comment(&action.to_string()))];
    if action.forget {
        out.push(
            "# Forget: a pool keeps no marks of Perch's, so nothing is run; the object stays."
                .to_owned(),
        );
        return Ok(out);
    }
    // A rename acts on the object under the name it has now, and `-Name` gives the new one.
    let live_name = action.live_name();
    check_name(live_name)?;
    match (action.kind, action.action) {
        (Kind::Group, _) => out.push(format!(
            "# {} is an Active Directory group on Skype for Business: nothing to run here.",
            comment(&action.subject())
        )),
        (Kind::Category, Verb::Create) => {
            let mut new = Invocation::new("New-CsPersistentChatCategory")
                .param("Name", &quote(name))
                .param("PersistentChatPoolFqdn", &quote(&context.pool));
            if let Some(description) = text(object, "description").filter(|d| !d.is_empty()) {
                new = new.param("Description", &quote(description));
            }
            if object.get("invitations") == Some(&Value::Bool(true)) {
                new = new.switch("EnableInvitations");
            }
            if object.get("fileUpload") == Some(&Value::Bool(true)) {
                new = new.switch("EnableFileUpload");
            }
            if object.get("chatHistory") == Some(&Value::Bool(false)) {
                new = new.switch("RemoveChatHistory");
            }
            out.push(new.text);
            let set = Invocation::new("Set-CsPersistentChatCategory")
                .param("Identity", &identity(context, name));
            set_new_lists(&mut out, set, &CATEGORY_LISTS, object, map)?;
            if object.contains_key("retention") {
                out.push("# retention is Perch's own: Skype for Business keeps messages until they are removed.".to_owned());
            }
        }
        (Kind::Category, Verb::Set) => {
            let mut set = Invocation::new("Set-CsPersistentChatCategory")
                .param("Identity", &identity(context, live_name));
            for change in &action.changes {
                if let Some((parameter, value)) = list_change(&CATEGORY_LISTS, change, map)? {
                    set = set.param(parameter, &value);
                    continue;
                }
                set = match change.field.as_str() {
                    "name" => set.param("Name", &quote(to_text(change))),
                    "description" => set.param("Description", &quote(to_text(change))),
                    "invitations" => set.param("Invitations", flag(to_bool(change))),
                    "fileUpload" => set.param("FileUpload", flag(to_bool(change))),
                    "chatHistory" => set.param("ChatHistory", flag(to_bool(change))),
                    other => {
                        no_parameter(&mut out, other);
                        set
                    }
                };
            }
            push_set(&mut out, set);
        }
        (Kind::Category, Verb::Remove) => out.push(
            Invocation::new("Remove-CsPersistentChatCategory")
                .param("Identity", &identity(context, name))
                .no_confirm()
                .text,
        ),
        (Kind::Room, Verb::Create) => {
            let category = text(object, "category").unwrap_or_default();
            let mut new = Invocation::new("New-CsPersistentChatRoom")
                .param("Name", &quote(name))
                .param("Category", &identity(context, category))
                .param("PersistentChatPoolFqdn", &quote(&context.pool));
            if let Some(description) = text(object, "description").filter(|d| !d.is_empty()) {
                new = new.param("Description", &quote(description));
            }
            if let Some(privacy) = text(object, "privacy") {
                new = new.param("Privacy", &quote(&enum_name(privacy)));
            }
            if let Some(room_type) = text(object, "type") {
                new = new.param("Type", &quote(&enum_name(room_type)));
            }
            if let Some(addin) = text(object, "addin") {
                new = new.param("Addin", &quote(addin));
            }
            if let Some(value) = object.get("invitations") {
                new = new.param("Invitations", &invitations(value));
            }
            if let Some(Value::Bool(disabled)) = object.get("disabled") {
                new = new.param("Disabled", flag(*disabled));
            }
            out.push(new.text);
            // New-CsPersistentChatRoom takes no lists: Set-CsPersistentChatRoom adds them.
            let set = Invocation::new("Set-CsPersistentChatRoom")
                .param("Identity", &identity(context, name));
            set_new_lists(&mut out, set, &ROOM_LISTS, object, map)?;
        }
        (Kind::Room, Verb::Set) => {
            let mut set = Invocation::new("Set-CsPersistentChatRoom")
                .param("Identity", &identity(context, live_name));
            for change in &action.changes {
                if let Some((parameter, value)) = list_change(&ROOM_LISTS, change, map)? {
                    set = set.param(parameter, &value);
                    continue;
                }
                set = match change.field.as_str() {
                    "name" => set.param("Name", &quote(to_text(change))),
                    "description" => set.param("Description", &quote(to_text(change))),
                    "category" => set.param("Category", &identity(context, to_text(change))),
                    "privacy" => set.param("Privacy", &quote(&enum_name(to_text(change)))),
                    "type" => set.param("Type", &quote(&enum_name(to_text(change)))),
                    "addin" => {
                        if let Some(addin) = change.to.as_ref().and_then(Value::as_str) {
                            set.param("Addin", &quote(addin))
                        } else {
                            // No documented parameter takes a room's add-in away.
                            out.push("# addin: taking a room's add-in away has no documented cmdlet parameter; left as it is.".to_owned());
                            set
                        }
                    }
                    "invitations" => set.param(
                        "Invitations",
                        &invitations(change.to.as_ref().unwrap_or(&Value::Null)),
                    ),
                    "disabled" => set.param("Disabled", flag(to_bool(change))),
                    other => {
                        no_parameter(&mut out, other);
                        set
                    }
                };
            }
            push_set(&mut out, set);
        }
        (Kind::Room, Verb::Remove) => out.push(
            Invocation::new("Remove-CsPersistentChatRoom")
                .param("Identity", &identity(context, name))
                .no_confirm()
                .text,
        ),
        (Kind::Addin, Verb::Create) => out.push(
            Invocation::new("New-CsPersistentChatAddin")
                .param("Name", &quote(name))
                .param("Url", &quote(text(object, "url").unwrap_or_default()))
                .param("PersistentChatPoolFqdn", &quote(&context.pool))
                .text,
        ),
        (Kind::Addin, Verb::Set) => {
            let mut set = Invocation::new("Set-CsPersistentChatAddin")
                .param("Identity", &identity(context, live_name));
            for change in &action.changes {
                match change.field.as_str() {
                    "url" => set = set.param("Url", &quote(to_text(change))),
                    "name" => set = set.param("Name", &quote(to_text(change))),
                    _ => {}
                }
            }
            push_set(&mut out, set);
        }
        (Kind::Addin, Verb::Remove) => out.push(
            Invocation::new("Remove-CsPersistentChatAddin")
                .param("Identity", &identity(context, name))
                .no_confirm()
                .text,
        ),
        (Kind::ComplianceConfiguration, Verb::Remove) => {}
        (Kind::ComplianceConfiguration, Verb::Create | Verb::Set) => {
            let mut set = Invocation::new("Set-CsPersistentChatComplianceConfiguration")
                .param("Identity", &quote(&context.compliance_identity));
            let changes: Vec<FieldChange> = if action.changes.is_empty() {
                object
                    .iter()
                    .map(|(field, value)| FieldChange {
                        field: field.clone(),
                        added: Vec::new(),
                        removed: Vec::new(),
                        from: None,
                        to: Some(value.clone()),
                    })
                    .collect()
            } else {
                action.changes.clone()
            };
            for change in &changes {
                set = match change.field.as_str() {
                    "adapterName" => set.param("AdapterName", &quote(to_text(change))),
                    "adapterOutputDirectory" => {
                        set.param("AdapterOutputDirectory", &quote(to_text(change)))
                    }
                    "adapterType" => match to_text(change) {
                        "xml" => set.param("AdapterType", &quote(XML_ADAPTER)),
                        other => {
                            return Err(format!(
                                "adapterType `{other}` is Perch's own; Skype for Business writes XML only"
                            ));
                        }
                    },
                    "runInterval" => set.param("RunInterval", &quote(to_text(change))),
                    "oneChatRoomPerOutputFile" => {
                        set.param("OneChatRoomPerOutputFile", flag(to_bool(change)))
                    }
                    "addChatRoomDetails" => set.param("AddChatRoomDetails", flag(to_bool(change))),
                    "addUserDetails" => set.param("AddUserDetails", flag(to_bool(change))),
                    "createFileAttachmentsManifest" => {
                        set.param("CreateFileAttachmentsManifest", flag(to_bool(change)))
                    }
                    "enabled" => {
                        out.push("# enabled: compliance is turned on for the pool in the topology, not by a cmdlet; left as it is.".to_owned());
                        set
                    }
                    other => {
                        no_parameter(&mut out, other);
                        set
                    }
                };
            }
            push_set(&mut out, set);
        }
    }
    Ok(out)
}

fn to_text(change: &FieldChange) -> &str {
    change
        .to
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn to_bool(change: &FieldChange) -> bool {
    change.to.as_ref().and_then(Value::as_bool).unwrap_or(false)
}

/// The script's header: what it was planned against, and that it stops at the first error.
pub fn header(snapshot: &str, captured_at: &str, pool: &str, summary: &str) -> String {
    // A byte-order mark first: Windows PowerShell 5.1 reads a script without one in the
    // machine's ANSI code page, where UTF-8 bytes of letters such as `Ñ` (C3 91) become a
    // typographic quote that would end a string early.
    format!(
        "\u{feff}# Perch plan for the Skype for Business Server 2015 pool {}\n\
         # Planned against the snapshot {} (its files last written {}).\n\
         # {}\n\
         # Run it in the Skype for Business Server Management Shell, after reviewing it.\n\
         $ErrorActionPreference = 'Stop'\n",
        comment(pool),
        comment(snapshot),
        comment(captured_at),
        comment(summary)
    )
}
