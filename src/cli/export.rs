//! The live state as manifest files, so that `plan` over the export is empty.

use miette::{IntoDiagnostic, WrapErr};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::{Live, LiveObject};
use crate::domain::Kind;
use crate::manifest::docs::{AddinDoc, CategoryDoc, ComplianceDoc, GroupDoc, RoomDoc};

/// The first line of every exported file: editors find the schema beside the files.
const SCHEMA_LINE: &str = "# yaml-language-server: $schema=./perch.schema.json\n";

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
    let mut fields: Map<String, Value> = object.fields.clone();
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
