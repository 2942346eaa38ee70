//! `perch.yaml` at the manifests' root: the repository's defaults for the commands that read
//! them. It is not a manifest, and the manifest walk passes it over.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::domain::Kind;

/// The file's name.
pub const FILE_NAME: &str = "perch.yaml";

/// What a repository may set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Plans that remove more objects than this are refused (`--max-remove` overrides it).
    pub max_remove: Option<u64>,
    /// Fields left alone on every object of a kind (`ignoreFields: {Room: [description]}`),
    /// beside each manifest's own `ignoreFields`.
    pub ignore_fields: BTreeMap<Kind, BTreeSet<String>>,
    /// Where the settings came from, for messages.
    pub from: Option<PathBuf>,
}

/// Reads `perch.yaml` in the first of `paths` that is a directory, if it has one.
///
/// # Errors
/// A file that cannot be read, or that says something other than the settings it may hold.
pub fn read(paths: &[PathBuf]) -> Result<Settings, String> {
    let Some(root) = paths.iter().find(|path| path.is_dir()) else {
        return Ok(Settings::default());
    };
    let path = root.join(FILE_NAME);
    if !path.is_file() {
        return Ok(Settings::default());
    }
    let text = super::source::read(&path).map_err(|why| format!("{}: {why}", path.display()))?;
    parse(&text, &path)
}

fn parse(text: &str, path: &Path) -> Result<Settings, String> {
    let values = super::yaml::parse_values(text).map_err(|(at, message)| {
        format!("{}:{}:{}: {message}", path.display(), at.line, at.column)
    })?;
    let mut settings = Settings {
        from: Some(path.to_path_buf()),
        ..Settings::default()
    };
    for value in values {
        let serde_json::Value::Object(entries) = value else {
            return Err(format!(
                "{}: expected a mapping such as `maxRemove: 10`",
                path.display()
            ));
        };
        for (key, value) in entries {
            match key.as_str() {
                "maxRemove" => {
                    settings.max_remove = Some(value.as_u64().ok_or_else(|| {
                        format!(
                            "{}: maxRemove is a whole number, not {value}",
                            path.display()
                        )
                    })?);
                }
                "ignoreFields" => settings.ignore_fields = ignore_fields(&value, path)?,
                other => {
                    return Err(format!(
                        "{}: unknown setting `{}`; perch.yaml takes maxRemove and ignoreFields",
                        path.display(),
                        crate::text::excerpt(other, 64)
                    ));
                }
            }
        }
    }
    Ok(settings)
}

/// `ignoreFields: {Room: [description], Category: [description]}`: each kind's fields, each
/// one a field the kind has.
fn ignore_fields(
    value: &serde_json::Value,
    path: &Path,
) -> Result<BTreeMap<Kind, BTreeSet<String>>, String> {
    let shape = || {
        format!(
            "{}: ignoreFields maps a kind to its fields, e.g. `ignoreFields: {{Room: [description]}}`",
            path.display()
        )
    };
    let serde_json::Value::Object(kinds) = value else {
        return Err(shape());
    };
    let mut ignored = BTreeMap::new();
    for (kind_name, fields) in kinds {
        let kind = Kind::parse(kind_name)
            .filter(|kind| *kind != Kind::ComplianceConfiguration)
            .ok_or_else(|| {
                format!(
                    "{}: ignoreFields: `{}` is not a kind; use Category, Room, Addin or Group",
                    path.display(),
                    crate::text::excerpt(kind_name, 64)
                )
            })?;
        let serde_json::Value::Array(fields) = fields else {
            return Err(shape());
        };
        let allowed = super::load::ignorable_fields(kind);
        let mut set = BTreeSet::new();
        for field in fields {
            let Some(field) = field.as_str().filter(|field| allowed.contains(field)) else {
                return Err(format!(
                    "{}: ignoreFields: a {kind} has no field {} to leave alone; it has {}",
                    path.display(),
                    crate::text::excerpt(&field.to_string(), 64),
                    allowed.join(", ")
                ));
            };
            set.insert(field.to_owned());
        }
        ignored.insert(kind, set);
    }
    Ok(ignored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_strictly() {
        let path = Path::new("perch.yaml");
        assert_eq!(parse("maxRemove: 5\n", path).unwrap().max_remove, Some(5));
        assert_eq!(parse("", path).unwrap().max_remove, None);
        assert!(
            parse("maxremove: 5\n", path)
                .unwrap_err()
                .contains("unknown setting `maxremove`")
        );
        assert!(
            parse("maxRemove: -1\n", path)
                .unwrap_err()
                .contains("whole number")
        );
        let settings = parse("ignoreFields:\n  Room: [description, members]\n", path).unwrap();
        assert_eq!(
            settings.ignore_fields[&Kind::Room],
            BTreeSet::from(["description".to_owned(), "members".to_owned()])
        );
        assert!(
            parse("ignoreFields:\n  Room: [name]\n", path)
                .unwrap_err()
                .contains("a Room has no field \"name\" to leave alone")
        );
        assert!(
            parse("ignoreFields:\n  Rooms: [description]\n", path)
                .unwrap_err()
                .contains("`Rooms` is not a kind")
        );
    }
}
