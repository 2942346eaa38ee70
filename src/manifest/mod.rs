//! Manifests: YAML files describing the desired configuration.
//!
//! `load` reads files and directories, checks each document against the JSON Schema and then
//! for meaning (references resolve, members fall within their category's scope, names are
//! unique), and returns either the [`Desired`] state or every problem found, each with its
//! file, line and column. Only `load` builds a `Desired`, so a `Desired` is always valid.

pub mod docs;
mod load;
pub mod settings;
pub mod source;
pub mod yaml;
mod yaml_subset;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::domain::Kind;

pub use load::{
    Problem, SourceFile, fingerprint, load, load_texts, load_with, load_with_sources,
    render_problems,
};
pub use source::{LIMITS, LoadOptions};
pub use yaml::Position;

/// The one manifest API version, and the line export writes at the top of every file.
pub const API_VERSION: &str = "perch/v1";

/// Where a document came from: its file and its index among the file's documents.
///
/// Positions are worked out only when a problem needs one, so that loading large manifests
/// does not pay for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<PathBuf>,
    pub document: usize,
}

/// One object a manifest names, with only the fields it manages.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObject {
    pub kind: Kind,
    /// Empty for the compliance configuration.
    pub name: String,
    /// The managed fields, normalised (principals lower-cased, lists sorted and deduplicated),
    /// named as the API names them. `apiVersion`, `kind` and `protect` are not among them.
    pub fields: Map<String, Value>,
    pub protect: bool,
    /// Names it had before (`previousNames`), newest last: the plan renames a live object of
    /// one of these names instead of creating this one.
    pub previous_names: Vec<String>,
    /// Fields whose live value is left alone (`ignoreFields`); they stay in `fields` for a
    /// creation.
    pub ignore_fields: Vec<String>,
    /// Principal lists managed additively (`membership: {members: additive}`): their entries
    /// are ensured, others on the server kept.
    pub additive: Vec<String>,
    pub origin: Origin,
}

/// The configuration the manifests ask for. Built only by [`load`] (its fields are private to
/// `manifest/`), so every desired state the plan engine sees passed every check.
#[derive(Clone, Debug)]
pub struct Desired {
    pub(in crate::manifest) objects: BTreeMap<(Kind, String), DesiredObject>,
    pub(in crate::manifest) compliance: Option<DesiredObject>,
    /// Objects `kind: Forget` documents let go of: unmarked, never removed.
    pub(in crate::manifest) forget: BTreeMap<(Kind, String), Origin>,
}

impl Desired {
    pub(in crate::manifest) fn empty() -> Desired {
        Desired {
            objects: BTreeMap::new(),
            compliance: None,
            forget: BTreeMap::new(),
        }
    }

    /// The objects `kind: Forget` documents name, with where each is named.
    pub fn forget(&self) -> &BTreeMap<(Kind, String), Origin> {
        &self.forget
    }

    /// The named objects, by kind and name.
    pub fn objects(&self) -> &BTreeMap<(Kind, String), DesiredObject> {
        &self.objects
    }

    /// The compliance configuration, when a manifest sets it.
    pub fn compliance(&self) -> Option<&DesiredObject> {
        self.compliance.as_ref()
    }

    pub fn len(&self) -> usize {
        self.objects.len() + usize::from(self.compliance.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a field of a document stood: the file is read and parsed again, as problems are
/// placed, since the fast path that loaded it kept no positions. `pointer` is a JSON pointer
/// (`/members`); a field the document does not have places at its nearest parent.
pub fn locate(origin: &Origin, pointer: &str) -> Position {
    let Ok(text) = source::read(&origin.file) else {
        return Position { line: 1, column: 1 };
    };
    let Ok(trees) = yaml::parse_documents(&text) else {
        return Position { line: 1, column: 1 };
    };
    let Some(tree) = trees.get(origin.document) else {
        return Position { line: 1, column: 1 };
    };
    let mut positions = yaml::Positions::default();
    yaml::to_json(tree, &mut positions);
    let at = positions.key(pointer);
    if at == (Position { line: 1, column: 1 }) && origin.document > 0 {
        return yaml::document_start(tree);
    }
    at
}

/// The kind for a collection directory or a `kind:` value.
pub fn kind_from_manifest(text: &str) -> Option<Kind> {
    Kind::parse(text)
}

#[cfg(test)]
mod tests;
