//! Broken manifests: each gets its `file:line:col: message` and exit 1, never a panic.
//! And the human plan output, as snapshots.

mod common;

use std::path::Path;

use expect_test::expect;

fn corpus(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/broken")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn every_broken_manifest_names_file_line_and_column() {
    let cases = [
        (
            "unknown-field.yaml",
            "5:1: unknown field `colour` in a Room",
        ),
        ("bad-enum.yaml", "5:10: privacy: \"hidden\" is not one of"),
        (
            "bad-principal.yaml",
            "7:5: members: invalid principal `OU=Eng,DC=corp`: expected sip:user@domain, group:NAME or domain:DOMAIN",
        ),
        (
            "bad-api-version.yaml",
            "1:13: unsupported apiVersion \"perch/v2\"",
        ),
        ("unknown-kind.yaml", "2:7: unknown kind `Chatroom`"),
        ("missing-kind.yaml", "1:1: missing `kind`"),
        (
            "missing-category.yaml",
            "1:1: missing required field \"category\" in a Room",
        ),
        ("syntax-error.yaml", ": invalid YAML:"),
        (
            "bad-url.yaml",
            "4:6: url `ftp://files.contoso.com` must be an absolute http:// or https:// address",
        ),
        (
            "bad-interval.yaml",
            "3:14: run interval `00:00:30` is outside 00:01:00 to 30.00:00:00",
        ),
        (
            "unknown-category.yaml",
            "4:11: category `Nowhere` is not defined in the manifests",
        ),
        (
            "denied-member.yaml",
            "13:5: members: `sip:temp7@contoso.com` is not within category `C`'s allowedMembers (or is denied)",
        ),
        (
            "duplicate.yaml",
            "7:7: Category `C` is defined twice; the first is at",
        ),
        (
            "duplicate-case.yaml",
            "7:7: Group `ENG` is defined twice, also as `eng`: names differ by more than case; the first is at",
        ),
        (
            "bad-retention.yaml",
            "4:12: retention `P0D` must be between one day and 36525 days",
        ),
        (
            "bad-retention-text.yaml",
            "4:12: retention `5 days` is not a duration in days or weeks, such as P365D or P52W",
        ),
        (
            "group-cycle.yaml",
            "4:10: groups contain each other in a cycle: a -> b -> a",
        ),
        (
            "unknown-group.yaml",
            "4:18: group `Nobody` is not defined in the manifests",
        ),
        ("not-a-mapping.yaml", "1:1: a document must be a mapping"),
        (
            "bad-name.yaml",
            "3:7: name `a/b` may not start or end with spaces, contain `/`, or be `.` or `..`",
        ),
        (
            "wrong-type.yaml",
            "5:11: disabled: \"yes please\" is not of type \"boolean\"",
        ),
        (
            "not-utf8.yaml",
            "not-utf8.yaml: is not UTF-8 text (invalid byte at offset",
        ),
        (
            "alias-fan-out.yaml",
            "2505:10: invalid YAML: copy605[1771]: more than 1214992 nodes in this file, the limit for its size",
        ),
        (
            "duplicate-key.yaml",
            "5:1: invalid YAML: the key `category` appears twice in one mapping",
        ),
    ];
    let mut failures = Vec::new();
    for (file, expected) in cases {
        let path = corpus(file);
        let (code, stdout, stderr) = common::perch(&["validate", &path]);
        let wanted = if expected.starts_with(':') || expected.starts_with(file) {
            expected.to_owned()
        } else {
            format!("{file}:{expected}")
        };
        if code != 1 || !stdout.contains(&wanted) || !stderr.is_empty() {
            failures.push(format!(
                "{file}: exit {code}, wanted `{wanted}`\n{stdout}{stderr}"
            ));
        }
        // The offending line is shown under the message.
        if !expected.contains("UTF-8") && !stdout.contains(" | ") {
            failures.push(format!("{file}: no snippet\n{stdout}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
}

#[test]
fn validate_reports_every_problem_across_files_at_once() {
    let (code, stdout, _) = common::perch(&["validate", &corpus("")]);
    assert_eq!(code, 1);
    let count = stdout
        .lines()
        .filter(|line| line.contains(".yaml:") && !line.starts_with("  "))
        .count();
    assert!(count >= 19, "only {count} problems reported:\n{stdout}");
    let (code, stdout, _) = common::perch(&["validate", &corpus("bad-enum.yaml"), "--json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["problems"][0]["line"], 5);
    assert_eq!(report["problems"][0]["column"], 10);
}

#[test]
fn validate_takes_the_target_flags_and_reads_no_server() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let (code, stdout, stderr) = common::perch(&[
        "validate",
        examples.to_str().unwrap(),
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "unused",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn missing_paths_are_errors() {
    let (code, stdout, _) = common::perch(&["validate", "/nonexistent/manifests"]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("/nonexistent/manifests: cannot read"),
        "{stdout}"
    );
}

fn plan_output(db: &common::TestDb, manifests: &str) -> String {
    let file = db.path().join("m.yaml");
    std::fs::write(&file, manifests).unwrap();
    let (code, stdout, stderr) = common::perch(&["plan", file.to_str().unwrap(), "--db", &db.url]);
    assert_eq!(code, 0, "{stderr}");
    stdout.replace(&db.url, "sqlite://DB")
}

#[test]
fn human_plan_output() {
    let db = common::TestDb::new();
    let manifests = "apiVersion: perch/v1\nkind: Category\nname: Eng\nallowedMembers: [domain:contoso.com]\n---\napiVersion: perch/v1\nkind: Room\nname: eng-news\ncategory: Eng\ntype: auditorium\nmembers: [SIP:Ana@Contoso.com, sip:ben@contoso.com]\npresenters: [sip:ana@contoso.com]\n";
    expect![[r#"
        Perch will make these changes on embedded store sqlite://DB:

          + create Category "Eng"  (absent on the server)
              allowedMembers:
                + domain:contoso.com
          + create Room "eng-news"  (absent on the server)
              category:
                + "Eng"
              members:
                + sip:ana@contoso.com
                + sip:ben@contoso.com
              presenters:
                + sip:ana@contoso.com
              type:
                + "auditorium"

        Plan: 2 to create, 0 to change, 0 to remove.
    "#]]
    .assert_eq(&plan_output(&db, manifests));

    let (code, ..) = common::perch(&[
        "apply",
        db.path().join("m.yaml").to_str().unwrap(),
        "--db",
        &db.url,
        "--yes",
    ]);
    assert_eq!(code, 0);
    let changed = manifests
        .replace(
            "type: auditorium\n",
            "type: normal\ndescription: |\n  News from the VP.\n  Weekly.\n",
        )
        .replace("sip:ben@contoso.com", "sip:cy@contoso.com");
    expect![[r#"
        Perch will make these changes on embedded store sqlite://DB:

          ~ set Room "eng-news"  (description, members, type differ)
              description:
                + News from the VP.
                + Weekly.
              members:
                + sip:cy@contoso.com
                - sip:ben@contoso.com
              type:
                - "auditorium"
                + "normal"

        Plan: 0 to create, 1 to change, 0 to remove.
    "#]]
    .assert_eq(&plan_output(&db, &changed));
}

#[test]
fn usage_errors_exit_1_and_help_explains_exit_codes() {
    let (code, _, stderr) = common::perch(&["plan"]);
    assert_eq!(
        code, 1,
        "a usage error must not look like `changes found` (2): {stderr}"
    );
    let (code, stdout, _) = common::perch(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Exit codes: 0 success, 1 error, 2 changes found"),
        "{stdout}"
    );
    for command in [
        "validate", "plan", "apply", "drift", "export", "schema", "serve", "data", "migrate",
    ] {
        let (code, stdout, _) = common::perch(&[command, "--help"]);
        assert_eq!(code, 0, "{command} --help");
        assert!(stdout.contains("Usage: perch"), "{command}: {stdout}");
    }
}

/// Runs `perch` and returns (exit code, stdout, stderr, peak resident memory in MiB), the peak
/// as the kernel measured it (`wait4`'s resource usage), not guessed from time.
#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which also reports its resource usage"
)]
fn perch_with_peak_memory(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String, u64) {
    use std::io::Read;
    let mut child = std::process::Command::new(common::BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("perch runs");
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let _ = out.read_to_string(&mut stdout);
    stderr.push_str(&reader.join().unwrap());
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills; the pid is our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let peak_mib = u64::try_from(usage.ru_maxrss).unwrap_or(0) / 1024;
    (code, stdout, stderr, peak_mib)
}

#[test]
fn aliases_that_fan_out_stop_at_the_limit_in_bounded_memory() {
    let (code, stdout, stderr, peak_mib) =
        perch_with_peak_memory(&["validate", &corpus("alias-fan-out.yaml")], &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("nodes in this file, the limit for its size"),
        "{stdout}"
    );
    // Before the limit, 5,000 references of 5,000 principals took 3.8 GB and printed 595 MB.
    assert!(stdout.len() < 10_000, "{} bytes of output", stdout.len());
    assert!(peak_mib < 400, "peak memory {peak_mib} MiB");
}

#[test]
fn only_regular_files_within_the_given_paths_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(
        manifests.join("ok.yaml"),
        "apiVersion: perch/v1\nkind: Category\nname: Eng\n",
    )
    .unwrap();
    // A link out of the directory, as a pull request could add to read a CI secret.
    std::os::unix::fs::symlink("/proc/self/environ", manifests.join("environ.yaml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", manifests.join("zero.yaml")).unwrap();
    let fifo = manifests.join("pipe.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // A link within the directory is read.
    std::fs::create_dir(manifests.join("real")).unwrap();
    std::fs::write(
        manifests.join("real/room.yaml"),
        "apiVersion: perch/v1\nkind: Category\nname: Sales\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(manifests.join("real"), manifests.join("linked")).unwrap();

    let path = manifests.display().to_string();
    let (code, stdout, stderr, _) = perch_with_peak_memory(
        &["validate", &path],
        &[("PERCH_CI_SECRET", "hunter2-secret-token")],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        !stdout.contains("hunter2") && !stderr.contains("hunter2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("environ.yaml: is a symbolic link to a place outside the given paths; pass --follow-symlinks"),
        "{stdout}"
    );
    assert!(stdout.contains("zero.yaml: is a symbolic link"), "{stdout}");
    assert!(
        stdout.contains("pipe.yaml: is not a regular file"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("linked"),
        "the link within is read: {stdout}"
    );

    // Told to follow links, it still reads no device, and no more than the limit.
    let (code, stdout, _, peak_mib) =
        perch_with_peak_memory(&["validate", &path, "--follow-symlinks"], &[]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("zero.yaml: is not a regular file"),
        "{stdout}"
    );
    assert!(peak_mib < 400, "peak memory {peak_mib} MiB");

    // Without the traps, the directory validates, the linked directory's file included.
    for trap in ["environ.yaml", "zero.yaml", "pipe.yaml"] {
        std::fs::remove_file(manifests.join(trap)).unwrap();
    }
    let (code, stdout, stderr) = common::perch(&["validate", &path]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("valid: 2 object(s)"), "{stdout}");
}

#[test]
fn a_byte_order_mark_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bom.yaml");
    std::fs::write(
        &file,
        "\u{FEFF}apiVersion: perch/v1\nkind: Category\nname: Eng\n",
    )
    .unwrap();
    let (code, stdout, stderr) = common::perch(&["validate", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn problems_quote_values_short_and_inert() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("escape.yaml");
    let long = "x".repeat(5000);
    std::fs::write(
        &file,
        format!("apiVersion: perch/v1\nkind: Room\nname: \"evil\\e[2J\\rPlan: 0 to create\\a\"\ncategory: C\ndisabled: [{long}]\n"),
    )
    .unwrap();
    let (code, stdout, _) = common::perch(&["validate", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\r') && !stdout.contains('\u{7}'),
        "{stdout:?}"
    );
    assert!(stdout.len() < 3000, "{} bytes: {stdout}", stdout.len());
}

/// Manifests written as the cmdlets spell values (`privacy: Open`, `invitations: "False"`)
/// apply, plan as no change afterwards, and export in the canonical form.
#[test]
fn the_cmdlets_spellings_apply_and_export_canonical() {
    let db = common::TestDb::sqlite();
    let dir = db.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("spelled.yaml"),
        "apiVersion: perch/v1\nkind: Category\nname: Eng\nallowedMembers: [domain:contoso.com]\n\
         invitations: \"False\"\nfileUpload: \"TRUE\"\nchatHistory: \"True\"\nprotect: \"True\"\n\
         ---\napiVersion: perch/v1\nkind: Room\nname: town-hall\ncategory: Eng\nprivacy: Open\n\
         type: Auditorium\ninvitations: \"False\"\ndisabled: \"False\"\n\
         ---\napiVersion: perch/v1\nkind: Room\nname: quiet\ncategory: Eng\nprivacy: SECRET\n\
         invitations: Inherit\n\
         ---\napiVersion: perch/v1\nkind: ComplianceConfiguration\nenabled: \"False\"\nadapterType: XML\n",
    )
    .unwrap();
    let manifests = dir.display().to_string();
    let (code, _, stderr) = common::perch(&["validate", &manifests]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = common::perch(&["apply", "--db", &db.url, "--yes", &manifests]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) =
        common::perch(&["plan", "--db", &db.url, "--detailed-exitcode", &manifests]);
    assert_eq!(code, 0, "no change after the apply:\n{stdout}{stderr}");
    let out = db.path().join("export");
    let (code, _, stderr) =
        common::perch(&["export", "--db", &db.url, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let mut exported = String::new();
    for entry in walk(&out) {
        exported.push_str(&std::fs::read_to_string(entry).unwrap());
    }
    for canonical in [
        "protect: true",
        "privacy: open",
        "type: auditorium",
        "privacy: secret",
        "invitations: false",
        "fileUpload: true",
        "adapterType: xml",
    ] {
        assert!(
            exported.contains(canonical),
            "`{canonical}` in:\n{exported}"
        );
    }
    for spelled in [
        "Open",
        "Auditorium",
        "SECRET",
        "\"False\"",
        "TRUE",
        "XML",
        "Inherit",
    ] {
        assert!(
            !exported.contains(&format!(": {spelled}\n")),
            "`{spelled}` exported:\n{exported}"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|ext| ext == "yaml") {
            files.push(path);
        }
    }
    files
}
