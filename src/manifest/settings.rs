//! `perch.yaml` at the manifests' root: the repository's defaults for the commands that read
//! them. It is not a manifest, and the manifest walk passes it over.

use std::path::{Path, PathBuf};

/// The file's name.
pub const FILE_NAME: &str = "perch.yaml";

/// What a repository may set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Plans that remove more objects than this are refused (`--max-remove` overrides it).
    pub max_remove: Option<u64>,
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
                other => {
                    return Err(format!(
                        "{}: unknown setting `{}`; perch.yaml takes maxRemove",
                        path.display(),
                        crate::text::excerpt(other, 64)
                    ));
                }
            }
        }
    }
    Ok(settings)
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
    }
}
