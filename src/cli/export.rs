//! The live state as manifest files, so that `plan` over the export is empty.

use miette::{IntoDiagnostic, WrapErr};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::{Live, LiveObject};
use crate::domain::Kind;
use crate::manifest::docs::{AddinDoc, CategoryDoc, ComplianceDoc, GroupDoc, RoomDoc};

/// The first line of every exported file: editors find the schema beside the files.
const SCHEMA_LINE: &str = "# yaml-language-server: $schema=./perch.schema.json\n";

/// The list of the files an export wrote, beside them, so that the next export into the
/// directory replaces them and leaves every other file alone. Hidden, and no manifest.
pub const INDEX_FILE: &str = ".perch-export";

/// The index's text: a comment, then one file name per line.
pub fn index_text(files: &std::collections::BTreeSet<String>) -> String {
    let mut text =
        String::from("# Files `perch export` wrote here; the next export replaces them.\n");
    for file in files {
        text.push_str(file);
        text.push('\n');
    }
    text
}

/// The files an earlier export wrote into `dir`: as its index lists them, or, for an export
/// made before there was an index, the manifest files named as export names them that begin
/// with its schema line. Names that could leave the directory are never listed.
pub fn written_before(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let plain = |name: &str| {
        !name.is_empty()
            && !name.starts_with('.')
            && !name.contains(['/', '\\', ':'])
            && std::path::Path::new(name)
                .extension()
                .is_some_and(|extension| extension == "yaml")
    };
    if let Ok(index) = std::fs::read_to_string(dir.join(INDEX_FILE)) {
        return index
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|name| plain(name))
            .map(str::to_owned)
            .collect();
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return std::collections::BTreeSet::new();
    };
    let named_as_export = |name: &str| {
        matches!(
            name,
            "groups.yaml" | "addins.yaml" | "categories.yaml" | "compliance.yaml"
        ) || name.starts_with("rooms-")
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| plain(name) && named_as_export(name))
        .filter(|name| {
            let mut start = [0_u8; SCHEMA_LINE.len()];
            std::fs::File::open(dir.join(name))
                .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut start))
                .is_ok_and(|()| start == SCHEMA_LINE.as_bytes())
        })
        .collect()
}

/// The files to write: (file name, text, number of objects).
pub fn manifests(live: &Live) -> miette::Result<Vec<(String, String, usize)>> {
    let mut files = Vec::new();
    for (kind, file) in [
        (Kind::Group, "groups.yaml"),
        (Kind::Addin, "addins.yaml"),
        (Kind::Category, "categories.yaml"),
    ] {
        let objects: Vec<&LiveObject> = live
            .objects
            .values()
            .filter(|object| object.kind == kind)
            .collect();
        if !objects.is_empty() {
            files.push((file.to_owned(), file_text(&objects)?, objects.len()));
        }
    }
    // Rooms go one file per category, as people tend to keep them.
    let mut rooms_by_category: std::collections::BTreeMap<&str, Vec<&LiveObject>> =
        std::collections::BTreeMap::new();
    for object in live
        .objects
        .values()
        .filter(|object| object.kind == Kind::Room)
    {
        let category = object
            .fields
            .get("category")
            .and_then(Value::as_str)
            .unwrap_or("uncategorised");
        rooms_by_category.entry(category).or_default().push(object);
    }
    let mut used = std::collections::BTreeSet::new();
    for (category, rooms) in rooms_by_category {
        let stem = file_stem(category);
        let mut file = format!("rooms-{stem}.yaml");
        let mut counter = 2;
        while !used.insert(file.clone()) {
            file = format!("rooms-{stem}-{counter}.yaml");
            counter += 1;
        }
        files.push((file, file_text(&rooms)?, rooms.len()));
    }
    if let Some(compliance) = &live.compliance {
        let text = format!("{SCHEMA_LINE}---\n{}", document(compliance)?);
        files.push(("compliance.yaml".to_owned(), text, 1));
    }
    Ok(files)
}

fn file_text(objects: &[&LiveObject]) -> miette::Result<String> {
    let mut text = String::from(SCHEMA_LINE);
    for object in objects {
        text.push_str("---\n");
        text.push_str(&document(object)?);
    }
    Ok(text)
}

/// A file-name-safe form of a category name; distinct names may share a stem, so the caller
/// numbers repeats.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn document(object: &LiveObject) -> miette::Result<String> {
    let mut fields: Map<String, Value> = object.fields.to_map();
    fields.insert(
        "apiVersion".to_owned(),
        Value::String(crate::manifest::API_VERSION.to_owned()),
    );
    fields.insert(
        "kind".to_owned(),
        Value::String(object.kind.as_str().to_owned()),
    );
    if object.meta.protect {
        fields.insert("protect".to_owned(), Value::Bool(true));
    }
    if object.kind == Kind::Room && !fields.contains_key("addin") {
        fields.insert("addin".to_owned(), Value::Null);
    }
    let value = Value::Object(fields);
    let describe = || format!("cannot export {} `{}`", object.kind, object.name);
    match object.kind {
        Kind::Group => yaml::<GroupDoc>(value),
        Kind::Addin => yaml::<AddinDoc>(value),
        Kind::Category => yaml::<CategoryDoc>(value),
        Kind::Room => yaml::<RoomDoc>(value),
        Kind::ComplianceConfiguration => yaml::<ComplianceDoc>(value),
    }
    .wrap_err_with(describe)
}

fn yaml<T: serde::de::DeserializeOwned + Serialize>(value: Value) -> miette::Result<String> {
    let typed: T = serde_json::from_value(value).into_diagnostic()?;
    serde_saphyr::to_string(&typed).into_diagnostic()
}
