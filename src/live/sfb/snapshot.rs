//! A Skype for Business Server 2015 snapshot: the JSON that Windows PowerShell 5.1 writes for
//! `Get-CsPersistentChatCategory`, `Get-CsPersistentChatRoom`, `Get-CsPersistentChatAddin` and
//! `Get-CsPersistentChatComplianceConfiguration` piped to `ConvertTo-Json`, read into the live
//! state the plan engine compares.
//!
//! It takes what PowerShell 5.1 really writes: UTF-16 (what `>` saves) or UTF-8, with or
//! without a byte-order mark; one object or an array (or `{"value": [...], "Count": n}`);
//! enums as names, or as numbers read by the pool's own numbering (`enums.json`); TimeSpans as text or as objects; identities as `pool\name` or
//! `name`; principals as SIP addresses or distinguished names. What it cannot read without
//! guessing (an unknown enum number, a list that `-Depth` cut to text, a shape it does not know)
//! is an error naming the file, the object and the property.
//!
//! The reading is pure (text in, objects out); `read_dir` only reads the four files.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::principals::PrincipalMap;
use crate::api::{Envelope, Live, LiveObject};
use crate::domain::{AdapterType, Kind, Privacy, RoomType, RunInterval};

/// The files of a snapshot, the kind each holds, and the one-liner that captures it (the
/// README gives the same lines).
pub const FILES: [(&str, Kind, &str); 4] = [
    (
        "categories.json",
        Kind::Category,
        "Get-CsPersistentChatCategory | Select-Object * | ConvertTo-Json -Depth 5 > categories.json",
    ),
    (
        "rooms.json",
        Kind::Room,
        "Get-CsPersistentChatRoom | Select-Object *, @{n='Privacy';e={\"$($_.Privacy)\"}}, @{n='Type';e={\"$($_.Type)\"}}, @{n='Invitations';e={\"$($_.Invitations)\"}} -ExcludeProperty Privacy,Type,Invitations | ConvertTo-Json -Depth 5 > rooms.json",
    ),
    (
        "addins.json",
        Kind::Addin,
        "Get-CsPersistentChatAddin | Select-Object * | ConvertTo-Json -Depth 5 > addins.json",
    ),
    (
        "compliance.json",
        Kind::ComplianceConfiguration,
        "Get-CsPersistentChatComplianceConfiguration | Select-Object *, @{n='RunInterval';e={\"$($_.RunInterval)\"}} -ExcludeProperty RunInterval | ConvertTo-Json -Depth 5 > compliance.json",
    ),
];

/// The optional file that gives the room enums' numbering, as the pool's own types define it,
/// and the one-liner that captures it. With it, rooms captured without the casts (enums as
/// numbers, as PowerShell 5.1 writes them) are read by the pool's own table, never by a guess.
pub const ENUMS_FILE: (&str, &str) = (
    "enums.json",
    "'Privacy','Type','Invitations' | ForEach-Object { $t = (Get-Command Set-CsPersistentChatRoom).Parameters[$_].ParameterType; [pscustomobject]@{ Property = $_; Type = $t.FullName; Names = [string[]][enum]::GetNames($t); Values = [int[]][enum]::GetValues($t) } } | ConvertTo-Json > enums.json",
);

/// The room enums' numbering a snapshot's `enums.json` gives: property -> number -> name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnumNumbers(std::collections::BTreeMap<String, std::collections::BTreeMap<i64, String>>);

impl EnumNumbers {
    /// Reads `enums.json`: one object per property with its `Names` and `Values` in the same
    /// order (as `[enum]::GetNames` and `GetValues` give them).
    ///
    /// # Errors
    /// A shape the one-liner does not write, a property that is not a room enum, lists of
    /// different lengths, a number or a name twice.
    pub fn parse(text: &str) -> Result<EnumNumbers, String> {
        let value =
            parse_json(text.trim().as_bytes()).map_err(|error| format!("not JSON: {error}"))?;
        let mut numbers = EnumNumbers::default();
        for (index, entry) in objects(&value)?.into_iter().enumerate() {
            let at = format!("item {}", index + 1);
            let property = entry
                .get("Property")
                .and_then(Value::as_str)
                .filter(|property| ["Privacy", "Type", "Invitations"].contains(property))
                .ok_or(format!(
                    "{at}: Property is not Privacy, Type or Invitations"
                ))?;
            let list = |key: &str| -> Vec<&Value> {
                match entry.get(key).map(unwrap_value) {
                    Some(Value::Array(items)) => items.iter().collect(),
                    Some(other) => vec![other],
                    None => Vec::new(),
                }
            };
            let (names, values) = (list("Names"), list("Values"));
            if names.is_empty() || names.len() != values.len() {
                return Err(format!(
                    "{at} ({property}): {} names and {} values; they come in pairs",
                    names.len(),
                    values.len()
                ));
            }
            let mut table = std::collections::BTreeMap::new();
            for (name, number) in names.into_iter().zip(values) {
                let (Some(name), Some(number)) = (name.as_str(), number.as_i64()) else {
                    return Err(format!(
                        "{at} ({property}): a name that is not text or a value that is not a whole number"
                    ));
                };
                if table
                    .values()
                    .any(|known: &String| known.eq_ignore_ascii_case(name))
                    || table.insert(number, name.to_owned()).is_some()
                {
                    return Err(format!("{at} ({property}): `{name}` or {number} twice"));
                }
            }
            if numbers.0.insert(property.to_owned(), table).is_some() {
                return Err(format!("{property} twice"));
            }
        }
        Ok(numbers)
    }

    fn name(&self, property: &str, number: i64) -> Result<&str, String> {
        let Some(table) = self.0.get(property) else {
            return Err(format!(
                "the enum number {number}: the cmdlets' numbering is not published, so Perch does not guess it; capture {} beside the snapshot with:\n  {}\nor capture rooms with the README's one-liner, which writes enum names",
                ENUMS_FILE.0, ENUMS_FILE.1
            ));
        };
        table.get(&number).map(String::as_str).ok_or_else(|| {
            let known: Vec<String> = table
                .iter()
                .map(|(n, name)| format!("{n} {name}"))
                .collect();
            format!(
                "the enum number {number} is not among those {} gives ({})",
                ENUMS_FILE.0,
                known.join(", ")
            )
        })
    }
}

/// The most bytes one snapshot file may hold.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// What a property the reader needs says when the capture left it out.
const MISSING: &str = "missing; capture with the README's one-liner (Select-Object *)";

/// What the reader made of a snapshot.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Every object read, with the pool its identity names (if it names one).
    pub objects: Vec<(Option<String>, LiveObject)>,
    pub compliance: Option<LiveObject>,
    /// The pools the objects' identities and `PersistentChatPoolFqdn` name.
    pub pools: std::collections::BTreeSet<String>,
    /// The compliance configuration's identity (`global`, `site:Redmond`), if it has one.
    pub compliance_identity: Option<String>,
}

impl Snapshot {
    /// The live state of one pool: its objects (those of other pools left out), each name
    /// once.
    ///
    /// # Errors
    /// Two objects of a kind whose names differ only in case or Unicode form, in the pool.
    pub fn live_for(&self, pool: &str) -> Result<Live, String> {
        let mut live = Live {
            compliance: self.compliance.clone(),
            ..Live::default()
        };
        let mut keys = std::collections::BTreeMap::new();
        for (object_pool, object) in &self.objects {
            if object_pool
                .as_deref()
                .is_some_and(|other| !other.eq_ignore_ascii_case(pool))
            {
                continue;
            }
            let key = (object.kind, crate::domain::name_key(&object.name));
            if let Some(first) = keys.insert(key, object.name.clone()) {
                return Err(format!(
                    "the snapshot has two of kind {} named `{first}` and `{}` in pool {pool}: names are unique without regard to case",
                    object.kind, object.name
                ));
            }
            live.objects
                .insert((object.kind, object.name.clone()), object.clone());
        }
        Ok(live)
    }
}

/// The `AdapterType` the original writes for its XML adapter, the only one it has.
pub const XML_ADAPTER: &str = "Microsoft.Rtc.Internal.Chat.Server.Compliance.XmlAdapter,compliance";

/// Decodes a file as PowerShell saved it: UTF-16LE or UTF-16BE with a byte-order mark (what
/// `>` writes), or UTF-8 with or without one.
///
/// # Errors
/// Bytes that are none of these.
pub fn decode(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |little: bool, body: &[u8]| {
        if !body.len().is_multiple_of(2) {
            return Err("is UTF-16 with an odd number of bytes".to_owned());
        }
        let units: Vec<u16> = body
            .chunks_exact(2)
            .map(|pair| {
                if little {
                    u16::from_le_bytes([pair[0], pair[1]])
                } else {
                    u16::from_be_bytes([pair[0], pair[1]])
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| "is not valid UTF-16 text".to_owned())
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(true, rest),
        [0xFE, 0xFF, rest @ ..] => utf16(false, rest),
        [0xEF, 0xBB, 0xBF, rest @ ..] => {
            String::from_utf8(rest.to_vec()).map_err(|_| "is not valid UTF-8 text".to_owned())
        }
        _ => String::from_utf8(bytes.to_vec())
            .map_err(|_| "is neither UTF-16 with a byte-order mark nor UTF-8 text".to_owned()),
    }
}

/// Reads the four files of a snapshot directory.
///
/// # Errors
/// A missing or unreadable file (with the one-liner that captures it), or what [`read`] finds.
pub fn read_dir(dir: &Path, map: &PrincipalMap) -> Result<Snapshot, String> {
    let mut texts = Vec::new();
    for (file, kind, capture) in FILES {
        let path = dir.join(file);
        let metadata = std::fs::metadata(&path).map_err(|error| {
            format!(
                "{}: {error}; capture it on the server with:\n  {capture}",
                path.display()
            )
        })?;
        if !metadata.is_file() || metadata.len() > MAX_FILE_BYTES {
            return Err(format!(
                "{}: not a regular file of at most {MAX_FILE_BYTES} bytes",
                path.display()
            ));
        }
        let bytes = std::fs::read(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        let text = decode(&bytes).map_err(|why| format!("{}: {why}", path.display()))?;
        texts.push((file, kind, text));
    }
    let path = dir.join(ENUMS_FILE.0);
    let numbers = match std::fs::metadata(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => EnumNumbers::default(),
        Err(error) => return Err(format!("{}: {error}", path.display())),
        Ok(metadata) if !metadata.is_file() || metadata.len() > MAX_FILE_BYTES => {
            return Err(format!(
                "{}: not a regular file of at most {MAX_FILE_BYTES} bytes",
                path.display()
            ));
        }
        Ok(_) => {
            let bytes =
                std::fs::read(&path).map_err(|error| format!("{}: {error}", path.display()))?;
            decode(&bytes)
                .and_then(|text| EnumNumbers::parse(&text))
                .map_err(|why| format!("{}: {why}", path.display()))?
        }
    };
    read(&texts, map, &numbers)
}

/// Reads a snapshot's files' texts: (file name, kind, text).
///
/// # Errors
/// The first thing that cannot be read without a guess, naming the file, object and property.
pub fn read(
    files: &[(&str, Kind, String)],
    map: &PrincipalMap,
    numbers: &EnumNumbers,
) -> Result<Snapshot, String> {
    let mut snapshot = Snapshot::default();
    for (file, kind, text) in files {
        let trimmed = text.trim();
        // `ConvertTo-Json` of nothing writes nothing.
        let value: Value = if trimmed.is_empty() {
            Value::Array(Vec::new())
        } else {
            parse_json(trimmed.as_bytes()).map_err(|error| format!("{file}: not JSON: {error}"))?
        };
        for (index, object) in objects(&value)
            .map_err(|why| format!("{file}: {why}"))?
            .into_iter()
            .enumerate()
        {
            let at = |property: &str, why: String| {
                let name = object
                    .get("Name")
                    .and_then(Value::as_str)
                    .or_else(|| object.get("Identity").and_then(Value::as_str))
                    .map_or_else(
                        || format!("object {}", index + 1),
                        |name| format!("`{name}`"),
                    );
                format!("{file}: {name}: {property}: {why}")
            };
            let read = ObjectReader {
                object,
                map,
                numbers,
                at: &at,
            };
            match kind {
                Kind::Category => {
                    let (name, pool) = read.identity()?;
                    snapshot.pools.extend(pool.clone());
                    let mut fields = Map::new();
                    fields.insert("name".into(), name.clone().into());
                    fields.insert("description".into(), read.text("Description")?.into());
                    for (property, field) in [
                        ("AllowedMembers", "allowedMembers"),
                        ("DeniedMembers", "deniedMembers"),
                        ("Creators", "creators"),
                    ] {
                        fields.insert(field.into(), read.principals(property)?);
                    }
                    for (property, field) in [
                        ("Invitations", "invitations"),
                        ("FileUpload", "fileUpload"),
                        ("ChatHistory", "chatHistory"),
                    ] {
                        fields.insert(field.into(), read.flag(property)?.into());
                    }
                    snapshot
                        .objects
                        .push((pool, object_of(Kind::Category, name, fields)));
                }
                Kind::Room => {
                    let (name, pool) = read.identity()?;
                    snapshot.pools.extend(pool.clone());
                    snapshot
                        .pools
                        .extend(read.optional_text("PersistentChatPoolFqdn")?);
                    let mut fields = Map::new();
                    fields.insert("name".into(), name.clone().into());
                    fields.insert("category".into(), read.reference("Category")?.into());
                    fields.insert("description".into(), read.text("Description")?.into());
                    fields.insert(
                        "privacy".into(),
                        read.enumeration("Privacy", |text| {
                            Privacy::parse(text).map(|value| value.as_str().to_owned())
                        })?
                        .into(),
                    );
                    fields.insert(
                        "type".into(),
                        read.enumeration("Type", |text| {
                            RoomType::parse(text).map(|value| value.as_str().to_owned())
                        })?
                        .into(),
                    );
                    let invitations = read.enumeration("Invitations", |text| {
                        ["inherit", "false"]
                            .into_iter()
                            .find(|value| value.eq_ignore_ascii_case(text))
                            .map(str::to_owned)
                    })?;
                    fields.insert(
                        "invitations".into(),
                        if invitations == "false" {
                            json!(false)
                        } else {
                            json!("inherit")
                        },
                    );
                    fields.insert("disabled".into(), read.flag("Disabled")?.into());
                    if let Some(addin) = read.optional_reference("Addin")? {
                        fields.insert("addin".into(), addin.into());
                    }
                    for (property, field) in [
                        ("Members", "members"),
                        ("Managers", "managers"),
                        ("Presenters", "presenters"),
                    ] {
                        fields.insert(field.into(), read.principals(property)?);
                    }
                    snapshot
                        .objects
                        .push((pool, object_of(Kind::Room, name, fields)));
                }
                Kind::Addin => {
                    let (name, pool) = read.identity()?;
                    snapshot.pools.extend(pool.clone());
                    snapshot
                        .pools
                        .extend(read.optional_text("PersistentChatPoolFqdn")?);
                    let mut fields = Map::new();
                    fields.insert("name".into(), name.clone().into());
                    fields.insert("url".into(), read.text("Url")?.into());
                    snapshot
                        .objects
                        .push((pool, object_of(Kind::Addin, name, fields)));
                }
                Kind::ComplianceConfiguration => {
                    if snapshot.compliance.is_some() {
                        return Err(format!(
                            "{file}: more than one compliance configuration; capture the one the pool uses (e.g. `Get-CsPersistentChatComplianceConfiguration -Identity global`)"
                        ));
                    }
                    snapshot.compliance_identity = read.optional_text("Identity")?;
                    snapshot.compliance = Some(read.compliance()?);
                }
                Kind::Group => {}
            }
        }
    }
    if snapshot.compliance.is_none() {
        snapshot.compliance = Some(object_of(
            Kind::ComplianceConfiguration,
            String::new(),
            Map::new(),
        ));
    }
    Ok(snapshot)
}

/// Parses a file strictly (no key twice) within the manifests' limits for its size.
fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    use serde::de::DeserializeSeed;
    let budget = crate::strict::Budget::new(crate::strict::Limits {
        nodes: crate::manifest::source::node_limit(bytes.len()),
        depth: crate::manifest::LIMITS.depth,
        scalar_bytes: crate::manifest::LIMITS.scalar_bytes,
        mapping: "object",
    });
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    budget
        .seed()
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| error.to_string())
}

/// The objects of a file: one object, an array of them, or PowerShell 5.1's
/// `{"value": [...], "Count": n}`.
fn objects(value: &Value) -> Result<Vec<&Map<String, Value>>, String> {
    match unwrap_value(value) {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                item.as_object().ok_or_else(|| {
                    format!(
                        "item {} is {}, not an object the cmdlet wrote",
                        index + 1,
                        shape(item)
                    )
                })
            })
            .collect(),
        Value::Object(object) => Ok(vec![object]),
        other => Err(format!(
            "holds {}, not the objects the cmdlet wrote",
            shape(other)
        )),
    }
}

fn unwrap_value(value: &Value) -> &Value {
    match value {
        Value::Object(object)
            if object.contains_key("value")
                && object.keys().all(|key| key == "value" || key == "Count") =>
        {
            &object["value"]
        }
        other => other,
    }
}

/// An object read from a snapshot. The whole configuration is the manifests' (see the
/// README), so it is managed; its version is drawn from its fields, so that a plan saved
/// against one snapshot is stale against a later one that differs.
fn object_of(kind: Kind, name: String, fields: Map<String, Value>) -> LiveObject {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(Value::Object(fields.clone()).to_string().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // Positive, and never 0.
    let version = i64::from_be_bytes(first) & i64::MAX;
    LiveObject {
        kind,
        name,
        fields: fields.into(),
        meta: Envelope {
            id: 0,
            version: version.max(1),
            managed: true,
            protect: false,
            created_at: String::new(),
            updated_by: "Skype for Business".to_owned(),
            updated_at: String::new(),
        },
    }
}

struct ObjectReader<'a> {
    object: &'a Map<String, Value>,
    map: &'a PrincipalMap,
    numbers: &'a EnumNumbers,
    at: &'a dyn Fn(&str, String) -> String,
}

impl ObjectReader<'_> {
    fn get(&self, property: &str) -> Option<&Value> {
        self.object
            .get(property)
            .map(unwrap_value)
            .filter(|value| !value.is_null())
    }

    fn optional_text(&self, property: &str) -> Result<Option<String>, String> {
        match self.get(property) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err((self.at)(
                property,
                format!("expected text, found {}", shape(other)),
            )),
        }
    }

    fn text(&self, property: &str) -> Result<String, String> {
        Ok(self.optional_text(property)?.unwrap_or_default())
    }

    /// The object's name and pool, from `Identity` (`pool\name` or `name`) or `Name`.
    fn identity(&self) -> Result<(String, Option<String>), String> {
        let name = self.optional_text("Name")?;
        let identity = self.optional_text("Identity")?;
        let (pool, from_identity) = match identity.as_deref().map(split_identity) {
            Some((pool, name)) => (pool, Some(name)),
            None => (None, None),
        };
        let name = name.or(from_identity).ok_or_else(|| {
            (self.at)(
                "Name",
                "the object has neither a Name nor an Identity".to_owned(),
            )
        })?;
        let mut name = name;
        crate::domain::normalise_name(&mut name);
        Ok((name, pool))
    }

    /// A reference to another object (a room's category): `pool\name`, `name`, or an object
    /// with a `Name` or `Identity`.
    fn optional_reference(&self, property: &str) -> Result<Option<String>, String> {
        let text = match self.get(property) {
            None => return Ok(None),
            Some(Value::String(text)) if text.is_empty() => return Ok(None),
            Some(Value::String(text)) => text.clone(),
            Some(Value::Object(object)) => object
                .get("Name")
                .or_else(|| object.get("Identity"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    (self.at)(property, "an object without a Name or Identity".to_owned())
                })?,
            Some(other) => {
                return Err((self.at)(
                    property,
                    format!("expected a name, found {}", shape(other)),
                ));
            }
        };
        let mut name = split_identity(&text).1;
        crate::domain::normalise_name(&mut name);
        Ok(Some(name))
    }

    fn reference(&self, property: &str) -> Result<String, String> {
        self.optional_reference(property)?
            .ok_or_else(|| (self.at)(property, "missing".to_owned()))
    }

    fn flag(&self, property: &str) -> Result<bool, String> {
        match self.get(property) {
            None => Err((self.at)(property, MISSING.to_owned())),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(Value::String(text)) => {
                crate::domain::spelling::parse_bool(text).ok_or_else(|| {
                    (self.at)(property, format!("expected True or False, found `{text}`"))
                })
            }
            Some(other) => Err((self.at)(
                property,
                format!("expected True or False, found {}", shape(other)),
            )),
        }
    }

    /// An enum, given as its name in any case, or as a number (what PowerShell 5.1 writes
    /// unless cast) read by the pool's own numbering in `enums.json`. The cmdlets' numbering is
    /// not published, so without that file a number is refused rather than guessed, pointing
    /// at the one-liners.
    fn enumeration(
        &self,
        property: &str,
        by_name: impl Fn(&str) -> Option<String>,
    ) -> Result<String, String> {
        match self.get(property) {
            None => Err((self.at)(property, MISSING.to_owned())),
            Some(Value::String(text)) => {
                by_name(text).ok_or_else(|| (self.at)(property, format!("unknown value `{text}`")))
            }
            Some(Value::Number(number)) => {
                let name = number
                    .as_i64()
                    .ok_or_else(|| format!("the enum number {number} is not a whole number"))
                    .and_then(|number| self.numbers.name(property, number))
                    .map_err(|why| (self.at)(property, why))?;
                by_name(name).ok_or_else(|| {
                    (self.at)(
                        property,
                        format!(
                            "{number}, which {} names `{name}`, a value Perch does not know",
                            ENUMS_FILE.0
                        ),
                    )
                })
            }
            Some(other) => Err((self.at)(
                property,
                format!("expected a name, found {}", shape(other)),
            )),
        }
    }

    /// A principal list: an array of SIP addresses or distinguished names (or one of them
    /// alone, as PowerShell writes a list of one).
    fn principals(&self, property: &str) -> Result<Value, String> {
        if !self.object.contains_key(property) {
            return Err((self.at)(property, MISSING.to_owned()));
        }
        let items: Vec<&Value> = match self.get(property) {
            None => Vec::new(),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(Value::String(text))
                if text.split_whitespace().count() > 1 && !is_dn_list(text) =>
            {
                return Err((self.at)(
                    property,
                    "the list was cut to text (ConvertTo-Json's -Depth); capture with -Depth 5"
                        .to_owned(),
                ));
            }
            Some(one @ Value::String(_)) => vec![one],
            Some(other) => {
                return Err((self.at)(
                    property,
                    format!("expected a list of principals, found {}", shape(other)),
                ));
            }
        };
        let mut principals = Vec::with_capacity(items.len());
        for item in items {
            let text = match unwrap_value(item) {
                Value::String(text) => text.clone(),
                // An entry written as an object (a deeper capture): its SIP address or name.
                Value::Object(object) => ["SipAddress", "DistinguishedName", "Identity"]
                    .iter()
                    .find_map(|key| object.get(*key).and_then(Value::as_str))
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        (self.at)(
                            property,
                            "an entry without a SipAddress or DistinguishedName".to_owned(),
                        )
                    })?,
                other => {
                    return Err((self.at)(
                        property,
                        format!("an entry that is {}", shape(other)),
                    ));
                }
            };
            let principal = self
                .map
                .from_server(&text)
                .map_err(|why| (self.at)(property, why))?;
            principals.push(principal.to_string());
        }
        principals.sort();
        principals.dedup();
        Ok(Value::Array(
            principals.into_iter().map(Value::String).collect(),
        ))
    }

    fn compliance(&self) -> Result<LiveObject, String> {
        let mut fields = Map::new();
        fields.insert("adapterName".into(), self.text("AdapterName")?.into());
        fields.insert(
            "adapterOutputDirectory".into(),
            self.text("AdapterOutputDirectory")?.into(),
        );
        let adapter = self.text("AdapterType")?;
        let adapter_type = if adapter.contains("XmlAdapter") {
            AdapterType::Xml
        } else {
            return Err((self.at)(
                "AdapterType",
                format!("`{adapter}` is not the XML adapter, the only one Perch writes"),
            ));
        };
        fields.insert("adapterType".into(), adapter_type.as_str().into());
        if let Some(interval) = self.run_interval()? {
            fields.insert("runInterval".into(), interval.to_string().into());
        }
        for (property, field) in [
            ("OneChatRoomPerOutputFile", "oneChatRoomPerOutputFile"),
            ("AddChatRoomDetails", "addChatRoomDetails"),
            ("AddUserDetails", "addUserDetails"),
            (
                "CreateFileAttachmentsManifest",
                "createFileAttachmentsManifest",
            ),
        ] {
            fields.insert(field.into(), self.flag(property)?.into());
        }
        Ok(object_of(
            Kind::ComplianceConfiguration,
            String::new(),
            fields,
        ))
    }

    /// `RunInterval`: `[d.]hh:mm:ss` text, or the object PowerShell 5.1 writes for a TimeSpan
    /// (`TotalSeconds`, or `Ticks` of 100 ns).
    fn run_interval(&self) -> Result<Option<RunInterval>, String> {
        let seconds = match self.get("RunInterval") {
            None => return Ok(None),
            Some(Value::String(text)) => {
                return RunInterval::parse(text)
                    .map(Some)
                    .map_err(|why| (self.at)("RunInterval", why));
            }
            Some(Value::Object(span)) => {
                span.get("TotalSeconds")
                    .and_then(Value::as_f64)
                    .or_else(|| {
                        span.get("Ticks")
                            .and_then(Value::as_f64)
                            .map(|ticks| ticks / 1e7)
                    })
            }
            Some(_) => None,
        };
        let seconds = seconds
            .filter(|s| s.fract() == 0.0 && *s >= 0.0)
            .ok_or_else(|| {
                (self.at)(
                    "RunInterval",
                    "expected [d.]hh:mm:ss or a TimeSpan with TotalSeconds".to_owned(),
                )
            })?;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked whole and non-negative above; RunInterval::parse checks the range"
        )]
        let seconds = seconds as u64;
        let text = format!(
            "{}.{:02}:{:02}:{:02}",
            seconds / 86_400,
            seconds % 86_400 / 3600,
            seconds % 3600 / 60,
            seconds % 60
        );
        RunInterval::parse(&text)
            .map(Some)
            .map_err(|why| (self.at)("RunInterval", why))
    }
}

/// Whether text is one distinguished name (which has no spaces between its parts, but may
/// have spaces in values: `CN=Sales Team,OU=...`), not a list cut to text.
fn is_dn_list(text: &str) -> bool {
    // After a space, a list cut to text starts its next entry (`sip:`, `CN=`, `DC=`...).
    let next_entry = text.split_whitespace().skip(1).any(|word| {
        word.starts_with("sip:")
            || word.split_once('=').is_some_and(|(key, _)| {
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphabetic())
            })
    });
    super::principals::is_distinguished_name(text) && !next_entry
}

/// `pool\name` -> (Some(pool), name); `name` -> (None, name).
pub fn split_identity(identity: &str) -> (Option<String>, String) {
    // A pool's FQDN never holds `\\`; what follows the first one is the name.
    match identity.split_once('\\') {
        Some((pool, name)) if !pool.is_empty() => (Some(pool.to_owned()), name.to_owned()),
        _ => (None, identity.to_owned()),
    }
}

fn shape(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod numbering_tests {
    use super::EnumNumbers;

    #[test]
    fn enums_json_is_read_strictly() {
        let one = r#"{"Property": "Type", "Names": ["Normal", "Auditorium"], "Values": [4, 9]}"#;
        let numbers = EnumNumbers::parse(one).unwrap();
        assert_eq!(numbers.name("Type", 9).unwrap(), "Auditorium");
        assert!(
            numbers
                .name("Privacy", 0)
                .unwrap_err()
                .contains("enums.json")
        );
        expect_test::expect![[r#"
            [
                "item 1: Property is not Privacy, Type or Invitations",
                "item 1 (Type): 2 names and 1 values; they come in pairs",
                "item 1 (Type): `normal` or 2 twice",
                "item 1 (Type): a name that is not text or a value that is not a whole number",
                "Type twice",
            ]
        "#]]
        .assert_debug_eq(
            &[
                r#"{"Property": "Disabled", "Names": ["a"], "Values": [1]}"#,
                r#"{"Property": "Type", "Names": ["Normal", "Auditorium"], "Values": [1]}"#,
                r#"{"Property": "Type", "Names": ["Normal", "normal"], "Values": [1, 2]}"#,
                r#"{"Property": "Type", "Names": ["Normal"], "Values": [1.5]}"#,
                &format!("[{one}, {one}]"),
            ]
            .map(|text| EnumNumbers::parse(text).unwrap_err()),
        );
    }
}
