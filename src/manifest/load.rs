//! Reading manifest files and checking them: syntax, JSON Schema, meaning.
//!
//! The fast path parses YAML straight into JSON values. Positions are found only for the
//! documents that have problems, by parsing their file again with spans.

use crate::domain::access;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use super::docs;
use super::source::{self, LoadOptions};
use super::yaml::{self, Position, Positions};
use super::{API_VERSION, Desired, DesiredObject, Origin};
use crate::domain::{self, Category, Directory, FieldProblem, Kind, Principal};

/// One thing wrong with the manifests, where it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: PathBuf,
    pub position: Position,
    pub message: String,
}

/// Where in a document a problem is.
#[derive(Clone, Debug)]
enum Locator {
    /// The document's first key.
    Document,
    /// The value at a JSON pointer.
    Value(String),
    /// The key of the entry at a JSON pointer.
    Key(String),
    /// The entry of a list whose normalised text is given.
    ListItem { field: String, normalised: String },
}

/// A problem whose position is not worked out yet.
#[derive(Clone, Debug)]
struct Pending {
    file: Arc<PathBuf>,
    /// `None` for problems of the whole file (unreadable, syntax error with its own position).
    document: Option<usize>,
    locator: Locator,
    message: String,
    /// Another document the message refers to ("the first is at ..."), appended on resolving.
    first_at: Option<Origin>,
    known: Option<Position>,
}

impl Pending {
    fn in_document(origin: &Origin, locator: Locator, message: String) -> Pending {
        Pending {
            file: origin.file.clone(),
            document: Some(origin.document),
            locator,
            message,
            first_at: None,
            known: None,
        }
    }

    fn in_file(file: &Arc<PathBuf>, position: Position, message: String) -> Pending {
        Pending {
            file: file.clone(),
            document: None,
            locator: Locator::Document,
            message,
            first_at: None,
            known: Some(position),
        }
    }
}

/// Reads every manifest under `paths` (files, or directories searched for `*.yaml` and
/// `*.yml`) and checks them, within [`source::LIMITS`], following symbolic links only within
/// `paths`.
///
/// # Errors
/// Every problem found, sorted by file and position. A file that cannot be read is one of them.
pub fn load(paths: &[PathBuf]) -> Result<Desired, Vec<Problem>> {
    load_with(paths, LoadOptions::default())
}

/// [`load`], with symbolic links treated as `options` say.
///
/// # Errors
/// As [`load`].
pub fn load_with(paths: &[PathBuf], options: LoadOptions) -> Result<Desired, Vec<Problem>> {
    let (files, pending) = collect(paths, options);
    // Each file is read by the thread that checks it, and its text dropped once checked.
    check_inputs(&files, pending, &|path: &Path| source::read(path).ok())
}

/// A digest of the manifest files under `paths` as [`load_with`] would read them: each file's
/// path and the SHA-256 of its bytes, in order. `None` when a path has a problem or a file
/// cannot be read (what fails is then never cached). What `perch plan`'s cache is keyed by.
pub fn fingerprint(paths: &[PathBuf], options: LoadOptions) -> Option<String> {
    use sha2::Digest;
    let (files, path_problems) = source::collect(paths, options);
    if !path_problems.is_empty() || files.is_empty() {
        return None;
    }
    // Each file is read and hashed on its own, on every core (a cached plan's time is mostly
    // this), and then the paths with their digests, in order.
    // The bytes as they are: a file that is not text makes the plan fail, and a failed plan
    // is never stored, so its key is never found.
    let digest_of = |path: &PathBuf| -> Option<[u8; 32]> {
        let bytes = source::read_bytes(path).ok()?;
        Some(sha2::Sha256::digest(&bytes).into())
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8)
        .min(files.len());
    let per_thread = files.len().div_ceil(threads);
    let digests: Vec<Option<[u8; 32]>> = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().map(digest_of).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    // A thread that failed left its files out: no fingerprint, no cache.
    if digests.len() != files.len() {
        return None;
    }
    let mut hash = sha2::Sha256::new();
    for (path, digest) in files.iter().zip(digests) {
        hash.update(path.as_os_str().as_encoded_bytes());
        hash.update([0]);
        hash.update(digest?);
    }
    Some(crate::text::hex(&hash.finalize()))
}

/// The files under `paths`, and the problems of the paths themselves.
fn collect(paths: &[PathBuf], options: LoadOptions) -> (Vec<PathBuf>, Vec<Pending>) {
    let (files, path_problems) = source::collect(paths, options);
    let mut pending: Vec<Pending> = path_problems
        .into_iter()
        .map(|(path, message)| Pending::in_file(&Arc::new(path), Position::default(), message))
        .collect();
    if files.is_empty() && pending.is_empty() {
        let file = Arc::new(paths.first().cloned().unwrap_or_default());
        pending.push(Pending::in_file(
            &file,
            Position::default(),
            "no manifest files (*.yaml, *.yml) found".to_owned(),
        ));
    }
    (files, pending)
}

/// A manifest to check: a file (read when it is checked) or a text already in hand.
trait Input: Sync {
    fn path(&self) -> &Path;
    fn text(&self) -> Result<std::borrow::Cow<'_, str>, String>;
}

impl Input for PathBuf {
    fn path(&self) -> &Path {
        self
    }

    fn text(&self) -> Result<std::borrow::Cow<'_, str>, String> {
        source::read(self).map(std::borrow::Cow::Owned)
    }
}

impl Input for SourceFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn text(&self) -> Result<std::borrow::Cow<'_, str>, String> {
        Ok(std::borrow::Cow::Borrowed(&self.text))
    }
}

/// A manifest file as it was read: its path and its text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// [`load_with`], returning the files' texts as they were checked too: what `perch apply`
/// records for the Git view is exactly what it applied.
///
/// # Errors
/// As [`load`].
pub fn load_with_sources(
    paths: &[PathBuf],
    options: LoadOptions,
) -> Result<(Desired, Vec<SourceFile>), Vec<Problem>> {
    let (files, mut pending) = collect(paths, options);
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        match source::read(&path) {
            Ok(text) => sources.push(SourceFile { path, text }),
            Err(message) => {
                pending.push(Pending::in_file(
                    &Arc::new(path),
                    Position::default(),
                    message,
                ));
            }
        }
    }
    check_sources(&sources, pending).map(|desired| (desired, sources))
}

/// Checks manifests given as text (pasted into the panel's plan preview, or recorded by an
/// apply), each named by a path for its problems, within the same limits as files.
///
/// # Errors
/// As [`load`].
pub fn load_texts(files: &[SourceFile]) -> Result<Desired, Vec<Problem>> {
    let mut pending = Vec::new();
    let mut total = 0u64;
    for file in files {
        total += file.text.len() as u64;
        if file.text.len() as u64 > source::LIMITS.file_bytes {
            pending.push(Pending::in_file(
                &Arc::new(file.path.clone()),
                Position::default(),
                format!(
                    "is larger than the limit of {} bytes for one manifest file",
                    source::LIMITS.file_bytes
                ),
            ));
        }
    }
    if total > source::LIMITS.total_bytes {
        pending.push(Pending::in_file(
            &Arc::new(PathBuf::new()),
            Position::default(),
            format!(
                "the manifests are larger than the limit of {} bytes in all",
                source::LIMITS.total_bytes
            ),
        ));
    }
    if !pending.is_empty() {
        return Err(resolve(pending, &|_| None));
    }
    check_sources(files, pending)
}

fn check_sources(sources: &[SourceFile], pending: Vec<Pending>) -> Result<Desired, Vec<Problem>> {
    let by_path: HashMap<&Path, &str> = sources
        .iter()
        .map(|source| (source.path.as_path(), source.text.as_str()))
        .collect();
    check_inputs(sources, pending, &|path: &Path| {
        by_path.get(path).map(|text| (*text).to_owned())
    })
}

/// Checks every input, assembles the desired state, or places every problem (`text_of` gives
/// a file's text again for the positions, once per file with a problem).
fn check_inputs<I: Input>(
    inputs: &[I],
    mut pending: Vec<Pending>,
    text_of: &dyn Fn(&Path) -> Option<String>,
) -> Result<Desired, Vec<Problem>> {
    let started = std::time::Instant::now();
    let mut documents = Vec::new();
    for (mut file_pending, file_documents) in check_all(inputs, check_input) {
        pending.append(&mut file_pending);
        documents.extend(file_documents);
    }
    tracing::debug!(files = inputs.len(), documents = documents.len(), elapsed = ?started.elapsed(), "checked each file");
    let desired = assemble(documents, &mut pending);
    if pending.is_empty() {
        Ok(desired)
    } else {
        let mut problems = resolve(pending, text_of);
        problems.sort();
        problems.dedup();
        Err(problems)
    }
}

/// What one document is, once checked.
enum Checked {
    Object(DesiredObject),
    /// A `kind: Forget` document: the object it lets go of.
    Forget(Kind, String, Origin),
}

type FileOutcome = (Vec<Pending>, Vec<Checked>);

/// Checks every file, on up to eight threads. A file whose check panics, or that a failed
/// thread left unchecked, becomes an error naming it, never an empty result: an empty result
/// would let `plan` propose removing everything the file describes.
fn check_all<I: Input>(files: &[I], check: impl Fn(&I) -> FileOutcome + Sync) -> Vec<FileOutcome> {
    let guarded = |file: &I| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(file)))
            .unwrap_or_else(|panic| unchecked(file.path(), &panic_text(panic.as_ref())))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8);
    if threads <= 1 || files.len() < 2 {
        return files.iter().map(&guarded).collect();
    }
    // Files vary in size; taking them from a shared counter keeps both cores busy.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut outcomes: Vec<Option<FileOutcome>> = files.iter().map(|_| None).collect();
    let finished: Vec<(usize, FileOutcome)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(file) = files.get(index) else { break };
                        mine.push((index, guarded(file)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    for (index, outcome) in finished {
        outcomes[index] = Some(outcome);
    }
    outcomes
        .into_iter()
        .zip(files)
        .map(|(outcome, file)| {
            outcome.unwrap_or_else(|| unchecked(file.path(), "its checking thread stopped"))
        })
        .collect()
}

fn unchecked(file: &Path, why: &str) -> FileOutcome {
    let message = format!("perch could not check this file ({why}); this is a bug in perch");
    let pending = Pending::in_file(&Arc::new(file.to_path_buf()), Position::default(), message);
    (vec![pending], Vec::new())
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "it panicked".to_owned())
}

fn check_input<I: Input>(input: &I) -> FileOutcome {
    let file = Arc::new(input.path().to_path_buf());
    let mut pending = Vec::new();
    let mut documents = Vec::new();
    let text = match input.text() {
        Ok(text) => text,
        Err(message) => {
            pending.push(Pending::in_file(&file, Position::default(), message));
            return (pending, documents);
        }
    };
    let text = text.as_ref();
    let values: Vec<Value> = match yaml::parse_values(text) {
        Ok(values) => values,
        Err((fast_position, fast_message)) => {
            // The spanned parser places the error better; the fast one words it for people.
            let position = match yaml::parse_documents(text) {
                Err((position, _)) => position,
                Ok(_) => fast_position,
            };
            let message = fast_message;
            pending.push(Pending::in_file(
                &file,
                position,
                format!("invalid YAML: {message}"),
            ));
            return (pending, documents);
        }
    };
    for (document, json) in values.into_iter().enumerate() {
        let origin = Origin {
            file: file.clone(),
            document,
        };
        let mut report = |locator: Locator, message: String| {
            pending.push(Pending::in_document(&origin, locator, message));
        };
        if let Some(checked) = check_document(json, origin.clone(), &mut report) {
            documents.push(checked);
        }
    }
    (pending, documents)
}

struct Validators {
    by_kind: HashMap<Kind, KindValidators>,
    forget: jsonschema::Validator,
}

/// A kind's document schema, and the same schema without the principals' pattern.
///
/// A manifest of a hundred thousand rooms holds a million principals, and matching each
/// against the pattern was a tenth of checking it. A principal written as it is stored
/// (`sip:ana@contoso.com`, what [`written_normalised`] accepts) always matches the pattern,
/// so a document whose principals are all so written is checked against the schema without
/// it; any other is checked against the whole schema, which also words every problem.
struct KindValidators {
    whole: jsonschema::Validator,
    without_principal_pattern: jsonschema::Validator,
    /// The fields that are lists of principals.
    principal_lists: Vec<String>,
}

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let schema = docs::json_schema();
        let definitions = schema.get("$defs").cloned().unwrap_or_default();
        let mut without_principal_pattern = definitions.clone();
        if let Some(Value::Object(principal)) = without_principal_pattern.get_mut("Principal") {
            principal.remove("pattern");
        }
        let compile = |definition: &str, definitions: &Value| {
            let subschema = serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": format!("#/$defs/{definition}"),
                "$defs": definitions,
            });
            // The schema is generated from our own types; failing to compile it is a bug.
            // Its patterns need no backtracking, and the `regex` engine runs in time linear in
            // the text (a manifest is untrusted input) and faster than the default one.
            jsonschema::options()
                .with_pattern_options(jsonschema::PatternOptions::regex())
                .build(&subschema)
                .unwrap_or_else(|error| {
                    panic!("the generated schema for {definition} does not compile: {error}")
                })
        };
        let mut by_kind = HashMap::new();
        for (kind, definition) in [
            (Kind::Category, "CategoryDoc"),
            (Kind::Room, "RoomDoc"),
            (Kind::Addin, "AddinDoc"),
            (Kind::Group, "GroupDoc"),
            (Kind::ComplianceConfiguration, "ComplianceDoc"),
        ] {
            let principal_lists = definitions
                .pointer(&format!("/{definition}/properties"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(_, property)| {
                    property.pointer("/items/$ref").and_then(Value::as_str)
                        == Some("#/$defs/Principal")
                })
                .map(|(field, _)| field.clone())
                .collect();
            by_kind.insert(
                kind,
                KindValidators {
                    whole: compile(definition, &definitions),
                    without_principal_pattern: compile(definition, &without_principal_pattern),
                    principal_lists,
                },
            );
        }
        Validators {
            by_kind,
            forget: compile("ForgetDoc", &definitions),
        }
    })
}

/// Whether a principal is written as it is stored, in printable ASCII, which the schema's
/// pattern always accepts (`principal_pattern_tests`). The pattern is an ECMA-262 one, and
/// its `.` and `\S` differ from the principal's own check outside printable ASCII (a line
/// break or U+2028 inside a group's name, U+FEFF at its start): such a name meets the whole
/// schema.
fn written_normalised(text: &str) -> bool {
    crate::domain::is_plain_stored_sip_address(text)
        || text.bytes().all(|byte| (0x20..0x7f).contains(&byte))
            && matches!(
                Principal::normalised_text(text),
                Ok(std::borrow::Cow::Borrowed(_))
            )
}

/// Whether every principal in the document's principal lists is [`written_normalised`].
fn principals_written_normalised(map: &Map<String, Value>, principal_lists: &[String]) -> bool {
    principal_lists.iter().all(|field| match map.get(field) {
        Some(Value::Array(items)) => items
            .iter()
            .all(|item| item.as_str().is_some_and(written_normalised)),
        _ => true,
    })
}

fn check_document(
    json: Value,
    origin: Origin,
    report: &mut impl FnMut(Locator, String),
) -> Option<Checked> {
    let Value::Object(map) = &json else {
        report(
            Locator::Value(String::new()),
            "a document must be a mapping with `apiVersion: perch/v1` and `kind`".to_owned(),
        );
        return None;
    };
    match map.get("apiVersion") {
        None => {
            report(
                Locator::Document,
                format!("missing `apiVersion: {API_VERSION}`"),
            );
            return None;
        }
        Some(Value::String(version)) if version == API_VERSION => {}
        Some(other) => {
            report(
                Locator::Value("/apiVersion".to_owned()),
                format!("unsupported apiVersion {other}; this perch reads `{API_VERSION}`"),
            );
            return None;
        }
    }
    if map.get("kind").and_then(Value::as_str) == Some("Forget") {
        return check_forget(&json, origin, report);
    }
    let kind = match map.get("kind") {
        None => {
            report(
                Locator::Document,
                "missing `kind`: one of Category, Room, Addin, Group, ComplianceConfiguration, Forget"
                    .to_owned(),
            );
            return None;
        }
        Some(Value::String(text)) => {
            if let Some(kind) = Kind::parse(text) {
                kind
            } else {
                report(
                    Locator::Value("/kind".to_owned()),
                    format!(
                        "unknown kind `{text}`; expected Category, Room, Addin, Group, ComplianceConfiguration or Forget"
                    ),
                );
                return None;
            }
        }
        Some(other) => {
            report(
                Locator::Value("/kind".to_owned()),
                format!("`kind` must be a string, not {other}"),
            );
            return None;
        }
    };

    let validators = &validators().by_kind[&kind];
    let principals_normalised = principals_written_normalised(map, &validators.principal_lists);
    let valid = if principals_normalised {
        validators.without_principal_pattern.is_valid(&json)
    } else {
        validators.whole.is_valid(&json)
    };
    if !valid {
        for error in validators.whole.iter_errors(&json) {
            let pointer = error.instance_path().as_str().to_owned();
            let (locator, message) = match error.kind() {
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let field = unexpected.first().cloned().unwrap_or_default();
                    (
                        Locator::Key(format!("{pointer}/{field}")),
                        format!("unknown field `{}` in a {kind}", unexpected.join("`, `")),
                    )
                }
                jsonschema::error::ValidationErrorKind::Required { property } => (
                    if pointer.is_empty() {
                        Locator::Document
                    } else {
                        Locator::Value(pointer)
                    },
                    format!("missing required field {property} in a {kind}"),
                ),
                jsonschema::error::ValidationErrorKind::Pattern { .. } => {
                    let field = pointer
                        .trim_start_matches('/')
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let text = json
                        .pointer(&pointer)
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let message = if field == "runInterval" {
                        crate::domain::RunInterval::parse(text).err()
                    } else if field == "retention" {
                        crate::domain::compliance::Retention::parse(text).err()
                    } else {
                        match Principal::parse(text) {
                            Err(error) => Some(error.to_string()),
                            // Only the pattern refuses it, which takes no white space around
                            // a principal and no line break in it, where the principal's own
                            // check trims and takes them.
                            Ok(_) if validators.principal_lists.contains(&field) => Some(format!(
                                "`{}` may not have white space around it or a line break in it",
                                crate::text::excerpt(text, 80)
                            )),
                            Ok(_) => None,
                        }
                    };
                    let message = message.unwrap_or_else(|| schema_message(&error));
                    // A retention's message names its field already.
                    let message = if message.starts_with(&format!("{field} ")) {
                        message
                    } else {
                        format!("{field}: {message}")
                    };
                    (Locator::Value(pointer), message)
                }
                jsonschema::error::ValidationErrorKind::AnyOf { .. }
                    if crate::domain::spelling::refusal(
                        kind,
                        pointer.trim_start_matches('/'),
                        error.instance(),
                    )
                    .is_some() =>
                {
                    let field = pointer.trim_start_matches('/').to_owned();
                    let message = crate::domain::spelling::refusal(kind, &field, error.instance())
                        .unwrap_or_default();
                    (Locator::Value(pointer), format!("{field}: {message}"))
                }
                _ => {
                    let field = if pointer.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", pointer.trim_start_matches('/').replace('/', "."))
                    };
                    (
                        Locator::Value(pointer),
                        format!("{field}{}", schema_message(&error)),
                    )
                }
            };
            report(locator, message);
        }
        return None;
    }

    let Value::Object(map) = json else {
        return None;
    };
    // What says how Perch manages the object holds names and field names, not principals:
    // it is kept out of the fields' normalisation.
    let mut map = map;
    let managing: Vec<(String, Value)> = MANAGEMENT_KEYS
        .iter()
        .filter_map(|key| map.remove_entry(*key))
        .collect();
    let written_as_stored: &[String] = if principals_normalised {
        &validators.principal_lists
    } else {
        &[]
    };
    let (name, mut fields, protect) = normalise_fields(kind, map, written_as_stored, report)?;
    fields.extend(managing);
    let management = management(kind, &name, &mut fields, report)?;
    for problem in field_problems(&fields) {
        report(
            Locator::Value(format!("/{}", problem.field)),
            problem.message,
        );
    }
    Some(Checked::Object(DesiredObject {
        kind,
        name,
        fields,
        protect,
        previous_names: management.previous_names,
        ignore_fields: management.ignore_fields,
        additive: management.additive,
        origin,
    }))
}

/// A `kind: Forget` document, checked against its schema.
fn check_forget(
    json: &Value,
    origin: Origin,
    report: &mut impl FnMut(Locator, String),
) -> Option<Checked> {
    let validator = &validators().forget;
    if !validator.is_valid(json) {
        for error in validator.iter_errors(json) {
            let pointer = error.instance_path().as_str().to_owned();
            let message = match error.kind() {
                jsonschema::error::ValidationErrorKind::Pattern { .. } => {
                    "object: expected KIND/NAME, such as Room/war-room (Category, Room, Addin or Group)".to_owned()
                }
                _ => schema_message(&error),
            };
            report(Locator::Value(pointer), format!("{message} in a Forget"));
        }
        return None;
    }
    let object = json
        .get("object")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (kind, name) = object.split_once('/')?;
    let kind = Kind::parse(kind)?;
    let mut name = name.to_owned();
    domain::normalise_name(&mut name);
    Some(Checked::Forget(kind, name, origin))
}

/// The keys of [`Management`].
const MANAGEMENT_KEYS: [&str; 3] = ["previousNames", "ignoreFields", "membership"];

/// What a document says of how Perch manages it, beside its fields.
struct Management {
    previous_names: Vec<String>,
    ignore_fields: Vec<String>,
    additive: Vec<String>,
}

/// The fields `ignoreFields` may name, per kind: every field but the name.
pub(crate) fn ignorable_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Category => &[
            "description",
            "allowedMembers",
            "deniedMembers",
            "creators",
            "invitations",
            "fileUpload",
            "chatHistory",
            "retention",
        ],
        Kind::Room => &[
            "category",
            "description",
            "privacy",
            "type",
            "addin",
            "invitations",
            "disabled",
            "members",
            "managers",
            "presenters",
        ],
        Kind::Addin => &["url"],
        Kind::Group => &["description", "members"],
        Kind::ComplianceConfiguration => &[],
    }
}

/// Takes `previousNames`, `ignoreFields` and `membership` out of the fields (they are Perch's,
/// never the server's) and checks what the schema cannot.
fn management(
    kind: Kind,
    name: &str,
    fields: &mut Map<String, Value>,
    report: &mut impl FnMut(Locator, String),
) -> Option<Management> {
    let texts = |value: Option<Value>| -> Vec<String> {
        value
            .and_then(|value| value.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect()
    };
    let mut valid = true;
    let mut previous_names = texts(fields.remove("previousNames"));
    for (index, previous) in previous_names.iter_mut().enumerate() {
        domain::normalise_name(previous);
        let mut problems = Vec::new();
        domain::check_name("previousNames", previous, &mut problems);
        if domain::name_key(previous) == domain::name_key(name) {
            report(
                Locator::Value(format!("/previousNames/{index}")),
                format!("previousNames: `{previous}` is this {kind}'s own name"),
            );
            valid = false;
        }
        for problem in problems {
            report(
                Locator::Value(format!("/previousNames/{index}")),
                problem.message,
            );
            valid = false;
        }
    }
    let ignore_fields = texts(fields.remove("ignoreFields"));
    for (index, field) in ignore_fields.iter().enumerate() {
        if !ignorable_fields(kind).contains(&field.as_str()) {
            report(
                Locator::Value(format!("/ignoreFields/{index}")),
                format!(
                    "ignoreFields: a {kind} has no field `{field}` to leave alone; it has {}",
                    ignorable_fields(kind).join(", ")
                ),
            );
            valid = false;
        }
    }
    let additive = match fields.remove("membership") {
        Some(Value::Object(modes)) => modes
            .into_iter()
            .filter(|(_, mode)| mode.as_str() == Some("additive"))
            .map(|(list, _)| list)
            .collect(),
        _ => Vec::new(),
    };
    valid.then_some(Management {
        previous_names,
        ignore_fields,
        additive,
    })
}

/// The rules that need nothing but the fields: names, lengths, URLs.
fn field_problems(fields: &Map<String, Value>) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    let text = |field: &str| fields.get(field).and_then(Value::as_str);
    for field in ["name", "category", "addin"] {
        if let Some(value) = text(field) {
            domain::check_name(field, value, &mut problems);
        }
    }
    if let Some(url) = text("url") {
        domain::check_url(url, &mut problems);
    }
    for (field, value) in fields {
        if let Value::Array(items) = value
            && items.len() > domain::MAX_LIST_LEN
        {
            problems.push(FieldProblem {
                field: field.clone(),
                code: crate::api::ErrorCode::ListTooLong,
                message: format!("{field} has more than {} entries", domain::MAX_LIST_LEN),
            });
        }
    }
    problems
}

/// Turns a schema-valid document into its managed fields as the API names them: principals
/// normalised, lists sorted and deduplicated, the run interval's range checked. Returns the
/// name, the fields and `protect`.
///
/// The JSON Schema has already checked every field's type and every enum, so what is left is
/// what a schema cannot say; the document types in `docs` stay the schema's source and the
/// shape of exports.
///
/// `written_as_stored`: lists whose every principal is known to be written as it is stored
/// ([`written_normalised`]), which are not checked again.
fn normalise_fields(
    kind: Kind,
    mut fields: Map<String, Value>,
    written_as_stored: &[String],
    report: &mut impl FnMut(Locator, String),
) -> Option<(String, Map<String, Value>, bool)> {
    fields.remove("apiVersion");
    fields.remove("kind");
    // The cmdlets' spellings (`Open`, `"False"`), which the schema let through, become the
    // canonical values the server stores and plans compare.
    for (field, value) in &mut fields {
        if let Some(canonical) = crate::domain::spelling::canonical(kind, field, value) {
            *value = canonical;
        }
    }
    let protect = fields
        .remove("protect")
        .and_then(|value| value.as_bool())
        .unwrap_or(false);
    let mut valid = true;
    // Names as the server stores them: in NFC.
    for field in ["name", "category", "addin"] {
        if let Some(Value::String(name)) = fields.get_mut(field) {
            crate::domain::normalise_name(name);
        }
    }
    for (field, value) in &mut fields {
        if let Value::Array(items) = value {
            // Lists known to be written as stored need no second look.
            if !written_as_stored.contains(field) {
                for (index, item) in items.iter_mut().enumerate() {
                    let text = item.as_str().unwrap_or_default();
                    match Principal::normalised_text(text) {
                        Ok(std::borrow::Cow::Borrowed(_)) => {}
                        Ok(std::borrow::Cow::Owned(text)) => *item = Value::String(text),
                        Err(error) => {
                            report(
                                Locator::Value(format!("/{field}/{index}")),
                                format!("{field}: {error}"),
                            );
                            valid = false;
                        }
                    }
                }
            }
            // Principals sort as their text, so this is the order the server stores them in
            // (and the order `perch export` writes them in: checked before sorting). A list
            // in strictly rising order has nothing to sort or remove.
            if !items.is_sorted_by(|a, b| a.as_str() < b.as_str()) {
                items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                items.dedup();
            }
        }
    }
    if let Some(Value::String(interval)) = fields.get("runInterval")
        && let Err(message) = crate::domain::RunInterval::parse(interval)
    {
        report(Locator::Value("/runInterval".to_owned()), message);
        valid = false;
    }
    // Checked here, as the server checks it, rather than found out by `apply`.
    if kind == Kind::Category
        && let Some(Value::String(retention)) = fields.get("retention")
        && let Err(message) = crate::domain::compliance::Retention::parse(retention)
    {
        report(Locator::Value("/retention".to_owned()), message);
        valid = false;
    }
    let name = match kind {
        Kind::ComplianceConfiguration => String::new(),
        _ => fields
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    valid.then_some((name, fields, protect))
}

/// Joins the documents of every file and checks what needs all of them: unique names,
/// references, scopes, group cycles.
fn assemble(documents: Vec<Checked>, pending: &mut Vec<Pending>) -> Desired {
    let started = std::time::Instant::now();
    let mut desired = Desired::empty();
    let mut objects = Vec::new();
    for checked in documents {
        match checked {
            Checked::Object(object) => objects.push(object),
            Checked::Forget(kind, name, origin) => {
                desired.forget.entry((kind, name)).or_insert(origin);
            }
        }
    }
    // The first object of each name (whatever its case: the store keeps names unique by
    // their folded key) is kept; a later one is a problem naming the first. Found by hashing,
    // and the map then built from the kept objects in one sorted pass: inserting a hundred
    // thousand objects one by one compared their names a million and a half times.
    let mut kept = vec![false; objects.len()];
    {
        let mut first_of: HashMap<(Kind, std::borrow::Cow<'_, str>), usize> =
            HashMap::with_capacity(objects.len());
        for (index, object) in objects.iter().enumerate() {
            if object.kind == Kind::ComplianceConfiguration {
                continue;
            }
            let folded = (object.kind, crate::domain::folded_name(&object.name));
            let Some(&first) = first_of.get(&folded) else {
                first_of.insert(folded, index);
                kept[index] = true;
                continue;
            };
            let first = &objects[first];
            let message = if first.name == object.name {
                format!("{} `{}` is defined twice;", object.kind, object.name)
            } else {
                format!(
                    "{} `{}` is defined twice, also as `{}`: names differ by more than case;",
                    object.kind, object.name, first.name
                )
            };
            let mut problem =
                Pending::in_document(&object.origin, Locator::Value("/name".to_owned()), message);
            problem.first_at = Some(first.origin.clone());
            pending.push(problem);
        }
    }
    let mut keyed = Vec::with_capacity(objects.len());
    for (object, kept) in objects.into_iter().zip(kept) {
        if object.kind == Kind::ComplianceConfiguration {
            if let Some(first) = &desired.compliance {
                let mut problem = Pending::in_document(
                    &object.origin,
                    Locator::Document,
                    "a second ComplianceConfiguration;".to_owned(),
                );
                problem.first_at = Some(first.origin.clone());
                pending.push(problem);
            } else {
                desired.compliance = Some(object);
            }
        } else if kept {
            keyed.push(((object.kind, object.name.clone()), object));
        }
    }
    // Collecting sorts them (files are read in order and their objects are mostly written in
    // order, which the sort finds as runs), then builds the tree in one pass.
    desired.objects = keyed.into_iter().collect();

    // An object is managed or let go of, never both; a previous name belongs to one object,
    // and is no other object's name now.
    for ((kind, name), origin) in &desired.forget {
        if let Some(object) = desired.objects.get(&(*kind, name.clone())) {
            let mut problem = Pending::in_document(
                origin,
                Locator::Value("/object".to_owned()),
                format!("{kind} `{name}` is forgotten here and defined by a manifest too;"),
            );
            problem.first_at = Some(object.origin.clone());
            pending.push(problem);
        }
    }
    let mut claimed: HashMap<(Kind, String), &DesiredObject> = HashMap::new();
    for object in desired.objects.values() {
        for (index, previous) in object.previous_names.iter().enumerate() {
            let key = (object.kind, previous.clone());
            let locator = || Locator::Value(format!("/previousNames/{index}"));
            if desired.objects.contains_key(&key) {
                pending.push(Pending::in_document(
                    &object.origin,
                    locator(),
                    format!(
                        "previousNames: {} `{previous}` is defined by a manifest now; an object is renamed from a name that is gone",
                        object.kind
                    ),
                ));
            } else if let Some(first) = claimed.insert(key, object) {
                let mut problem = Pending::in_document(
                    &object.origin,
                    locator(),
                    format!(
                        "previousNames: `{previous}` is also a previous name of {} `{}`;",
                        first.kind, first.name
                    ),
                );
                problem.first_at = Some(first.origin.clone());
                pending.push(problem);
            }
        }
    }

    tracing::debug!(objects = desired.objects.len(), elapsed = ?started.elapsed(), "joined the files' objects");
    let started = std::time::Instant::now();
    let groups: BTreeMap<String, Vec<Principal>> = desired
        .objects
        .values()
        .filter(|object| object.kind == Kind::Group)
        .map(|object| (object.name.clone(), principals(&object.fields, "members")))
        .collect();
    let directory = Directory::new(groups.clone());
    // Each category, and whether its manifest manages its scope (`allowedMembers`).
    let categories: HashMap<&str, (Category, bool)> = desired
        .objects
        .values()
        .filter(|object| object.kind == Kind::Category)
        .filter_map(|object| {
            let category: Category =
                serde_json::from_value(Value::Object(object.fields.clone())).ok()?;
            let scope_managed = object.fields.contains_key("allowedMembers");
            Some((object.name.as_str(), (category, scope_managed)))
        })
        .collect();

    // What each object names must exist and lie within scope: judged of each object alone,
    // so the objects are shared among the cores (a million principals parsed again in a
    // large repository), and the problems kept in the objects' order.
    let problems_of = |(kind, name): &(Kind, String), object: &DesiredObject| -> Vec<Pending> {
        let mut problems = Vec::new();
        let mut report = |locator: Locator, message: String| {
            problems.push(Pending::in_document(&object.origin, locator, message));
        };
        // Every group a list names must be defined.
        for (field, value) in &object.fields {
            let Value::Array(items) = value else { continue };
            for item in items {
                if let Some(group) = item.as_str().and_then(|text| text.strip_prefix("group:"))
                    && !groups.contains_key(group)
                {
                    report(
                        Locator::ListItem {
                            field: field.clone(),
                            normalised: format!("group:{group}"),
                        },
                        format!("group `{group}` is not defined in the manifests"),
                    );
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
                        Locator::Value("/category".to_owned()),
                        format!("category `{category_name}` is not defined in the manifests"),
                    ),
                    Some((category, scope_managed)) => {
                        if *scope_managed {
                            for field in ["members", "managers", "presenters"] {
                                let list = principals(&object.fields, field);
                                // A whole desired state: every entry is checked (no previous).
                                for principal in
                                    access::outside_scope(category, &directory, &list, &[])
                                {
                                    report(
                                        Locator::ListItem {
                                            field: field.to_owned(),
                                            normalised: principal.to_string(),
                                        },
                                        format!(
                                            "{field}: `{principal}` is not within category `{category_name}`'s allowedMembers (or is denied)"
                                        ),
                                    );
                                }
                            }
                        }
                    }
                }
                if let Some(Value::String(addin)) = object.fields.get("addin")
                    && !desired.objects.contains_key(&(Kind::Addin, addin.clone()))
                {
                    report(
                        Locator::Value("/addin".to_owned()),
                        format!("add-in `{addin}` is not defined in the manifests"),
                    );
                }
            }
            Kind::Category => {
                if let Some((category, true)) = categories.get(name.as_str()) {
                    for creator in
                        access::outside_scope(category, &directory, &category.creators, &[])
                    {
                        report(
                            Locator::ListItem {
                                field: "creators".to_owned(),
                                normalised: creator.to_string(),
                            },
                            format!(
                                "creators: `{creator}` is not within this category's allowedMembers (or is denied)"
                            ),
                        );
                    }
                }
            }
            Kind::Group => {
                if let Some(cycle) = group_cycle(name, &groups) {
                    report(
                        Locator::Value("/members".to_owned()),
                        format!(
                            "groups contain each other in a cycle: {}",
                            cycle.join(" -> ")
                        ),
                    );
                }
            }
            _ => {}
        }
        problems
    };
    let objects: Vec<_> = desired.objects.iter().collect();
    let found = crate::parallel::map(&objects, |(key, object)| problems_of(key, object));
    drop(objects);
    pending.extend(found.into_iter().flatten());
    tracing::debug!(elapsed = ?started.elapsed(), "checked what the objects name");
    desired
}

/// The principals of a list of fields [`normalise_fields`] normalised.
fn principals(fields: &Map<String, Value>, field: &str) -> Vec<Principal> {
    fields
        .get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().and_then(Principal::from_normalised_text))
                .collect()
        })
        .unwrap_or_default()
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

/// Works out the positions of pending problems, parsing each involved file once with spans.
/// Places each problem at its line and column, parsing a file again (with spans) only when
/// one of its problems needs a position; `text_of` gives a file's text.
fn resolve(pending: Vec<Pending>, text_of: &dyn Fn(&Path) -> Option<String>) -> Vec<Problem> {
    let mut positions: HashMap<(Arc<PathBuf>, usize), Positions> = HashMap::new();
    let mut starts: HashMap<(Arc<PathBuf>, usize), Position> = HashMap::new();
    let mut parsed: BTreeSet<Arc<PathBuf>> = BTreeSet::new();
    let mut parse = |file: &Arc<PathBuf>,
                     positions: &mut HashMap<(Arc<PathBuf>, usize), Positions>,
                     starts: &mut HashMap<(Arc<PathBuf>, usize), Position>| {
        if !parsed.insert(file.clone()) {
            return;
        }
        let Some(text) = text_of(file.as_path()) else {
            return;
        };
        let Ok(trees) = yaml::parse_documents(&text) else {
            return;
        };
        for (index, tree) in trees.iter().enumerate() {
            let mut document = Positions::default();
            yaml::to_json(tree, &mut document);
            starts.insert((file.clone(), index), yaml::document_start(tree));
            positions.insert((file.clone(), index), document);
        }
    };
    pending
        .into_iter()
        .map(|problem| {
            let mut message = problem.message;
            if let Some(first) = &problem.first_at {
                parse(&first.file, &mut positions, &mut starts);
                let at = starts
                    .get(&(first.file.clone(), first.document))
                    .copied()
                    .unwrap_or_default();
                message.push_str(&format!(
                    " the first is at {}:{}:{}",
                    first.file.display(),
                    at.line,
                    at.column
                ));
            }
            let position = match (problem.known, problem.document) {
                (Some(position), _) => position,
                (None, None) => Position::default(),
                (None, Some(document)) => {
                    parse(&problem.file, &mut positions, &mut starts);
                    let key = (problem.file.clone(), document);
                    let start = starts
                        .get(&key)
                        .copied()
                        .unwrap_or(Position { line: 1, column: 1 });
                    match (&problem.locator, positions.get(&key)) {
                        (Locator::Document, _) | (_, None) => start,
                        (Locator::Value(pointer), Some(p)) => p.value(pointer),
                        (Locator::Key(pointer), Some(p)) => p.key(pointer),
                        (Locator::ListItem { field, normalised }, Some(p)) => {
                            p.find_list_item(field, normalised).map_or_else(
                                || p.value(&format!("/{field}")),
                                |pointer| p.value(&pointer),
                            )
                        }
                    }
                }
            };
            Problem {
                file: problem.file.to_path_buf(),
                position,
                // Messages quote names and values from the file: keep them short and inert.
                message: crate::text::excerpt(&message, MAX_MESSAGE_CHARS),
            }
        })
        .collect()
}

/// A schema error's message, quoting the offending value only when it is short: a value may be
/// a list of millions (the caret shows where it is).
fn schema_message(error: &jsonschema::ValidationError<'_>) -> String {
    if json_is_short(error.instance(), 80) {
        error.to_string()
    } else {
        error.masked_with("the value").to_string()
    }
}

/// Whether `value` serialises to at most about `budget` characters, found without serialising
/// a long one.
fn json_is_short(value: &Value, budget: usize) -> bool {
    fn cost(value: &Value, left: &mut usize) -> bool {
        let own = match value {
            Value::String(text) => text.len() + 2,
            Value::Array(_) | Value::Object(_) => 2,
            _ => 8,
        };
        if own > *left {
            return false;
        }
        *left -= own;
        match value {
            Value::Array(items) => items.iter().all(|item| cost(item, left)),
            Value::Object(map) => map.iter().all(|(key, item)| {
                key.len() + 3 <= *left && {
                    *left -= key.len() + 3;
                    cost(item, left)
                }
            }),
            _ => true,
        }
    }
    let mut left = budget;
    cost(value, &mut left)
}

/// Longest message of a problem, in characters.
const MAX_MESSAGE_CHARS: usize = 1000;
/// Longest source line shown under a problem, in characters.
const MAX_SOURCE_LINE_CHARS: usize = 200;

/// Prints problems as `file:line:col: message`, each followed by the offending line and a caret.
pub fn render_problems(problems: &[Problem]) -> String {
    let mut sources: HashMap<&Path, Option<String>> = HashMap::new();
    let mut out = String::new();
    for problem in problems {
        let Position { line, column } = problem.position;
        // A file's name comes from the repository too.
        let file = crate::text::terminal_safe(&problem.file.to_string_lossy()).into_owned();
        if line == 0 {
            out.push_str(&format!("{file}: {}\n", problem.message));
            continue;
        }
        out.push_str(&format!("{file}:{line}:{column}: {}\n", problem.message));
        let source = sources
            .entry(problem.file.as_path())
            .or_insert_with(|| source::read(&problem.file).ok());
        if let Some(text) = source
            .as_deref()
            .and_then(|text| text.lines().nth(line as usize - 1))
        {
            // The line as a terminal shows it safely, cut to a readable length; the caret
            // under the column counts the escapes before it.
            let before: String = text
                .chars()
                .take(column.saturating_sub(1) as usize)
                .collect();
            let shown = crate::text::excerpt(text, MAX_SOURCE_LINE_CHARS);
            let gutter = line.to_string();
            out.push_str(&format!("  {gutter} | {shown}\n"));
            let pad_width = crate::text::terminal_safe(&before).chars().count();
            if pad_width <= MAX_SOURCE_LINE_CHARS {
                let pad: String = crate::text::terminal_safe(&before)
                    .chars()
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                out.push_str(&format!("  {} | {pad}^\n", " ".repeat(gutter.len())));
            }
        }
    }
    out
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    #[test]
    fn a_panicking_check_is_an_error_naming_the_file() {
        let files: Vec<SourceFile> = ["a.yaml", "b.yaml", "c.yaml"]
            .into_iter()
            .map(|path| SourceFile {
                path: PathBuf::from(path),
                text: String::new(),
            })
            .collect();
        let outcomes = check_all(&files, |file: &SourceFile| {
            assert!(!file.path.ends_with("b.yaml"), "boom");
            (Vec::new(), Vec::new())
        });
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes[0].0.is_empty() && outcomes[2].0.is_empty());
        let [problem] = outcomes[1].0.as_slice() else {
            panic!(
                "expected one problem for b.yaml, got {}",
                outcomes[1].0.len()
            );
        };
        assert_eq!(problem.file.as_path(), Path::new("b.yaml"));
        assert!(problem.message.contains("boom"), "{}", problem.message);
    }
}

#[cfg(test)]
mod principal_pattern_tests {
    use super::*;

    /// What lets most documents skip the principals' pattern: a principal written as stored
    /// matches it, as the schema's validator reads it. Checked over every text of up to four
    /// pieces that principals are made of, with the characters where ECMA-262's classes and
    /// Rust's differ.
    #[test]
    fn principals_written_normalised_match_the_pattern() {
        let schema = docs::json_schema();
        let principal = jsonschema::options()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&serde_json::json!({
                "$ref": "#/$defs/Principal",
                "$defs": schema.get("$defs").cloned().unwrap_or_default(),
            }))
            .expect("the principal's schema compiles");
        let pieces = [
            "sip:", "SIP:", "group:", "domain:", "ana", "B", "@", ".", "-", " ", ":", "x.com",
            "\n", "\r", "\u{2028}", "\u{feff}", "\u{85}", "é",
        ];
        let texts = crate::test_support::texts_of_pieces(&pieces, 4);
        let mut written = 0;
        for text in &texts {
            if written_normalised(text) {
                written += 1;
                assert!(principal.is_valid(&Value::from(text.as_str())), "{text:?}");
            }
        }
        assert!(written > 1000, "{written}");
        // The names the pattern refuses though the principal's own check takes them are
        // among the texts, and are left to the whole schema.
        for refused in [
            "group:ana\rana",
            "group:ana\u{2028}ana",
            "group:\u{feff}ana",
        ] {
            assert!(texts.iter().any(|text| text == refused), "{refused:?}");
            assert!(Principal::parse(refused).is_ok(), "{refused:?}");
            assert!(!principal.is_valid(&Value::from(refused)), "{refused:?}");
            assert!(!written_normalised(refused), "{refused:?}");
        }
    }

    /// Which lists skip the pattern is read from the schema: if the schema's shape changed
    /// so that none were found, every document would skip it.
    #[test]
    fn the_principal_lists_are_found_in_the_schema() {
        let validators = validators();
        let lists = |kind: Kind| validators.by_kind[&kind].principal_lists.clone();
        assert_eq!(lists(Kind::Room), ["managers", "members", "presenters"]);
        assert_eq!(
            lists(Kind::Category),
            ["allowedMembers", "creators", "deniedMembers"]
        );
        assert_eq!(lists(Kind::Group), ["members"]);
        assert!(lists(Kind::Addin).is_empty() && lists(Kind::ComplianceConfiguration).is_empty());
        let room = serde_json::json!({
            "apiVersion": "perch/v1", "kind": "Room", "name": "r", "category": "c",
            "members": [" sip:ana@x.com"],
        });
        let room_validators = &validators.by_kind[&Kind::Room];
        assert!(!room_validators.whole.is_valid(&room));
        assert!(room_validators.without_principal_pattern.is_valid(&room));
    }

    /// Documents whose principals are written otherwise are still held to the whole schema:
    /// the pattern refuses what the principal's own check would trim or take.
    #[test]
    fn principals_written_otherwise_meet_the_whole_schema() {
        let text = "apiVersion: perch/v1\nkind: Group\nname: g\nmembers: [\"sip:ana@x.com\", \" sip:ana@x.com\"]\n---\napiVersion: perch/v1\nkind: Group\nname: h\nmembers: [\"group:a\\nb\"]\n---\napiVersion: perch/v1\nkind: Group\nname: i\nmembers: [\"group:a\\u2028b\", \"group:\\uFEFFb\", \"group:a\\rb\"]\n";
        let problems = load_texts(&[SourceFile {
            path: PathBuf::from("g.yaml"),
            text: text.to_owned(),
        }])
        .expect_err("the groups break the pattern");
        let messages: Vec<String> = problems
            .iter()
            .map(|problem| {
                let Position { line, column } = problem.position;
                format!("{line}:{column} {}", problem.message)
            })
            .collect();
        expect_test::expect![[r#"
            [
                "4:28 members: ` sip:ana@x.com` may not have white space around it or a line break in it",
                "9:11 members: `group:a\\u{a}b` may not have white space around it or a line break in it",
                "14:11 members: `group:a\\u{2028}b` may not have white space around it or a line break in it",
                "14:29 members: `group:\\u{feff}b` may not have white space around it or a line break in it",
                "14:46 members: `group:a\\u{d}b` may not have white space around it or a line break in it",
            ]
        "#]].assert_debug_eq(&messages);
    }
}
