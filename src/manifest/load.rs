//! Reading manifest files and checking them: syntax, JSON Schema, meaning.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::docs::{self, AddinDoc, CategoryDoc, ComplianceDoc, GroupDoc, RoomDoc};
use super::yaml::{self, Node, Position, Positions};
use super::{API_VERSION, Desired, DesiredObject, Origin};
use crate::domain::{Category, Directory, Kind, Principal, normalise_list};
use crate::service::Object;

/// One thing wrong with the manifests, where it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: PathBuf,
    pub position: Position,
    pub message: String,
}

/// Reads every manifest under `paths` (files, or directories searched for `*.yaml` and
/// `*.yml`) and checks them.
///
/// # Errors
/// Every problem found, sorted by file and position. A file that cannot be read is one of them.
pub fn load(paths: &[PathBuf]) -> Result<Desired, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files, &mut problems);
    }
    files.sort();
    files.dedup();
    if files.is_empty() && problems.is_empty() {
        problems.push(Problem {
            file: paths.first().cloned().unwrap_or_default(),
            position: Position::default(),
            message: "no manifest files (*.yaml, *.yml) found".to_owned(),
        });
    }

    let per_file = check_files_in_parallel(&files);
    let mut documents = Vec::new();
    for (mut file_problems, file_documents) in per_file {
        problems.append(&mut file_problems);
        documents.extend(file_documents);
    }

    let desired = assemble(documents, &mut problems);
    if problems.is_empty() {
        Ok(desired)
    } else {
        problems.sort();
        problems.dedup();
        Err(problems)
    }
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>, problems: &mut Vec<Problem>) {
    let problem = |message: String| Problem {
        file: path.to_path_buf(),
        position: Position::default(),
        message,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            problems.push(problem(format!("cannot read: {error}")));
            return;
        }
    };
    if metadata.is_file() {
        files.push(path.to_path_buf());
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(problem(format!("cannot read the directory: {error}")));
            return;
        }
    };
    for entry in entries.flatten() {
        let child = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let hidden = child
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if is_dir {
            collect_files(&child, files, problems);
        } else if child
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml")
        {
            files.push(child);
        }
    }
}

/// What one file yields: problems, and the documents that passed the per-document checks.
type FileOutcome = (Vec<Problem>, Vec<(DesiredObject, Positions)>);

fn check_files_in_parallel(files: &[PathBuf]) -> Vec<FileOutcome> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads <= 1 || files.len() < 2 {
        return files.iter().map(|file| check_file(file)).collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|file| check_file(file)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_default())
            .collect()
    })
}

fn check_file(path: &Path) -> FileOutcome {
    let file = Arc::new(path.to_path_buf());
    let mut problems = Vec::new();
    let mut documents = Vec::new();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            problems.push(Problem {
                file: path.to_path_buf(),
                position: Position::default(),
                message: format!("cannot read: {error}"),
            });
            return (problems, documents);
        }
    };
    let trees = match yaml::parse_documents(&text) {
        Ok(trees) => trees,
        Err((position, message)) => {
            problems.push(Problem {
                file: path.to_path_buf(),
                position,
                message: format!("invalid YAML: {message}"),
            });
            return (problems, documents);
        }
    };
    for tree in &trees {
        let mut positions = Positions::default();
        let start = positions_start(tree);
        let json = yaml::to_json(tree, &mut positions);
        let mut report = |position: Position, message: String| {
            problems.push(Problem {
                file: path.to_path_buf(),
                position,
                message,
            });
        };
        let origin = Origin {
            file: file.clone(),
            position: start,
        };
        if let Some(object) = check_document(json, &positions, origin, &mut report) {
            documents.push((object, positions));
        }
    }
    (problems, documents)
}

fn positions_start(tree: &serde_saphyr::Spanned<Node>) -> Position {
    match &tree.value {
        Node::Mapping(entries) => entries.first().map_or(
            Position {
                line: u32::try_from(tree.referenced.line()).unwrap_or(1),
                column: 1,
            },
            |(key, _)| Position {
                line: u32::try_from(key.referenced.line()).unwrap_or(1),
                column: u32::try_from(key.referenced.column()).unwrap_or(1),
            },
        ),
        _ => Position {
            line: u32::try_from(tree.referenced.line()).unwrap_or(1),
            column: u32::try_from(tree.referenced.column()).unwrap_or(1),
        },
    }
}

struct Validators {
    by_kind: HashMap<Kind, jsonschema::Validator>,
}

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let schema = docs::json_schema();
        let definitions = schema.get("$defs").cloned().unwrap_or_default();
        let mut by_kind = HashMap::new();
        for (kind, definition) in [
            (Kind::Category, "CategoryDoc"),
            (Kind::Room, "RoomDoc"),
            (Kind::Addin, "AddinDoc"),
            (Kind::Group, "GroupDoc"),
            (Kind::ComplianceConfiguration, "ComplianceDoc"),
        ] {
            let subschema = serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": format!("#/$defs/{definition}"),
                "$defs": definitions,
            });
            // The schema is generated from our own types; failing to compile it is a bug.
            let validator = jsonschema::validator_for(&subschema).unwrap_or_else(|error| {
                panic!("the generated schema for {definition} does not compile: {error}")
            });
            by_kind.insert(kind, validator);
        }
        Validators { by_kind }
    })
}

fn check_document(
    json: Value,
    positions: &Positions,
    origin: Origin,
    report: &mut impl FnMut(Position, String),
) -> Option<DesiredObject> {
    let Value::Object(map) = &json else {
        report(
            positions.value(""),
            "a document must be a mapping with `apiVersion: perch/v1` and `kind`".to_owned(),
        );
        return None;
    };
    match map.get("apiVersion") {
        None => {
            report(
                origin.position,
                format!("missing `apiVersion: {API_VERSION}`"),
            );
            return None;
        }
        Some(Value::String(version)) if version == API_VERSION => {}
        Some(other) => {
            report(
                positions.value("/apiVersion"),
                format!("unsupported apiVersion {other}; this perch reads `{API_VERSION}`"),
            );
            return None;
        }
    }
    let kind = match map.get("kind") {
        None => {
            report(
                origin.position,
                "missing `kind`: one of Category, Room, Addin, Group, ComplianceConfiguration"
                    .to_owned(),
            );
            return None;
        }
        Some(Value::String(text)) => match Kind::parse(text) {
            Some(kind) => kind,
            None => {
                report(
                    positions.value("/kind"),
                    format!(
                        "unknown kind `{text}`; expected Category, Room, Addin, Group or ComplianceConfiguration"
                    ),
                );
                return None;
            }
        },
        Some(other) => {
            report(
                positions.value("/kind"),
                format!("`kind` must be a string, not {other}"),
            );
            return None;
        }
    };

    let validator = &validators().by_kind[&kind];
    if !validator.is_valid(&json) {
        for error in validator.iter_errors(&json) {
            let pointer = error.instance_path().as_str().to_owned();
            let (position, message) = match error.kind() {
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let field = unexpected.first().cloned().unwrap_or_default();
                    (
                        positions.key(&format!("{pointer}/{field}")),
                        format!("unknown field `{}` in a {kind}", unexpected.join("`, `")),
                    )
                }
                jsonschema::error::ValidationErrorKind::Required { property } => (
                    if pointer.is_empty() {
                        origin.position
                    } else {
                        positions.value(&pointer)
                    },
                    format!("missing required field {property} in a {kind}"),
                ),
                _ => {
                    let field = if pointer.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", pointer.trim_start_matches('/').replace('/', "."))
                    };
                    (positions.value(&pointer), format!("{field}{error}"))
                }
            };
            report(position, message);
        }
        return None;
    }

    let (name, fields, protect) = match kind {
        Kind::Category => {
            typed_fields::<CategoryDoc>(&json, positions, report, |d| (d.name.clone(), d.protect))?
        }
        Kind::Room => {
            typed_fields::<RoomDoc>(&json, positions, report, |d| (d.name.clone(), d.protect))?
        }
        Kind::Addin => {
            typed_fields::<AddinDoc>(&json, positions, report, |d| (d.name.clone(), d.protect))?
        }
        Kind::Group => {
            typed_fields::<GroupDoc>(&json, positions, report, |d| (d.name.clone(), d.protect))?
        }
        Kind::ComplianceConfiguration => {
            typed_fields::<ComplianceDoc>(&json, positions, report, |d| (String::new(), d.protect))?
        }
    };

    // The rules that need nothing but the object: names, URLs, lengths.
    if kind != Kind::ComplianceConfiguration {
        match Object::from_json(kind, Value::Object(fields.clone())) {
            Ok(object) => {
                for problem in object.problems() {
                    let pointer = format!("/{}", problem.field);
                    report(positions.value(&pointer), problem.message);
                }
            }
            Err(error) => {
                let pointer = format!(
                    "/{}",
                    error
                        .path()
                        .to_string()
                        .replace('.', "/")
                        .replace('[', "/")
                        .replace(']', "")
                );
                report(positions.value(&pointer), error.inner().to_string());
            }
        }
    }
    Some(DesiredObject {
        kind,
        name,
        fields,
        protect,
        origin,
    })
}

/// Deserialises a schema-valid document into its type (which normalises principals), and
/// returns its name, its managed fields as the API names them, and `protect`.
fn typed_fields<T: DeserializeOwned + serde::Serialize>(
    json: &Value,
    positions: &Positions,
    report: &mut impl FnMut(Position, String),
    name_and_protect: impl Fn(&T) -> (String, Option<bool>),
) -> Option<(String, Map<String, Value>, bool)> {
    let typed: T = match serde_path_to_error::deserialize(json) {
        Ok(typed) => typed,
        Err(error) => {
            let pointer = json_pointer(&error.path().to_string());
            let message = error.inner().to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            report(positions.value(&pointer), message);
            return None;
        }
    };
    let (name, protect) = name_and_protect(&typed);
    let Ok(Value::Object(mut fields)) = serde_json::to_value(&typed) else {
        return None;
    };
    fields.remove("apiVersion");
    fields.remove("kind");
    fields.remove("protect");
    for value in fields.values_mut() {
        if let Value::Array(items) = value {
            let mut principals: Vec<Principal> = items
                .iter()
                .filter_map(|item| item.as_str().and_then(|text| Principal::parse(text).ok()))
                .collect();
            normalise_list(&mut principals);
            *items = principals
                .iter()
                .map(|p| Value::String(p.to_string()))
                .collect();
        }
    }
    Some((name, fields, protect.unwrap_or(false)))
}

/// `members[2]` -> `/members/2`.
fn json_pointer(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    let mut pointer = String::new();
    for segment in path.split('.') {
        let mut rest = segment;
        if let Some(open) = rest.find('[') {
            pointer.push('/');
            pointer.push_str(&rest[..open]);
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                pointer.push('/');
                pointer.push_str(&rest[1..close]);
                rest = &rest[close + 1..];
            }
        } else {
            pointer.push('/');
            pointer.push_str(rest);
        }
    }
    pointer
}

/// Joins the documents of every file and checks what needs all of them: unique names,
/// references, scopes, group cycles.
fn assemble(documents: Vec<(DesiredObject, Positions)>, problems: &mut Vec<Problem>) -> Desired {
    let mut desired = Desired::default();
    let mut positions_of: HashMap<(Kind, String), Positions> = HashMap::new();
    for (object, positions) in documents {
        let at = |pointer: &str| positions.value(pointer);
        if object.kind == Kind::ComplianceConfiguration {
            if let Some(first) = &desired.compliance {
                problems.push(Problem {
                    file: object.origin.file.to_path_buf(),
                    position: object.origin.position,
                    message: format!(
                        "a second ComplianceConfiguration; the first is at {}",
                        first.origin
                    ),
                });
            } else {
                desired.compliance = Some(object);
            }
            continue;
        }
        let key = (object.kind, object.name.clone());
        if let Some(first) = desired.objects.get(&key) {
            problems.push(Problem {
                file: object.origin.file.to_path_buf(),
                position: at("/name"),
                message: format!(
                    "{} `{}` is defined twice; the first is at {}",
                    object.kind, object.name, first.origin
                ),
            });
            continue;
        }
        positions_of.insert(key.clone(), positions);
        desired.objects.insert(key, object);
    }

    let groups: BTreeMap<String, Vec<Principal>> = desired
        .objects
        .values()
        .filter(|object| object.kind == Kind::Group)
        .map(|object| (object.name.clone(), principals(&object.fields, "members")))
        .collect();
    let directory = Directory::new(groups.clone());
    let categories: HashMap<&str, Category> = desired
        .objects
        .values()
        .filter(|object| object.kind == Kind::Category)
        .filter_map(|object| {
            let value = Value::Object(object.fields.clone());
            match Object::from_json(Kind::Category, value) {
                Ok(Object::Category(category)) => Some((object.name.as_str(), category)),
                _ => None,
            }
        })
        .collect();

    for ((kind, name), object) in &desired.objects {
        let positions = &positions_of[&(*kind, name.clone())];
        let mut report = |pointer: &str, message: String| {
            problems.push(Problem {
                file: object.origin.file.to_path_buf(),
                position: positions.value(pointer),
                message,
            });
        };
        // Every group a list names must be defined.
        for (field, value) in &object.fields {
            let Value::Array(items) = value else { continue };
            for (index, item) in items.iter().enumerate() {
                if let Some(group) = item.as_str().and_then(|text| text.strip_prefix("group:")) {
                    if !groups.contains_key(group) {
                        report(
                            &find_item_pointer(positions, field, item, index),
                            format!("group `{group}` is not defined in the manifests"),
                        );
                    }
                }
            }
        }
        match kind {
            Kind::Room => {
                let category_name = object
                    .fields
                    .get("category")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match categories.get(category_name) {
                    None => report(
                        "/category",
                        format!("category `{category_name}` is not defined in the manifests"),
                    ),
                    Some(category) => {
                        let scope_managed =
                            object_fields_of(&desired, Kind::Category, category_name)
                                .is_some_and(|fields| fields.contains_key("allowedMembers"));
                        if scope_managed {
                            for field in ["members", "managers", "presenters"] {
                                for principal in principals(&object.fields, field) {
                                    if !category.admits(&directory, &principal) {
                                        let item = Value::String(principal.to_string());
                                        report(
                                            &find_item_pointer(positions, field, &item, 0),
                                            format!(
                                                "{field}: `{principal}` is not within category `{category_name}`'s allowedMembers (or is denied)"
                                            ),
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
                if let Some(Value::String(addin)) = object.fields.get("addin") {
                    if !desired.objects.contains_key(&(Kind::Addin, addin.clone())) {
                        report(
                            "/addin",
                            format!("add-in `{addin}` is not defined in the manifests"),
                        );
                    }
                }
            }
            Kind::Category => {
                if let Some(category) = categories.get(name.as_str()) {
                    if object.fields.contains_key("allowedMembers") {
                        for creator in &category.creators {
                            if !category.admits(&directory, creator) {
                                let item = Value::String(creator.to_string());
                                report(
                                    &find_item_pointer(positions, "creators", &item, 0),
                                    format!(
                                        "creators: `{creator}` is not within this category's allowedMembers (or is denied)"
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            Kind::Group => {
                if let Some(cycle) = group_cycle(name, &groups) {
                    report(
                        "/members",
                        format!(
                            "groups contain each other in a cycle: {}",
                            cycle.join(" -> ")
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    desired
}

fn object_fields_of<'a>(
    desired: &'a Desired,
    kind: Kind,
    name: &str,
) -> Option<&'a Map<String, Value>> {
    desired
        .objects
        .get(&(kind, name.to_owned()))
        .map(|object| &object.fields)
}

fn principals(fields: &Map<String, Value>, field: &str) -> Vec<Principal> {
    fields
        .get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().and_then(|text| Principal::parse(text).ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// The pointer of a list item in the original document. Lists were sorted after parsing, so
/// the item is found by its normalised value among the original entries.
fn find_item_pointer(positions: &Positions, field: &str, item: &Value, fallback: usize) -> String {
    let _ = (item, fallback);
    positions
        .find_list_item(field, item.as_str().unwrap_or_default())
        .unwrap_or_else(|| format!("/{field}"))
}

fn group_cycle(start: &str, groups: &BTreeMap<String, Vec<Principal>>) -> Option<Vec<String>> {
    fn walk(
        current: &str,
        start: &str,
        groups: &BTreeMap<String, Vec<Principal>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for member in groups.get(current).into_iter().flatten() {
            if let Principal::Group(next) = member {
                if next == start {
                    path.push(next.clone());
                    return true;
                }
                if seen.insert(next.clone()) {
                    path.push(next.clone());
                    if walk(next, start, groups, path, seen) {
                        return true;
                    }
                    path.pop();
                }
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    let mut seen = BTreeSet::new();
    walk(start, start, groups, &mut path, &mut seen).then_some(path)
}

/// Prints problems as `file:line:col: message`, each followed by the offending line and a caret.
pub fn render_problems(problems: &[Problem]) -> String {
    let mut sources: HashMap<&Path, Option<String>> = HashMap::new();
    let mut out = String::new();
    for problem in problems {
        let Position { line, column } = problem.position;
        if line == 0 {
            out.push_str(&format!(
                "{}: {}\n",
                problem.file.display(),
                problem.message
            ));
            continue;
        }
        out.push_str(&format!(
            "{}:{line}:{column}: {}\n",
            problem.file.display(),
            problem.message
        ));
        let source = sources
            .entry(problem.file.as_path())
            .or_insert_with(|| std::fs::read_to_string(&problem.file).ok());
        if let Some(text) = source
            .as_deref()
            .and_then(|text| text.lines().nth(line as usize - 1))
        {
            let gutter = line.to_string();
            out.push_str(&format!("  {gutter} | {text}\n"));
            let pad: String = text
                .chars()
                .take(column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("  {} | {pad}^\n", " ".repeat(gutter.len())));
        }
    }
    out
}
