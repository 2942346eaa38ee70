//! Reading manifest files that anyone with write access to a repository may have written:
//! only regular files, within the given paths unless told otherwise, each within a size limit,
//! never echoed when they are not UTF-8 text.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The limits every manifest run stays within. Documented in the README; each error names the
/// limit it hit.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes in one file.
    pub file_bytes: u64,
    /// Bytes in all the files of one run.
    pub total_bytes: u64,
    /// YAML nodes in one file, aliases counted as many times as they are used: at most this,
    /// and at most [`NODES_PER_BYTE`] per byte of the file beyond the first
    /// [`NODES_ANY_FILE`] (see [`node_limit`]).
    pub nodes: usize,
    /// Nesting of sequences and mappings.
    pub depth: usize,
    /// Bytes in one scalar.
    pub scalar_bytes: usize,
    /// Documents in one file.
    pub documents: usize,
}

/// The limits of `validate`, `plan`, `apply` and `drift`: far above a 100,000-room export
/// (about 30 MB and 3 million nodes), far below what exhausts a CI runner.
pub const LIMITS: Limits = Limits {
    file_bytes: 256 << 20,
    total_bytes: 1 << 30,
    nodes: 10_000_000,
    depth: 64,
    scalar_bytes: 1 << 20,
    documents: 1_000_000,
};

/// Nodes any file may hold, whatever its size.
pub const NODES_ANY_FILE: usize = 1_000_000;
/// Nodes a file may hold per byte: plain YAML needs several bytes a node, so only aliases
/// used over and over come near this.
pub const NODES_PER_BYTE: usize = 16;

/// The most nodes a file of `bytes` may expand into: a small file cannot expand into millions
/// of nodes, and so cannot take much memory, however its aliases fan out.
pub fn node_limit(bytes: usize) -> usize {
    bytes
        .saturating_mul(NODES_PER_BYTE)
        .clamp(NODES_ANY_FILE, LIMITS.nodes)
}

/// How to treat symbolic links under the given paths.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Follow links that lead outside the given paths too.
    pub follow_symlinks: bool,
}

/// A problem with one path, before any YAML is read.
pub type PathProblem = (PathBuf, String);

/// The manifest files under `paths`: files given directly, and `*.yaml`/`*.yml` found in
/// directories (hidden entries skipped), sorted and without duplicates.
pub fn collect(paths: &[PathBuf], options: LoadOptions) -> (Vec<PathBuf>, Vec<PathProblem>) {
    let roots: Vec<PathBuf> = paths
        .iter()
        .filter_map(|path| std::fs::canonicalize(path).ok())
        .collect();
    let mut walk = Walk {
        roots,
        options,
        files: Vec::new(),
        problems: Vec::new(),
        visited: BTreeSet::new(),
        total_bytes: 0,
    };
    for path in paths {
        match std::fs::metadata(path) {
            Err(error) => walk.problem(path, format!("cannot read: {error}")),
            Ok(metadata) if metadata.is_dir() => walk.directory(path),
            Ok(metadata) if metadata.is_file() => walk.file(path, metadata.len()),
            Ok(_) => walk.problem(path, NOT_REGULAR.to_owned()),
        }
    }
    let mut files = walk.files;
    files.sort();
    files.dedup();
    if walk.total_bytes > LIMITS.total_bytes {
        let first = paths.first().cloned().unwrap_or_default();
        walk.problems.push((
            first,
            format!(
                "the manifests hold {} bytes in all, above the limit of {} bytes",
                walk.total_bytes, LIMITS.total_bytes
            ),
        ));
        files.clear();
    }
    (files, walk.problems)
}

const NOT_REGULAR: &str =
    "is not a regular file (a FIFO, socket or device); only regular files are read";

struct Walk {
    roots: Vec<PathBuf>,
    options: LoadOptions,
    files: Vec<PathBuf>,
    problems: Vec<PathProblem>,
    /// Directories already walked (canonical), so that a link loop ends.
    visited: BTreeSet<PathBuf>,
    total_bytes: u64,
}

impl Walk {
    fn problem(&mut self, path: &Path, message: String) {
        self.problems.push((path.to_path_buf(), message));
    }

    fn file(&mut self, path: &Path, len: u64) {
        self.total_bytes = self.total_bytes.saturating_add(len);
        self.files.push(path.to_path_buf());
    }

    fn directory(&mut self, path: &Path) {
        if let Ok(canonical) = std::fs::canonicalize(path)
            && !self.visited.insert(canonical)
        {
            return;
        }
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(error) => {
                self.problem(path, format!("cannot read the directory: {error}"));
                return;
            }
        };
        let mut children: Vec<_> = entries.flatten().collect();
        children.sort_by_key(std::fs::DirEntry::path);
        for entry in children {
            let child = entry.path();
            let hidden = child
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with('.'));
            if hidden {
                continue;
            }
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let manifest_named = child
                .extension()
                .and_then(|extension| extension.to_str())
                .is_some_and(|extension| extension == "yaml" || extension == "yml");
            if file_type.is_symlink() {
                self.link(&child, manifest_named);
            } else if file_type.is_dir() {
                self.directory(&child);
            } else if !manifest_named
                || child
                    .file_name()
                    .is_some_and(|name| name == super::settings::FILE_NAME)
            {
                // Not a manifest: README files, scripts, the repository's perch.yaml.
            } else if file_type.is_file() {
                let len = entry.metadata().map_or(0, |metadata| metadata.len());
                self.file(&child, len);
            } else {
                self.problem(&child, NOT_REGULAR.to_owned());
            }
        }
    }

    fn link(&mut self, link: &Path, manifest_named: bool) {
        let Ok(target) = std::fs::canonicalize(link) else {
            if manifest_named {
                self.problem(link, "is a broken symbolic link".to_owned());
            }
            return;
        };
        let inside = self.roots.iter().any(|root| target.starts_with(root));
        let Ok(metadata) = std::fs::metadata(&target) else {
            return;
        };
        if !metadata.is_dir() && !manifest_named {
            return;
        }
        if !inside && !self.options.follow_symlinks {
            // Where it leads is not shown: a link is how a pull request would read a secret.
            self.problem(
                link,
                "is a symbolic link to a place outside the given paths; pass --follow-symlinks to read it"
                    .to_owned(),
            );
            return;
        }
        if metadata.is_dir() {
            self.directory(link);
        } else if metadata.is_file() {
            self.file(link, metadata.len());
        } else {
            self.problem(link, NOT_REGULAR.to_owned());
        }
    }
}

/// Reads one manifest file: a regular file within [`Limits::file_bytes`], UTF-8 text, a
/// leading byte-order mark (as Windows editors save) dropped.
///
/// # Errors
/// A message for the person, which never quotes the content.
pub fn read(path: &Path) -> Result<String, String> {
    let text = String::from_utf8(read_bytes(path)?).map_err(|error| {
        format!(
            "is not UTF-8 text (invalid byte at offset {})",
            error.utf8_error().valid_up_to()
        )
    })?;
    Ok(match text.strip_prefix('\u{FEFF}') {
        Some(rest) => rest.to_owned(),
        None => text,
    })
}

/// The bytes of one manifest file, as [`read`] reads them before it checks that they are
/// text: a regular file within [`Limits::file_bytes`].
///
/// # Errors
/// A message for the person, which never quotes the content.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|error| format!("cannot read: {error}"))?;
    let metadata = file
        .metadata()
        .map_err(|error| format!("cannot read: {error}"))?;
    if !metadata.is_file() {
        return Err(NOT_REGULAR.to_owned());
    }
    // Sized once (one byte more, to see the end): growing it by doubling copied every file
    // several times over.
    let expected = metadata.len().min(LIMITS.file_bytes) + 1;
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(LIMITS.file_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read: {error}"))?;
    if bytes.len() as u64 > LIMITS.file_bytes {
        return Err(format!(
            "is larger than the limit of {} bytes for one manifest file",
            LIMITS.file_bytes
        ));
    }
    Ok(bytes)
}
