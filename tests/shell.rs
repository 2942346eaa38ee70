//! The shell conventions through the real binary: completion scripts and manual pages are
//! generated from the same definitions as `--help`, for every command.

mod common;

#[test]
fn completions_cover_every_shell_and_command() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let (code, stdout, stderr) = common::perch(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {stderr}");
        for word in [
            "plan",
            "forget",
            "members",
            "target",
            "sfb-snapshot",
            "max-remove",
            "completions",
        ] {
            assert!(stdout.contains(word), "{shell} completes {word}");
        }
    }
    let (code, _, stderr) = common::perch(&["completions", "tcsh"]);
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn manual_pages_are_written_for_every_command() {
    let (code, stdout, _) = common::perch(&["man"]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(".ie") || stdout.contains(".TH perch 1"),
        "{stdout}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = common::perch(&["man", "--out", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        stdout.contains(&format!("wrote {} manual page(s)", pages.len())),
        "{stdout}"
    );
    for page in [
        "perch.1",
        "perch-plan.1",
        "perch-apply.1",
        "perch-forget.1",
        "perch-room-members-add.1",
        "perch-data-import.1",
        "perch-man.1",
    ] {
        assert!(pages.contains(&page.to_owned()), "{page} in {pages:?}");
    }
    for page in &pages {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH "), "{page} is a manual page");
        assert!(text.contains(".SH NAME"), "{page} names its command");
    }
    let plan = std::fs::read_to_string(dir.path().join("perch-plan.1")).unwrap();
    assert!(plan.contains("max\\-remove"), "the page lists plan's flags");
}

/// A reader that leaves a pipe early (`perch plan --json | head`) is no error and no panic:
/// the command does its work and exits with its own code. A full disk behind `>` is an
/// error that says so, never a cut-short output taken for a whole one.
#[test]
#[cfg(target_os = "linux")] // `/dev/full`
fn output_to_a_reader_that_left_or_to_a_full_disk() {
    let db = common::TestDb::new();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let examples = examples.to_str().unwrap();
    let plan = [
        "plan",
        examples,
        "--db",
        db.url.as_str(),
        "--json",
        "--detailed-exitcode",
        "--no-cache",
    ];
    let cases: [(&[&str], i32); 4] = [
        (&plan, 2),
        (&["schema"], 0),
        (&["completions", "bash"], 0),
        (&["man"], 0),
    ];
    let run = |args: &[&str], stdout: std::process::Stdio| {
        std::process::Command::new(common::BIN)
            .args(args)
            .env("PERCH_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .output()
            .expect("run perch")
    };
    for (args, code) in cases {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = run(args, writer.into());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");

        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let output = run(args, full.into());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("error: cannot write the output: No space left on device"),
            "{args:?}: {stderr}"
        );
    }
}
