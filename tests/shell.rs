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
