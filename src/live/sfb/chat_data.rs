//! What `Export-CsPersistentChatData` wrote, brought into Perch (`perch data import --sfb`).
//!
//! No Microsoft page describes the zip. What is publicly known comes from the one public reader
//! of it, Microsoft's PChatToTeams script (`tests/fixtures/sfb/RESEARCH.md`, part B): four XML
//! files at the zip's root,
//!
//! - `AdUsers.xml`: `Pool/AdUsers/User` with `principalId` and `UserPrincipalName`;
//! - `AdGroups.xml`: `Pool/AdGroups/Group` with `principalId`;
//! - `AdAffiliations.xml`: `Pool/AdAffiliations/User` (a user or a group) with `id` and
//!   `Groups/Group` with `id`, the groups it belongs to;
//! - `ChatRooms.xml`: `Pool/…/ChatRooms/ChatRoom` with the attribute `isDisabled` and the
//!   children `Name`, `Desc` and `Roles/Principal` (attributes `id`, `isManager`, `isMember`,
//!   `isCreator`).
//!
//! The script reads `principalId`, `UserPrincipalName` and `id` with PowerShell's property
//! syntax, which finds an attribute or a child element alike; so does this reader. Everything
//! else in the zip (other files, elements, attributes, text) is counted and reported as not
//! imported, never dropped in silence, and whatever the known parts cannot say is refused
//! rather than guessed: a role naming a principal no file describes, a flag that is neither
//! `0`/`1` nor `false`/`true`, a room without a name.
//!
//! The result is a `perch-data` file of objects without ids, imported as any other: checked
//! whole, then written in one transaction (or only counted, with `--dry-run`).
//!
//! What the known parts do not hold, and how it is filled in:
//! - users are known by their user principal name, which becomes their SIP address
//!   (`ken@contoso.com` -> `sip:ken@contoso.com`), as it is on most deployments;
//! - groups have no name, only an id: group `201` becomes the Perch group `sfb-group-201`,
//!   whose members are the users and groups the affiliations put in it;
//! - rooms name no category, privacy, type, invitations or add-in: they go into one category
//!   (`--category`, whose allowed members are the users' domains and the groups) and take
//!   Perch's defaults (closed, normal, invitations inherited, no add-in);
//! - the zip's known parts hold no messages: chat history is not brought over.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use roxmltree::{Document, Node, ParsingOptions};
use serde_json::{Map, Value, json};

use crate::api::wire::{DataHeader, Level, perch_data_file};
use crate::domain::{self, Category, Group, Kind, Principal, Room};

/// The files of the zip Perch reads; anything else in it is reported.
pub const KNOWN_FILES: [&str; 4] = [
    "AdUsers.xml",
    "AdGroups.xml",
    "AdAffiliations.xml",
    "ChatRooms.xml",
];

/// Bounds on what a zip may make Perch do: a zip names its own sizes, and a small file can
/// claim to unpack to terabytes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Entries in the zip's directory.
    pub entries: usize,
    /// Unpacked bytes of one known file.
    pub file_bytes: u64,
    /// XML nodes in one file.
    pub nodes: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            entries: 10_000,
            file_bytes: 512 * 1024 * 1024,
            nodes: 50_000_000,
        }
    }
}

/// How the import reads the zip.
#[derive(Clone, Debug)]
pub struct Options {
    /// The category every room goes into.
    pub category: String,
    /// The zip's file name, for the category's description and the report.
    pub source: String,
}

/// What the zip held, as Perch objects, and what it could not bring.
#[derive(Clone, Debug, Default)]
pub struct Translation {
    pub groups: Vec<Group>,
    pub category: Option<Category>,
    pub rooms: Vec<Room>,
    /// What the zip holds that the known format does not describe: where, and how many times.
    pub not_imported: BTreeMap<String, usize>,
}

/// One user's or group's role in a room, as `Roles/Principal` states it.
struct Role {
    id: String,
    member: bool,
    manager: bool,
    creator: bool,
}

/// Counts what the reader passes over, under the file and the element path it was found at.
struct Unknowns<'a> {
    file: &'a str,
    seen: &'a mut BTreeMap<String, usize>,
}

impl Unknowns<'_> {
    fn note(&mut self, what: &str) {
        *self
            .seen
            .entry(format!("{}: {what}", self.file))
            .or_default() += 1;
    }

    /// The element children of `node`, reporting the ones not in `known` and any text that is
    /// not white space between them.
    fn children<'n, 'i>(
        &mut self,
        node: Node<'n, 'i>,
        path: &str,
        known: &[&str],
    ) -> Vec<Node<'n, 'i>> {
        let mut kept = Vec::new();
        for child in node.children() {
            if child.is_element() {
                let name = child.tag_name().name();
                if known.contains(&name) {
                    kept.push(child);
                } else {
                    self.note(&format!("{path}/{name}"));
                }
            } else if child.is_text() && !child.text().unwrap_or_default().trim().is_empty() {
                self.note(&format!("{path}/text()"));
            }
        }
        kept
    }

    /// Reports the attributes of `node` not in `known`.
    fn attributes(&mut self, node: Node<'_, '_>, path: &str, known: &[&str]) {
        for attribute in node.attributes() {
            if !known.contains(&attribute.name()) {
                self.note(&format!("{path}/@{}", attribute.name()));
            }
        }
    }
}

/// A property as PowerShell's XML adapter reads it: the attribute, or else the text of the
/// child element, of that name.
fn property(node: Node<'_, '_>, name: &str) -> Option<String> {
    node.attribute(name)
        .map(str::to_owned)
        .or_else(|| {
            node.children()
                .find(|child| child.is_element() && child.tag_name().name() == name)
                .map(|child| child.text().unwrap_or_default().to_owned())
        })
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// A flag as the export may spell it.
fn flag(text: Option<&str>, what: &str) -> Result<bool, String> {
    match text.map(str::trim) {
        None | Some("") => Ok(false),
        Some(text) if text == "1" || text.eq_ignore_ascii_case("true") => Ok(true),
        Some(text) if text == "0" || text.eq_ignore_ascii_case("false") => Ok(false),
        Some(text) => Err(format!(
            "{what} is `{}`, neither 0/1 nor false/true",
            crate::text::excerpt(text, 40)
        )),
    }
}

/// Reads the zip's entries: the known files' texts, and the rest reported by name.
///
/// # Errors
/// A file that is no zip, an entry that cannot be unpacked, a known file twice, past a limit,
/// or neither UTF-8 nor UTF-16 with a byte-order mark.
pub fn read_zip(
    bytes: &[u8],
    limits: Limits,
    not_imported: &mut BTreeMap<String, usize>,
) -> Result<BTreeMap<&'static str, String>, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|error| format!("is not a zip archive: {error}"))?;
    if archive.len() > limits.entries {
        return Err(format!(
            "holds {} entries; at most {} are read",
            archive.len(),
            limits.entries
        ));
    }
    let mut texts = BTreeMap::new();
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|error| format!("entry {index} cannot be read: {error}"))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().to_owned();
        let shown = crate::text::excerpt(&name, 120);
        let Some(known) = KNOWN_FILES.iter().find(|known| **known == name) else {
            *not_imported
                .entry(format!(
                    "{shown}: a file the known format does not describe"
                ))
                .or_default() += 1;
            continue;
        };
        if texts.contains_key(known) {
            return Err(format!("holds {known} twice"));
        }
        // Read one byte past the limit, whatever the entry claims its size is.
        let mut unpacked = Vec::new();
        (&mut entry)
            .take(limits.file_bytes + 1)
            .read_to_end(&mut unpacked)
            .map_err(|error| format!("{known} cannot be unpacked: {error}"))?;
        if unpacked.len() as u64 > limits.file_bytes {
            let limit = limits.file_bytes;
            return Err(if limit >= 1024 * 1024 {
                format!("{known} unpacks to more than {} MiB", limit / (1024 * 1024))
            } else {
                format!("{known} unpacks to more than {limit} bytes")
            });
        }
        let text = super::snapshot::decode(&unpacked).map_err(|why| format!("{known} {why}"))?;
        texts.insert(*known, text);
    }
    Ok(texts)
}

fn parse<'i>(file: &str, text: &'i str, limits: Limits) -> Result<Document<'i>, String> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.nodes,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(text, options).map_err(|error| format!("{file}: {error}"))
}

/// The element `Pool` that every known file starts with.
fn pool<'n, 'i>(
    file: &str,
    document: &'n Document<'i>,
    unknowns: &mut Unknowns<'_>,
) -> Result<Node<'n, 'i>, String> {
    let root = document.root_element();
    if root.tag_name().name() != "Pool" {
        return Err(format!(
            "{file}: the root element is `{}`, not `Pool`",
            crate::text::excerpt(root.tag_name().name(), 60)
        ));
    }
    unknowns.attributes(root, "Pool", &[]);
    Ok(root)
}

/// Translates the zip's files into Perch objects.
///
/// # Errors
/// A known file that is not well-formed XML (or holds a DTD), a shape the format does not
/// allow, a principal that cannot be told, an object Perch would refuse; each naming the file
/// and the element.
pub fn translate(
    texts: &BTreeMap<&'static str, String>,
    options: &Options,
    limits: Limits,
    mut not_imported: BTreeMap<String, usize>,
) -> Result<Translation, String> {
    let text_of = |file: &str| texts.get(file).map_or("", String::as_str);
    for file in KNOWN_FILES {
        if !texts.contains_key(file) {
            return Err(format!(
                "holds no {file}; it is not what Export-CsPersistentChatData writes"
            ));
        }
    }

    // Users: principal id -> SIP address.
    let mut principals: BTreeMap<String, Principal> = BTreeMap::new();
    let document = parse("AdUsers.xml", text_of("AdUsers.xml"), limits)?;
    let mut unknowns = Unknowns {
        file: "AdUsers.xml",
        seen: &mut not_imported,
    };
    let top = pool("AdUsers.xml", &document, &mut unknowns)?;
    for users in unknowns.children(top, "Pool", &["AdUsers"]) {
        unknowns.attributes(users, "Pool/AdUsers", &[]);
        for (index, user) in unknowns
            .children(users, "Pool/AdUsers", &["User"])
            .into_iter()
            .enumerate()
        {
            let path = "Pool/AdUsers/User";
            unknowns.attributes(user, path, &["principalId", "UserPrincipalName"]);
            unknowns.children(user, path, &["principalId", "UserPrincipalName"]);
            let at = format!("AdUsers.xml: User {}", index + 1);
            let id = property(user, "principalId").ok_or(format!("{at} has no principalId"))?;
            let upn = property(user, "UserPrincipalName")
                .ok_or(format!("{at} (principal {id}) has no UserPrincipalName"))?;
            let Ok(principal @ Principal::User(_)) = Principal::parse(&upn) else {
                return Err(format!(
                    "{at} (principal {}) has the user principal name `{}`, not user@domain",
                    crate::text::excerpt(&id, 60),
                    crate::text::excerpt(&upn, 80)
                ));
            };
            if principals.insert(id.clone(), principal).is_some() {
                return Err(format!(
                    "AdUsers.xml names principal {} twice",
                    crate::text::excerpt(&id, 60)
                ));
            }
        }
    }

    // Groups: principal id -> Perch group, members filled in from the affiliations.
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let document = parse("AdGroups.xml", text_of("AdGroups.xml"), limits)?;
    let mut unknowns = Unknowns {
        file: "AdGroups.xml",
        seen: &mut not_imported,
    };
    let top = pool("AdGroups.xml", &document, &mut unknowns)?;
    for list in unknowns.children(top, "Pool", &["AdGroups"]) {
        unknowns.attributes(list, "Pool/AdGroups", &[]);
        for (index, group) in unknowns
            .children(list, "Pool/AdGroups", &["Group"])
            .into_iter()
            .enumerate()
        {
            let path = "Pool/AdGroups/Group";
            unknowns.attributes(group, path, &["principalId"]);
            unknowns.children(group, path, &["principalId"]);
            let id = property(group, "principalId").ok_or(format!(
                "AdGroups.xml: Group {} has no principalId",
                index + 1
            ))?;
            let name = format!("sfb-group-{id}");
            let group = Group {
                name: name.clone(),
                description: format!(
                    "Active Directory group {id}, from {} (Skype for Business Server)",
                    options.source
                ),
                members: Vec::new(),
            };
            if principals.contains_key(&id) || groups.insert(id.clone(), group).is_some() {
                return Err(format!(
                    "AdGroups.xml names principal {} twice, or as a user too",
                    crate::text::excerpt(&id, 60)
                ));
            }
            principals.insert(id, Principal::Group(name));
        }
    }

    // Affiliations: who is in which group, users and nested groups alike.
    let document = parse("AdAffiliations.xml", text_of("AdAffiliations.xml"), limits)?;
    let mut unknowns = Unknowns {
        file: "AdAffiliations.xml",
        seen: &mut not_imported,
    };
    let top = pool("AdAffiliations.xml", &document, &mut unknowns)?;
    for list in unknowns.children(top, "Pool", &["AdAffiliations"]) {
        unknowns.attributes(list, "Pool/AdAffiliations", &[]);
        for (index, entry) in unknowns
            .children(list, "Pool/AdAffiliations", &["User"])
            .into_iter()
            .enumerate()
        {
            let path = "Pool/AdAffiliations/User";
            unknowns.attributes(entry, path, &["id"]);
            let id = property(entry, "id")
                .ok_or(format!("AdAffiliations.xml: User {} has no id", index + 1))?;
            let Some(member) = principals.get(&id).cloned() else {
                unknowns.note(&format!(
                    "{path} naming a principal AdUsers.xml and AdGroups.xml do not hold"
                ));
                continue;
            };
            for of in unknowns.children(entry, path, &["id", "Groups"]) {
                if of.tag_name().name() != "Groups" {
                    continue;
                }
                let path = "Pool/AdAffiliations/User/Groups";
                unknowns.attributes(of, path, &[]);
                for group in unknowns.children(of, path, &["Group"]) {
                    let path = "Pool/AdAffiliations/User/Groups/Group";
                    unknowns.attributes(group, path, &["id"]);
                    unknowns.children(group, path, &["id"]);
                    let target = property(group, "id").unwrap_or_default();
                    match groups.get_mut(&target) {
                        Some(group) => group.members.push(member.clone()),
                        None => unknowns
                            .note(&format!("{path} naming a group AdGroups.xml does not hold")),
                    }
                }
            }
        }
    }

    // Rooms.
    let document = parse("ChatRooms.xml", text_of("ChatRooms.xml"), limits)?;
    let mut unknowns = Unknowns {
        file: "ChatRooms.xml",
        seen: &mut not_imported,
    };
    let top = pool("ChatRooms.xml", &document, &mut unknowns)?;
    // The script finds `ChatRooms` anywhere below `Pool` (ReadToDescendant); so does this.
    let lists: Vec<Node<'_, '_>> = top
        .descendants()
        .filter(|node| node.is_element() && node.tag_name().name() == "ChatRooms")
        .collect();
    if lists.is_empty() {
        unknowns.children(top, "Pool", &[]);
    } else {
        for child in top.children().filter(Node::is_element) {
            if !child.descendants().any(|node| lists.contains(&node)) {
                unknowns.note(&format!("Pool/{}", child.tag_name().name()));
            }
        }
    }
    let mut rooms: Vec<(Room, Vec<Role>)> = Vec::new();
    for list in lists {
        unknowns.attributes(list, "ChatRooms", &[]);
        for (index, node) in unknowns
            .children(list, "ChatRooms", &["ChatRoom"])
            .into_iter()
            .enumerate()
        {
            let path = "ChatRooms/ChatRoom";
            unknowns.attributes(node, path, &["isDisabled"]);
            let at = format!("ChatRooms.xml: ChatRoom {}", index + 1);
            let mut name = None;
            let mut description = String::new();
            let mut roles = Vec::new();
            for child in unknowns.children(node, path, &["Name", "Desc", "Roles"]) {
                let text = child.text().unwrap_or_default().trim().to_owned();
                match child.tag_name().name() {
                    "Name" => name = Some(text),
                    "Desc" => description = text,
                    _ => {
                        let path = "ChatRooms/ChatRoom/Roles";
                        unknowns.attributes(child, path, &[]);
                        for principal in unknowns.children(child, path, &["Principal"]) {
                            let path = "ChatRooms/ChatRoom/Roles/Principal";
                            unknowns.attributes(
                                principal,
                                path,
                                &["id", "isManager", "isMember", "isCreator"],
                            );
                            unknowns.children(principal, path, &[]);
                            let flag_of = |attribute: &str| {
                                flag(
                                    principal.attribute(attribute),
                                    &format!("{at}: {attribute}"),
                                )
                            };
                            roles.push(Role {
                                id: principal
                                    .attribute("id")
                                    .unwrap_or_default()
                                    .trim()
                                    .to_owned(),
                                member: flag_of("isMember")?,
                                manager: flag_of("isManager")?,
                                creator: flag_of("isCreator")?,
                            });
                        }
                    }
                }
            }
            let name = name
                .filter(|name| !name.is_empty())
                .ok_or(format!("{at} has no Name"))?;
            let at = format!("{at} (`{}`)", crate::text::excerpt(&name, 80));
            let room = Room {
                name,
                category: options.category.clone(),
                description,
                privacy: domain::Privacy::default(),
                room_type: domain::RoomType::default(),
                addin: None,
                invitations: domain::RoomInvitations::default(),
                disabled: flag(node.attribute("isDisabled"), &format!("{at}: isDisabled"))?,
                members: Vec::new(),
                managers: Vec::new(),
                presenters: Vec::new(),
            };
            rooms.push((room, roles));
        }
    }

    let mut translation = Translation::default();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (mut room, roles) in rooms {
        for role in roles {
            let Some(principal) = principals.get(&role.id) else {
                unknowns.note(
                    "ChatRooms/ChatRoom/Roles/Principal naming a principal AdUsers.xml and AdGroups.xml do not hold"
                );
                continue;
            };
            if role.member {
                room.members.push(principal.clone());
            }
            if role.manager {
                room.managers.push(principal.clone());
            }
            if role.creator {
                // A room has no creators, in Perch as in the cmdlets; its category does.
                unknowns.note(
                    "ChatRooms/ChatRoom/Roles/Principal/@isCreator=1 (a room has no creators)",
                );
            }
        }
        room.normalise();
        if let Some(problem) = room.problems().first() {
            return Err(format!(
                "ChatRooms.xml: room `{}`: {}: {}",
                crate::text::excerpt(&room.name, 80),
                problem.field,
                problem.message
            ));
        }
        if let Some(first) = names.insert(domain::name_key(&room.name), room.name.clone()) {
            return Err(format!(
                "ChatRooms.xml names the rooms `{}` and `{}`, one name in Perch (names are unique without case)",
                crate::text::excerpt(&first, 80),
                crate::text::excerpt(&room.name, 80)
            ));
        }
        translation.rooms.push(room);
    }

    for group in groups.values_mut() {
        group.normalise();
        if let Some(problem) = group.problems().first() {
            return Err(format!(
                "AdGroups.xml: group `{}`: {}: {}",
                crate::text::excerpt(&group.name, 80),
                problem.field,
                problem.message
            ));
        }
    }
    refuse_nesting_cycles(&groups)?;

    if !translation.rooms.is_empty() {
        // Everyone the rooms name is within the category's scope: the users' domains and the groups.
        let mut allowed: BTreeSet<Principal> = groups
            .values()
            .map(|group| Principal::Group(group.name.clone()))
            .collect();
        for principal in principals.values() {
            if let Principal::User(address) = principal
                && let Some((_, domain)) = address.rsplit_once('@')
                && let Ok(domain) = Principal::parse(&format!("domain:{domain}"))
            {
                allowed.insert(domain);
            }
        }
        let mut category = Category {
            name: options.category.clone(),
            description: format!(
                "Rooms from {} (Skype for Business Server); its export names no categories",
                options.source
            ),
            allowed_members: allowed.into_iter().collect(),
            denied_members: Vec::new(),
            creators: Vec::new(),
            invitations: false,
            file_upload: false,
            chat_history: true,
            retention: None,
        };
        category.normalise();
        if let Some(problem) = category.problems().first() {
            return Err(format!(
                "the category `{}`: {}: {}",
                crate::text::excerpt(&category.name, 80),
                problem.field,
                problem.message
            ));
        }
        translation.category = Some(category);
    }
    translation.groups = groups.into_values().collect();
    translation.not_imported = not_imported;
    Ok(translation)
}

/// Groups that contain each other are refused: Perch's groups nest without cycles.
fn refuse_nesting_cycles(groups: &BTreeMap<String, Group>) -> Result<(), String> {
    let by_name: BTreeMap<&str, &Group> = groups.values().map(|g| (g.name.as_str(), g)).collect();
    // Depth-first, colouring each group: 1 while on the path, 2 when done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    let mut stack: Vec<(&str, usize)> = Vec::new();
    for start in by_name.keys() {
        if state.contains_key(start) {
            continue;
        }
        stack.push((start, 0));
        state.insert(start, 1);
        while let Some((name, next)) = stack.pop() {
            let members = &by_name[name].members;
            let Some(member) = members.get(next) else {
                state.insert(name, 2);
                continue;
            };
            stack.push((name, next + 1));
            if let Principal::Group(inner) = member {
                match state.get(inner.as_str()) {
                    Some(1) => {
                        return Err(format!(
                            "the affiliations put groups `{name}` and `{inner}` inside each other; Perch's groups nest without cycles"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        if let Some((key, _)) = by_name.get_key_value(inner.as_str()) {
                            state.insert(key, 1);
                            stack.push((key, 0));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

impl Translation {
    /// The objects as a `perch-data` file of objects without ids, for the target's import.
    ///
    /// # Errors
    /// Only if an object cannot be written as JSON.
    pub fn perch_data(&self, exported_at: &str) -> Result<Vec<u8>, serde_json::Error> {
        let mut lines = Vec::new();
        let mut push = |kind: Kind, object: Value| -> Result<(), serde_json::Error> {
            let Value::Object(mut fields) = object else {
                return Ok(());
            };
            let envelope: Map<String, Value> = match json!({
                "kind": kind.as_str(), "version": 1, "managed": false, "protect": false,
                "createdAt": exported_at, "updatedAt": exported_at,
            }) {
                Value::Object(envelope) => envelope,
                _ => Map::new(),
            };
            fields.extend(envelope);
            lines.push(json!({ "object": fields }).to_string());
            Ok(())
        };
        for group in &self.groups {
            push(Kind::Group, serde_json::to_value(group)?)?;
        }
        if let Some(category) = &self.category {
            push(Kind::Category, serde_json::to_value(category)?)?;
        }
        for room in &self.rooms {
            push(Kind::Room, serde_json::to_value(room)?)?;
        }
        let header = DataHeader {
            format: "perch-data".to_owned(),
            version: 1,
            level: Level::RoomDirectory,
            scope: Vec::new(),
            since: None,
            exported_at: exported_at.to_owned(),
        };
        let count = lines.len();
        perch_data_file(&header, &lines, count, 0).map(|(bytes, _)| bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(files: [(&'static str, &str); 4]) -> BTreeMap<&'static str, String> {
        files
            .into_iter()
            .map(|(name, text)| (name, text.to_owned()))
            .collect()
    }

    fn options() -> Options {
        Options {
            category: "Imported".to_owned(),
            source: "PersistentChatData.zip".to_owned(),
        }
    }

    const USERS: &str = r#"<Pool><AdUsers><User principalId="101" UserPrincipalName="Ken@Litwareinc.com"/><User><principalId>102</principalId><UserPrincipalName>ana@fabrikam.com</UserPrincipalName></User></AdUsers></Pool>"#;
    const GROUPS: &str =
        r#"<Pool><AdGroups><Group principalId="201"/><Group principalId="202"/></AdGroups></Pool>"#;
    const AFFILIATIONS: &str = r#"<Pool><AdAffiliations><User id="101"><Groups><Group id="201"/></Groups></User><User id="202"><Groups><Group id="201"/></Groups></User></AdAffiliations></Pool>"#;

    #[test]
    fn the_documented_structure_becomes_groups_a_category_and_rooms() {
        let rooms = r#"<Pool><ChatRooms><ChatRoom isDisabled="1"><Name>IT</Name><Desc>Help</Desc><Roles><Principal id="101" isManager="1" isMember="1" isCreator="0"/><Principal id="201" isManager="0" isMember="1" isCreator="1"/><Principal id="999" isMember="1"/></Roles></ChatRoom></ChatRooms></Pool>"#;
        let translation = translate(
            &texts([
                ("AdUsers.xml", USERS),
                ("AdGroups.xml", GROUPS),
                ("AdAffiliations.xml", AFFILIATIONS),
                ("ChatRooms.xml", rooms),
            ]),
            &options(),
            Limits::default(),
            BTreeMap::new(),
        )
        .unwrap();
        let room = &translation.rooms[0];
        assert_eq!(room.name, "IT");
        assert!(room.disabled);
        let shown = |list: &[Principal]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            shown(&room.members),
            ["group:sfb-group-201", "sip:ken@litwareinc.com"]
        );
        assert_eq!(shown(&room.managers), ["sip:ken@litwareinc.com"]);
        assert_eq!(
            shown(&translation.groups[0].members),
            ["group:sfb-group-202", "sip:ken@litwareinc.com"]
        );
        let category = translation.category.as_ref().unwrap();
        assert_eq!(
            shown(&category.allowed_members),
            [
                "domain:fabrikam.com",
                "domain:litwareinc.com",
                "group:sfb-group-201",
                "group:sfb-group-202"
            ]
        );
        expect_test::expect![[r#"
            {
                "ChatRooms.xml: ChatRooms/ChatRoom/Roles/Principal naming a principal AdUsers.xml and AdGroups.xml do not hold": 1,
                "ChatRooms.xml: ChatRooms/ChatRoom/Roles/Principal/@isCreator=1 (a room has no creators)": 1,
            }
        "#]]
        .assert_debug_eq(&translation.not_imported);
    }

    #[test]
    fn what_the_format_does_not_describe_is_counted_and_what_cannot_be_told_refused() {
        let rooms = "<Pool id=\"p\">\n  <Categories/>\n  <Directory>\n    <ChatRooms>\n      <ChatRoom isDisabled=\"0\" privacy=\"Secret\">\n        <Name>a</Name>\n        <Uri>ma-chan://x/1</Uri>\n      </ChatRoom>\n    </ChatRooms>\n  </Directory>\n</Pool>";
        let translation = translate(
            &texts([
                ("AdUsers.xml", USERS),
                ("AdGroups.xml", GROUPS),
                ("AdAffiliations.xml", AFFILIATIONS),
                ("ChatRooms.xml", rooms),
            ]),
            &options(),
            Limits::default(),
            BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(translation.rooms[0].name, "a");
        expect_test::expect![[r#"
            [
                "ChatRooms.xml: ChatRooms/ChatRoom/@privacy",
                "ChatRooms.xml: ChatRooms/ChatRoom/Uri",
                "ChatRooms.xml: Pool/@id",
                "ChatRooms.xml: Pool/Categories",
            ]
        "#]]
        .assert_debug_eq(&translation.not_imported.keys().collect::<Vec<_>>());

        let refused = |rooms: &str| {
            translate(
                &texts([
                    ("AdUsers.xml", USERS),
                    ("AdGroups.xml", GROUPS),
                    ("AdAffiliations.xml", AFFILIATIONS),
                    ("ChatRooms.xml", rooms),
                ]),
                &options(),
                Limits::default(),
                BTreeMap::new(),
            )
            .unwrap_err()
        };
        expect_test::expect![[r#"
            [
                "ChatRooms.xml: ChatRoom 1 (`a`): isDisabled is `yes`, neither 0/1 nor false/true",
                "ChatRooms.xml: ChatRoom 1 has no Name",
                "ChatRooms.xml names the rooms `A` and `a`, one name in Perch (names are unique without case)",
                "ChatRooms.xml: room `a/b`: name: name `a/b` may not start or end with spaces, contain `/`, or be `.` or `..`",
                "ChatRooms.xml: XML with DTD detected",
            ]
        "#]]
        .assert_debug_eq(&[
            refused("<Pool><ChatRooms><ChatRoom isDisabled=\"yes\"><Name>a</Name></ChatRoom></ChatRooms></Pool>"),
            refused("<Pool><ChatRooms><ChatRoom><Desc>x</Desc></ChatRoom></ChatRooms></Pool>"),
            refused("<Pool><ChatRooms><ChatRoom><Name>A</Name></ChatRoom><ChatRoom><Name>a</Name></ChatRoom></ChatRooms></Pool>"),
            refused("<Pool><ChatRooms><ChatRoom><Name>a/b</Name></ChatRoom></ChatRooms></Pool>"),
            refused("<!DOCTYPE Pool [<!ENTITY a \"aaaa\">]><Pool><ChatRooms/></Pool>"),
        ]);
    }

    #[test]
    fn groups_inside_each_other_are_refused() {
        let affiliations = r#"<Pool><AdAffiliations><User id="201"><Groups><Group id="202"/></Groups></User><User id="202"><Groups><Group id="201"/></Groups></User></AdAffiliations></Pool>"#;
        let error = translate(
            &texts([
                ("AdUsers.xml", USERS),
                ("AdGroups.xml", GROUPS),
                ("AdAffiliations.xml", affiliations),
                ("ChatRooms.xml", "<Pool><ChatRooms/></Pool>"),
            ]),
            &options(),
            Limits::default(),
            BTreeMap::new(),
        )
        .unwrap_err();
        assert!(error.contains("inside each other"), "{error}");
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in files {
            writer.start_file(*name, options).unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn a_zip_is_read_within_its_limits_whatever_it_claims() {
        let limits = Limits {
            entries: 8,
            file_bytes: 4096,
            nodes: 1000,
        };
        let read = |bytes: &[u8]| read_zip(bytes, limits, &mut BTreeMap::new());
        // Deflate makes 100 KB of zeros a few hundred bytes: the limit is on what comes out.
        let bomb = zip_of(&[("ChatRooms.xml", &vec![b' '; 100_000])]);
        assert!(bomb.len() < 4096);
        assert_eq!(
            read(&bomb).unwrap_err(),
            "ChatRooms.xml unpacks to more than 4096 bytes"
        );
        let many: Vec<(String, Vec<u8>)> = (0..9).map(|n| (format!("f{n}"), Vec::new())).collect();
        let many: Vec<(&str, &[u8])> = many
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        assert_eq!(
            read(&zip_of(&many)).unwrap_err(),
            "holds 9 entries; at most 8 are read"
        );
        // UTF-16 as .NET may write it, and a file the format does not describe, reported.
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("<Pool/>".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let mut not_imported = BTreeMap::new();
        let texts = read_zip(
            &zip_of(&[("AdGroups.xml", &utf16), ("Report.txt", b"x")]),
            limits,
            &mut not_imported,
        )
        .unwrap();
        assert_eq!(texts["AdGroups.xml"], "<Pool/>");
        assert_eq!(
            not_imported.keys().collect::<Vec<_>>(),
            ["Report.txt: a file the known format does not describe"]
        );
        // A document past its node budget is refused, not parsed.
        let nodes = format!("<Pool>{}</Pool>", "<x/>".repeat(2000));
        assert!(parse("ChatRooms.xml", &nodes, limits).is_err());
    }
}
