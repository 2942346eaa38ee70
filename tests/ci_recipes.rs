//! The CI recipes of `examples/ci/` as CI would run them: each job's shell steps, in order,
//! with the environment the recipe gives them, against a real `perch serve`. Only the tools
//! around perch are stand-ins (`gh`, `curl`, `cargo`), which record what they were asked.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestDb, TestServer};
use serde_json::{Value, json};

fn recipe(relative: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/ci")
        .join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// A checkout: the example manifests under manifests/, and stand-ins for the tools around
/// perch that record their arguments (and, for `gh` and `curl`, the body they would post).
struct Checkout {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Checkout {
    fn new() -> Checkout {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(manifests.join("rooms")).unwrap();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        for entry in std::fs::read_dir(&examples)
            .unwrap()
            .chain(std::fs::read_dir(examples.join("rooms")).unwrap())
        {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "yaml") {
                let relative = path.strip_prefix(&examples).unwrap();
                std::fs::copy(&path, manifests.join(relative)).unwrap();
            }
        }
        let bin = dir.path().join(".bin");
        std::fs::create_dir_all(&bin).unwrap();
        let perch = Path::new(env!("CARGO_BIN_EXE_perch"));
        std::os::unix::fs::symlink(perch, bin.join("perch")).unwrap();
        for tool in ["gh", "curl", "cargo"] {
            let script = format!(
                "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/{tool}.calls\"\nfor arg in \"$@\"; do case \"$arg\" in body@*) cat \"${{arg#body@}}\" >> \"$(dirname \"$0\")/{tool}.body\";; esac; done\nprev=\nfor arg in \"$@\"; do if [ \"$prev\" = --body-file ]; then cat \"$arg\" >> \"$(dirname \"$0\")/{tool}.body\"; fi; prev=$arg; done\n{}",
                if tool == "cargo" {
                    "exit 1\n"
                } else {
                    "exit 0\n"
                }
            );
            let path = bin.join(tool);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Checkout { dir, bin }
    }

    fn recorded(&self, file: &str) -> String {
        std::fs::read_to_string(self.bin.join(file)).unwrap_or_default()
    }

    /// Runs one shell step as the runner does (`bash -e`), returning its exit code and output.
    fn run(&self, script: &str, env: &[(String, String)]) -> (i32, String) {
        assert!(
            !script.contains("${{"),
            "a step reads expressions through env, never inline: {script}"
        );
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = Command::new("bash")
            .arg("-e")
            .arg("-c")
            .arg(script)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("PERCH_LOG", "warn")
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }
}

/// A value of the recipe with GitHub's `${{ ... }}` expressions replaced by what CI would put.
fn expand(value: &Value, expressions: &[(&str, &str)]) -> String {
    let mut text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    for (expression, replacement) in expressions {
        text = text.replace(&format!("${{{{ {expression} }}}}"), replacement);
    }
    assert!(
        !text.contains("${{"),
        "an expression the test does not know: {text}"
    );
    text
}

fn env_of(map: &Value, expressions: &[(&str, &str)]) -> Vec<(String, String)> {
    map.as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), expand(value, expressions)))
        .collect()
}

/// Runs the `run:` steps of a GitHub Actions job; returns the last step's code and output.
fn github_job(
    workflow: &Value,
    job: &str,
    checkout: &Checkout,
    expressions: &[(&str, &str)],
) -> (i32, String) {
    let mut outcome = (0, String::new());
    for step in workflow["jobs"][job]["steps"].as_array().unwrap() {
        let Some(script) = step["run"].as_str() else {
            continue;
        };
        let mut env = env_of(&workflow["env"], expressions);
        env.extend(env_of(&step["env"], expressions));
        outcome = checkout.run(script, &env);
        if outcome.0 != 0 {
            return outcome;
        }
    }
    outcome
}

/// Runs a GitLab CI job's before_script and script lines in one shell, as the runner does.
fn gitlab_job(
    pipeline: &Value,
    job: &str,
    checkout: &Checkout,
    env: &[(String, String)],
) -> (i32, String) {
    let lines = pipeline["default"]["before_script"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pipeline[job]["script"].as_array().unwrap());
    let script: Vec<&str> = lines.map(|line| line.as_str().unwrap()).collect();
    let mut all = env_of(&pipeline["variables"], &[]);
    all.extend(env.iter().cloned());
    checkout.run(&script.join("\n"), &all)
}

#[tokio::test]
async fn the_github_actions_recipe_plans_comments_applies_and_watches_drift() {
    let db = TestDb::new();
    let token = common::create_token(&db.url, "sip:ci@contoso.com", "admin");
    let server = TestServer::start(&db.url);
    let workflow = recipe("github/.github/workflows/perch.yml");
    let checkout = Checkout::new();
    let expressions = [
        ("vars.PERCH_SERVER", server.base.as_str()),
        ("secrets.PERCH_TOKEN", token.as_str()),
        ("github.token", "gh-token"),
        ("github.event.pull_request.number", "7"),
        ("github.sha", "0123abc"),
    ];

    let (code, output) = github_job(&workflow, "plan", &checkout, &expressions);
    assert_eq!(code, 0, "{output}");
    assert!(
        checkout.recorded("gh.calls").contains("pr comment 7"),
        "{output}"
    );
    assert!(
        checkout.recorded("gh.body").contains("### Perch plan for"),
        "the comment is the markdown plan: {}",
        checkout.recorded("gh.body")
    );
    assert!(
        checkout.recorded("cargo.calls").is_empty(),
        "perch was on PATH"
    );

    let (code, output) = github_job(&workflow, "apply", &checkout, &expressions);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Apply complete: 55 created"), "{output}");
    let admin = server.client(&token);
    admin.get("/v1/rooms/eng-news").await.expect(200);

    let (code, output) = github_job(&workflow, "drift", &checkout, &expressions);
    assert_eq!(code, 0, "no drift right after the apply: {output}");
    admin
        .patch("/v1/rooms/eng-news", json!({"description": "by hand"}))
        .await
        .expect(200);
    let (code, output) = github_job(&workflow, "drift", &checkout, &expressions);
    assert_eq!(code, 2, "drift fails the job: {output}");
    assert!(
        output.contains("Room \"eng-news\": description differs"),
        "{output}"
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(checkout.dir.path().join("drift.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["drifted"], true);
}

#[tokio::test]
async fn the_gitlab_recipe_plans_notes_applies_and_watches_drift() {
    let db = TestDb::new();
    let token = common::create_token(&db.url, "sip:ci@contoso.com", "admin");
    let server = TestServer::start(&db.url);
    let pipeline = recipe("gitlab/.gitlab-ci.yml");
    let checkout = Checkout::new();
    let env: Vec<(String, String)> = [
        ("PERCH_SERVER", server.base.as_str()),
        ("PERCH_TOKEN", token.as_str()),
        ("PERCH_NOTE_TOKEN", "note-token"),
        ("CI_API_V4_URL", "https://gitlab.example.com/api/v4"),
        ("CI_PROJECT_ID", "12"),
        ("CI_MERGE_REQUEST_IID", "7"),
        ("CI_COMMIT_SHA", "0123abc"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect();

    let (code, output) = gitlab_job(&pipeline, "perch-plan", &checkout, &env);
    assert_eq!(code, 0, "{output}");
    assert!(
        checkout
            .recorded("curl.calls")
            .contains("https://gitlab.example.com/api/v4/projects/12/merge_requests/7/notes"),
        "{}",
        checkout.recorded("curl.calls")
    );
    assert!(
        checkout
            .recorded("curl.body")
            .contains("### Perch plan for")
    );

    let (code, output) = gitlab_job(&pipeline, "perch-apply", &checkout, &env);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Apply complete: 55 created"), "{output}");

    let (code, output) = gitlab_job(&pipeline, "perch-drift", &checkout, &env);
    assert_eq!(code, 0, "{output}");
    server
        .client(&token)
        .delete("/v1/rooms/eng-news")
        .await
        .expect(204);
    let (code, output) = gitlab_job(&pipeline, "perch-drift", &checkout, &env);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("removed by sip:ci@contoso.com"), "{output}");
}
