//! The committed JSON Schema is current, and the examples are valid manifests.

mod common;

use std::path::Path;

#[test]
fn committed_schema_is_current() {
    let (code, stdout, stderr) = common::perch(&["schema"]);
    assert_eq!(code, 0, "{stderr}");
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/perch.schema.json"),
    )
    .expect("schema/perch.schema.json is committed");
    assert!(
        committed == stdout,
        "schema/perch.schema.json is stale: run `cargo run -- schema > schema/perch.schema.json`"
    );
}

#[test]
fn examples_validate_and_name_the_schema() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let (code, stdout, stderr) = common::perch(&["validate", examples.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut files = Vec::new();
    let mut stack = vec![examples];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            // Hidden entries (the CI recipes' .github, .gitlab-ci.yml) are no manifests, as
            // the manifest walk skips them.
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    assert!(files.len() >= 5);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema="),
            "{} does not start with the schema line",
            file.display()
        );
    }
}

#[test]
fn committed_compliance_archive_schema_is_current() {
    let (code, stdout, stderr) = common::perch(&["schema", "compliance-archive"]);
    assert_eq!(code, 0, "{stderr}");
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/compliance.schema.json"),
    )
    .expect("schema/compliance.schema.json is committed");
    assert!(
        committed == stdout,
        "schema/compliance.schema.json is stale: run `cargo run -- schema compliance-archive > schema/compliance.schema.json`"
    );
}

#[test]
fn committed_openapi_document_is_current() {
    let (code, stdout, stderr) = common::perch(&["schema", "openapi"]);
    assert_eq!(code, 0, "{stderr}");
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/openapi.json"))
            .expect("schema/openapi.json is committed");
    assert!(
        committed == stdout,
        "schema/openapi.json is stale: run `cargo run -- schema openapi > schema/openapi.json`"
    );
}
