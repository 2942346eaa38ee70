//! The live state as manifest files, so that `plan` over the export is empty.

use miette::{IntoDiagnostic, WrapErr};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::Kind;
use crate::manifest::docs::{AddinDoc, CategoryDoc, ComplianceDoc, GroupDoc, RoomDoc};
use crate::plan::{Live, LiveObject};

/// The first line of every exported file: editors find the schema beside the files.
const SCHEMA_LINE: &str = "# yaml-language-server: $schema=./perch.schema.json\n";

/// The files to write: (file name, text, number of objects).
pub fn manifests(live: &Live) -> miette::Result<Vec<(String, String, usize)>> {
    let mut files = Vec::new();
    for (kind, file) in [
        (Kind::Group, "groups.yaml"),
        (Kind::Addin, "addins.yaml"),
        (Kind::Category, "categories.yaml"),
        (Kind::Room, "rooms.yaml"),
    ] {
        let objects: Vec<&LiveObject> = live
            .objects
            .values()
            .filter(|object| object.kind == kind)
            .collect();
        if objects.is_empty() {
            continue;
        }
        let mut text = String::from(SCHEMA_LINE);
        for object in &objects {
            text.push_str("---\n");
            text.push_str(&document(object)?);
        }
        files.push((file.to_owned(), text, objects.len()));
    }
    if let Some(compliance) = &live.compliance {
        let text = format!("{SCHEMA_LINE}---\n{}", document(compliance)?);
        files.push(("compliance.yaml".to_owned(), text, 1));
    }
    Ok(files)
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
