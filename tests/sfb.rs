//! The Skype for Business bridge through the real binary: snapshots in both shapes PowerShell
//! 5.1 writes, the round trip export -> plan (empty), the generated PowerShell (a golden file,
//! hostile text included), every invocation checked against the cmdlets' documented parameter
//! sets, and the errors a snapshot must give rather than a guess.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sfb")
}

fn snapshot(shape: &str) -> String {
    fixtures()
        .join(format!("snapshot-{shape}"))
        .display()
        .to_string()
}

fn map() -> String {
    fixtures().join("principal-map.yaml").display().to_string()
}

fn read_tree(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((name, std::fs::read_to_string(&path).unwrap()));
    }
    files.sort();
    files
}

#[test]
fn both_snapshot_shapes_export_the_same_manifests_and_plan_empty_against_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut exports = Vec::new();
    for shape in ["text", "powershell"] {
        let out = dir.path().join(shape);
        let out_text = out.display().to_string();
        let (code, stdout, stderr) = common::perch(&[
            "export",
            "--sfb-snapshot",
            &snapshot(shape),
            "--principal-map",
            &map(),
            "--out",
            &out_text,
        ]);
        assert_eq!(code, 0, "{shape}: {stdout}{stderr}");
        let (code, stdout, stderr) = common::perch(&[
            "plan",
            "--sfb-snapshot",
            &snapshot(shape),
            "--principal-map",
            &map(),
            "--detailed-exitcode",
            &out_text,
        ]);
        assert_eq!(
            code, 0,
            "{shape}: the plan against the same snapshot is empty:\n{stdout}{stderr}"
        );
        exports.push(read_tree(&out));
    }
    assert_eq!(
        exports[0], exports[1],
        "UTF-8 and UTF-16, arrays, {{value, Count}} and single objects, bare one-item lists, TimeSpan objects and text read alike"
    );
    let rooms: String = exports[0]
        .iter()
        .filter(|(name, _)| name.starts_with("rooms-"))
        .map(|(_, text)| text.as_str())
        .collect();
    for canonical in [
        "privacy: secret",
        "type: auditorium",
        "invitations: false",
        "- group:Leads",
        "addin: Dashboards",
    ] {
        assert!(rooms.contains(canonical), "`{canonical}` in\n{rooms}");
    }
}

const MANIFESTS: &str = r#"apiVersion: perch/v1
kind: Group
name: Leads
---
apiVersion: perch/v1
kind: Category
name: Engineering
description: Engineering rooms
allowedMembers: [domain:contoso.com]
deniedMembers: [sip:mallory@contoso.com]
creators: [group:Leads]
invitations: false
---
apiVersion: perch/v1
kind: Category
name: "Ops'; Remove-Item -Recurse C:, $(Stop-Computer) #"
description: "$(Stop-Computer) `whoami` ‘smart’ quotes\nand a second line'"
allowedMembers: [domain:contoso.com]
invitations: true
fileUpload: true
chatHistory: false
creators: [sip:vera@contoso.com]
---
apiVersion: perch/v1
kind: Room
name: general
category: Engineering
description: Everyone
privacy: closed
addin: Wiki
members: [sip:ann@contoso.com, sip:carol@contoso.com]
managers: [sip:vera@contoso.com]
---
apiVersion: perch/v1
kind: Room
name: town-hall
protect: true
category: Engineering
description: Monthly all hands
privacy: closed
type: auditorium
invitations: false
members: [group:Leads, sip:ann@contoso.com]
managers: [sip:vera@contoso.com]
presenters: [sip:vera@contoso.com]
---
apiVersion: perch/v1
kind: Room
name: ops-room
category: "Ops'; Remove-Item -Recurse C:, $(Stop-Computer) #"
description: "it's `$env:USERNAME`"
privacy: Secret
type: Auditorium
invitations: "False"
disabled: "True"
members: [group:Leads, sip:ann@contoso.com]
managers: [sip:vera@contoso.com]
presenters: [sip:ann@contoso.com]
---
apiVersion: perch/v1
kind: Addin
name: Dashboards
url: https://dashboards.contoso.com/
---
apiVersion: perch/v1
kind: Addin
name: Wiki
url: https://wiki.contoso.com/?a='b'
---
apiVersion: perch/v1
kind: ComplianceConfiguration
enabled: true
adapterName: Archive
adapterType: xml
runInterval: "00:30:00"
addUserDetails: true
"#;

/// Splits a script into statements and each statement into tokens, as PowerShell reads them:
/// a single-quoted string ends at any of its five quote characters unless it is doubled, and
/// `@{...}`/`@(...)` are one token. Comments and blank lines are dropped.
fn statements(script: &str) -> Vec<Vec<String>> {
    const QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];
    let chars: Vec<char> = script.chars().collect();
    let mut statements = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut i = 0;
    let flush = |token: &mut String, tokens: &mut Vec<String>| {
        if !token.is_empty() {
            tokens.push(std::mem::take(token));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if QUOTES.contains(&c) {
            // A string literal: its value, unquoted, is the token.
            i += 1;
            let mut value = String::new();
            loop {
                assert!(i < chars.len(), "an unterminated string in the script");
                if QUOTES.contains(&chars[i]) {
                    if i + 1 < chars.len() && QUOTES.contains(&chars[i + 1]) {
                        value.push(chars[i]);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                value.push(chars[i]);
                i += 1;
            }
            token.push_str(&format!("'{value}'"));
            continue;
        }
        if c == '@' && i + 1 < chars.len() && (chars[i + 1] == '{' || chars[i + 1] == '(') {
            let (open, close) = if chars[i + 1] == '{' {
                ('{', '}')
            } else {
                ('(', ')')
            };
            let mut depth = 0;
            let mut in_quote = false;
            while i < chars.len() {
                let d = chars[i];
                token.push(d);
                i += 1;
                if QUOTES.contains(&d) {
                    in_quote = !in_quote;
                } else if !in_quote && d == open {
                    depth += 1;
                } else if !in_quote && d == close {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
            }
            continue;
        }
        if c == '#' && token.is_empty() && tokens.is_empty() {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '\n' {
            flush(&mut token, &mut tokens);
            if !tokens.is_empty() {
                statements.push(std::mem::take(&mut tokens));
            }
        } else if c == ' ' {
            flush(&mut token, &mut tokens);
        } else {
            token.push(c);
        }
        i += 1;
    }
    flush(&mut token, &mut tokens);
    if !tokens.is_empty() {
        statements.push(tokens);
    }
    statements
}

/// Checks every invocation against the documented parameter sets: each parameter exists, a
/// switch takes no value and every other parameter one, and one set holds them all with its
/// mandatory parameters given. Returns the cmdlets used.
fn check_against_documented_syntax(script: &str) -> BTreeSet<String> {
    let documented: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cmdlets.json")).unwrap())
            .unwrap();
    let mut used = BTreeSet::new();
    for statement in statements(script) {
        let cmdlet = &statement[0];
        if cmdlet.starts_with('$') {
            assert_eq!(statement, ["$ErrorActionPreference", "=", "'Stop'"]);
            continue;
        }
        let sets = documented["cmdlets"][cmdlet.as_str()]["parameterSets"]
            .as_array()
            .unwrap_or_else(|| panic!("`{cmdlet}` is not a documented cmdlet"));
        let all: Vec<&Value> = sets
            .iter()
            .flat_map(|set| set["parameters"].as_array().unwrap())
            .collect();
        let is_switch = |name: &str| {
            all.iter().any(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    && p["switch"] == Value::Bool(true)
            })
        };
        let mut given = BTreeSet::new();
        let mut tokens = statement[1..].iter();
        while let Some(token) = tokens.next() {
            let name = token.strip_prefix('-').unwrap_or_else(|| {
                panic!("`{cmdlet}`: `{token}` is not a parameter: {statement:?}")
            });
            let (name, attached) = match name.split_once(':') {
                Some((name, value)) => (name, Some(value)),
                None => (name, None),
            };
            if is_switch(name) {
                assert!(attached.is_none_or(|v| v == "$false" || v == "$true"));
            } else {
                let value = tokens
                    .next()
                    .unwrap_or_else(|| panic!("`{cmdlet} -{name}` has no value"));
                assert!(!value.starts_with('-'), "`{cmdlet} -{name}` has no value");
                assert!(
                    value.starts_with('\'')
                        || value.starts_with("@{")
                        || value.starts_with("@(")
                        || value == "$true"
                        || value == "$false",
                    "`{cmdlet} -{name}` has an unquoted value `{value}`"
                );
            }
            given.insert(name.to_ascii_lowercase());
        }
        let fits = sets.iter().any(|set| {
            let parameters = set["parameters"].as_array().unwrap();
            let names: BTreeSet<String> = parameters
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_ascii_lowercase())
                .collect();
            let mandatory = parameters
                .iter()
                .filter(|p| p["mandatory"] == Value::Bool(true))
                .all(|p| given.contains(&p["name"].as_str().unwrap().to_ascii_lowercase()));
            given.is_subset(&names) && mandatory
        });
        assert!(
            fits,
            "`{cmdlet}` with {given:?} fits no documented parameter set"
        );
        used.insert(cmdlet.clone());
    }
    used
}

#[test]
fn apply_writes_the_cmdlets_of_every_action_quoted_and_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("pool.yaml"), MANIFESTS).unwrap();
    let script_path = dir.path().join("plan.ps1");
    let (code, stdout, stderr) = common::perch(&[
        "apply",
        "--sfb-snapshot",
        &snapshot("text"),
        "--principal-map",
        &map(),
        "--out",
        script_path.to_str().unwrap(),
        manifests.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("Wrote "), "{stdout}");
    let bytes = std::fs::read(&script_path).unwrap();
    assert!(
        bytes.starts_with(&[0xEF, 0xBB, 0xBF]),
        "a byte-order mark, so that PowerShell 5.1 reads UTF-8 and not the ANSI code page"
    );
    let script = String::from_utf8(bytes)
        .unwrap()
        .trim_start_matches('\u{feff}')
        .to_owned();
    // The snapshot's path and time differ from machine to machine.
    let stable: String = script
        .lines()
        .map(|line| {
            if line.starts_with("# Planned against the snapshot") {
                "# Planned against the snapshot (path and time)".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    expect_test::expect_file!["fixtures/sfb/golden.ps1"].assert_eq(&stable);

    let used = check_against_documented_syntax(&script);
    for cmdlet in [
        "New-CsPersistentChatCategory",
        "Set-CsPersistentChatCategory",
        "Remove-CsPersistentChatCategory",
        "New-CsPersistentChatRoom",
        "Set-CsPersistentChatRoom",
        "Remove-CsPersistentChatRoom",
        "New-CsPersistentChatAddin",
        "Set-CsPersistentChatAddin",
        "Set-CsPersistentChatComplianceConfiguration",
    ] {
        assert!(used.contains(cmdlet), "no `{cmdlet}` in the script");
    }
    // Hostile text comes back whole, as one string each.
    let tokens: Vec<String> = statements(&script).into_iter().flatten().collect();
    for hostile in [
        "'$(Stop-Computer) `whoami` ‘smart’ quotes\nand a second line''",
        "'chat.contoso.com\\Ops'; Remove-Item -Recurse C:, $(Stop-Computer) #'",
        "'it's `$env:USERNAME`'",
    ] {
        assert!(
            tokens.iter().any(|token| token == hostile),
            "`{hostile}` is not one string in:\n{script}"
        );
    }
    // Removals come last, rooms before their categories.
    let position = |needle: &str| {
        script
            .find(needle)
            .unwrap_or_else(|| panic!("no `{needle}`"))
    };
    assert!(
        position("Remove-CsPersistentChatRoom -Identity 'chat.contoso.com\\war-room'")
            < position("Remove-CsPersistentChatCategory -Identity 'chat.contoso.com\\Quiet'")
    );
    assert!(
        position("New-CsPersistentChatRoom -Name 'ops-room'")
            < position("Remove-CsPersistentChatRoom")
    );
}

/// Copies the text-shaped snapshot into `dir/name`, letting `edit` change each file's JSON
/// (given its name) first; the copy's path.
fn edited_snapshot(dir: &Path, name: &str, edit: &dyn Fn(&str, &mut Value)) -> String {
    let target = dir.join(name);
    std::fs::create_dir_all(&target).unwrap();
    for file in [
        "categories.json",
        "rooms.json",
        "addins.json",
        "compliance.json",
    ] {
        let text = std::fs::read_to_string(fixtures().join("snapshot-text").join(file)).unwrap();
        let mut value: Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).unwrap();
        edit(file, &mut value);
        std::fs::write(target.join(file), value.to_string()).unwrap();
    }
    target.display().to_string()
}

/// A case of a snapshot refused: (name, how the first room is edited, whether the principal
/// map is given, what the error must say).
type Refusal<'a> = (&'a str, &'a dyn Fn(&mut Value), bool, &'a str);

#[test]
fn a_snapshot_is_refused_where_reading_it_would_be_a_guess() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str, edit: &dyn Fn(&mut Value)| {
        edited_snapshot(dir.path(), name, &|file, value| {
            if file == "rooms.json" {
                edit(&mut value[0]);
            }
        })
    };
    let cases: [Refusal; 6] = [
        (
            "unknown-number",
            &|room| room["Privacy"] = 0.into(),
            true,
            "rooms.json: `general`: Privacy: the enum number 0: the cmdlets' numbering is not published",
        ),
        (
            "cut-list",
            &|room| room["Managers"] = "sip:vera@contoso.com sip:ann@contoso.com".into(),
            true,
            "rooms.json: `general`: Managers: the list was cut to text",
        ),
        (
            "unknown-shape",
            &|room| room["Disabled"] = serde_json::json!([1]),
            true,
            "rooms.json: `general`: Disabled: expected True or False, found a list",
        ),
        (
            "missing-property",
            &|room| {
                room.as_object_mut().unwrap().remove("Type");
            },
            true,
            "rooms.json: `general`: Type: missing",
        ),
        (
            "cut-distinguished-names",
            &|room| room["Members"] = "CN=A,DC=contoso,DC=com CN=B,DC=contoso,DC=com".into(),
            true,
            "rooms.json: `general`: Members: the list was cut to text",
        ),
        (
            "no-map",
            &|_| {},
            false,
            "categories.json: `Engineering`: AllowedMembers: `DC=contoso,DC=com` is a distinguished name the principal map",
        ),
    ];
    for (name, edit, with_map, wanted) in cases {
        let snapshot = copy(name, edit);
        let mut args = vec!["export", "--sfb-snapshot", &snapshot, "--out"];
        let out = dir.path().join(format!("{name}-out")).display().to_string();
        args.push(&out);
        let map = map();
        if with_map {
            args.extend(["--principal-map", map.as_str()]);
        }
        let (code, stdout, stderr) = common::perch(&args);
        assert_eq!(code, 1, "{name}: {stdout}{stderr}");
        assert!(
            stderr.contains(wanted),
            "{name}: wanted `{wanted}` in:\n{stderr}"
        );
    }
    // With the pool's numbering beside the snapshot, numbers are read by it, and a number it
    // does not give is refused all the same.
    for (number, wanted) in [
        (
            7,
            "Privacy: the enum number 7 is not among those enums.json gives (0 Open, 1 Closed, 2 Secret)",
        ),
        (2, ""),
    ] {
        let snapshot = copy(&format!("numbered-{number}"), &|room| {
            room["Privacy"] = number.into();
        });
        std::fs::copy(
            fixtures().join("snapshot-powershell/enums.json"),
            Path::new(&snapshot).join("enums.json"),
        )
        .unwrap();
        let out = dir
            .path()
            .join(format!("numbered-{number}-out"))
            .display()
            .to_string();
        let (code, stdout, stderr) = common::perch(&[
            "export",
            "--sfb-snapshot",
            &snapshot,
            "--principal-map",
            &map(),
            "--out",
            &out,
        ]);
        if wanted.is_empty() {
            assert_eq!(code, 0, "{stdout}{stderr}");
            let rooms = std::fs::read_to_string(Path::new(&out).join("rooms-engineering.yaml"))
                .unwrap_or_default();
            assert!(
                rooms.contains("privacy: secret"),
                "2 is Secret by the table: {rooms}"
            );
        } else {
            assert_eq!(code, 1, "{stdout}{stderr}");
            assert!(stderr.contains(wanted), "wanted `{wanted}` in:\n{stderr}");
        }
    }
    // A missing file names the one-liner that captures it.
    let missing = dir.path().join("missing");
    std::fs::create_dir_all(&missing).unwrap();
    let (code, _, stderr) = common::perch(&[
        "plan",
        "--sfb-snapshot",
        missing.to_str().unwrap(),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("Get-CsPersistentChatCategory | Select-Object * | ConvertTo-Json -Depth 5"),
        "{stderr}"
    );
}

#[test]
fn an_unmapped_group_stops_the_script_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("pool.yaml"),
        MANIFESTS.replace(
            "creators: [group:Leads]",
            "creators: [group:Leads, group:Ops]",
        ) + "---\napiVersion: perch/v1\nkind: Group\nname: Ops\n",
    )
    .unwrap();
    let script = dir.path().join("plan.ps1");
    let (code, stdout, stderr) = common::perch(&[
        "apply",
        "--sfb-snapshot",
        &snapshot("text"),
        "--principal-map",
        &map(),
        "--out",
        script.to_str().unwrap(),
        manifests.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("`group:Ops` has no distinguished name"),
        "{stderr}"
    );
    assert!(!script.exists(), "no half-written script");
}

#[test]
fn the_readme_gives_the_capture_one_liners_the_reader_names() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let enums = perch::live::sfb::snapshot::ENUMS_FILE.1;
    for capture in perch::live::sfb::snapshot::FILES
        .iter()
        .map(|(_, _, capture)| *capture)
        .chain([enums])
    {
        assert!(readme.contains(capture), "the README lacks `{capture}`");
    }
}

#[test]
fn only_the_chosen_pool_counts_and_names_are_unique_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let with_category = |name: &str, identity: &str| {
        edited_snapshot(dir.path(), name, &|file, value| {
            if file == "categories.json" {
                let mut extra = value[1].clone();
                extra["Identity"] = identity.into();
                extra["Name"] = Value::Null;
                value.as_array_mut().unwrap().push(extra);
            }
        })
    };
    let two_pools = with_category("two-pools", "other.contoso.com\\Quiet");
    let out = dir.path().join("out").display().to_string();
    let (code, _, stderr) = common::perch(&[
        "export",
        "--sfb-snapshot",
        &two_pools,
        "--principal-map",
        &map(),
        "--out",
        &out,
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("several pools (chat.contoso.com, other.contoso.com)"),
        "{stderr}"
    );
    let (code, stdout, stderr) = common::perch(&[
        "export",
        "--sfb-snapshot",
        &two_pools,
        "--principal-map",
        &map(),
        "--sfb-pool",
        "chat.contoso.com",
        "--out",
        &out,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = common::perch(&[
        "plan",
        "--sfb-snapshot",
        &two_pools,
        "--principal-map",
        &map(),
        "--sfb-pool",
        "chat.contoso.com",
        "--detailed-exitcode",
        &out,
    ]);
    assert_eq!(
        code, 0,
        "the other pool's objects are left out, never planned:\n{stdout}{stderr}"
    );
    let (code, _, stderr) = common::perch(&[
        "plan",
        "--sfb-snapshot",
        &two_pools,
        "--principal-map",
        &map(),
        "--sfb-pool",
        "third.contoso.com",
        &out,
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--sfb-pool third.contoso.com is not among"),
        "{stderr}"
    );

    let twice = with_category("twice", "chat.contoso.com\\quiet");
    let (code, _, stderr) = common::perch(&[
        "plan",
        "--sfb-snapshot",
        &twice,
        "--principal-map",
        &map(),
        &out,
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("names are unique without regard to case"),
        "{stderr}"
    );
}

/// What `perch export` writes for `db`, file by file.
fn export_of(db: &str, out: &Path) -> Vec<(String, String)> {
    let out_text = out.display().to_string();
    let (code, stdout, stderr) = common::perch(&["export", "--db", db, "--out", &out_text]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    read_tree(out)
}

#[test]
fn the_export_zip_imports_into_an_empty_server_and_exports_stably() {
    let zip_path = fixtures().join("PersistentChatData.zip");
    // The committed zip holds exactly the documented files of `export/`.
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap())
        .expect("the fixture is a zip");
    let mut entries = Vec::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        entries.push((entry.name().to_owned(), text));
    }
    entries.sort();
    assert_eq!(entries, read_tree(&fixtures().join("export")));

    let db = common::TestDb::new();
    let zip_text = zip_path.display().to_string();
    let (code, stdout, stderr) = common::perch(&[
        "data",
        "import",
        "--sfb",
        &zip_text,
        "--db",
        &db.url,
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("dry run: would import 6 object(s) and 0 message(s)"),
        "two groups, the category and three rooms: {stdout}"
    );
    assert!(
        !stderr.contains("not imported"),
        "the fixture holds only what the known format describes: {stderr}"
    );
    let rooms = |db: &str| -> Value {
        let (code, stdout, stderr) = common::perch(&["room", "list", "--db", db, "--json"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        serde_json::from_str(&stdout).unwrap()
    };
    // A dry run changes nothing: on SQLite it does not even create the file.
    if common::postgres_wanted() || db.path().join("perch.db").exists() {
        assert_eq!(
            rooms(&db.url),
            serde_json::json!([]),
            "a dry run changes nothing"
        );
    }

    let (code, stdout, stderr) =
        common::perch(&["data", "import", "--sfb", &zip_text, "--db", &db.url]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("imported 6 object(s)"), "{stdout}");
    assert!(
        stderr.contains("in the category `Skype for Business`"),
        "{stderr}"
    );
    let listed = rooms(&db.url);
    let by_name = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|room| room["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {listed}"))
            .clone()
    };
    let it = by_name("ITChatRoom");
    assert_eq!(
        it["members"],
        serde_json::json!(["group:sfb-group-201", "sip:ken.myer@litwareinc.com"])
    );
    assert_eq!(
        it["managers"],
        serde_json::json!(["sip:ken.myer@litwareinc.com"])
    );
    assert_eq!(it["category"], "Skype for Business");
    let archive_room = by_name("Helpdesk archive");
    assert_eq!(archive_room["disabled"], true);
    assert_eq!(
        archive_room["description"],
        "Closed in 2019 <b>read-only</b> & kept; 'quotes' $(whoami) `n"
    );
    assert_eq!(
        by_name("Café Ñandú")["managers"],
        serde_json::json!(["sip:temp7@litwareinc.com"])
    );

    // The result is a configuration Perch holds whole: its export validates, plans empty, and
    // a second export is the same.
    let dir = tempfile::tempdir().unwrap();
    let first = export_of(&db.url, &dir.path().join("first"));
    let first_dir = dir.path().join("first").display().to_string();
    let (code, stdout, stderr) = common::perch(&["validate", &first_dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) =
        common::perch(&["plan", "--db", &db.url, "--detailed-exitcode", &first_dir]);
    assert_eq!(
        code, 0,
        "the plan over the export is empty:\n{stdout}{stderr}"
    );
    assert_eq!(export_of(&db.url, &dir.path().join("second")), first);
    let groups: String = first
        .iter()
        .filter(|(name, _)| name.starts_with("groups"))
        .map(|(_, text)| text.as_str())
        .collect();
    assert!(groups.contains("sfb-group-202"), "{groups}");

    // A second import meets what the first brought and changes nothing.
    let (code, _, stderr) = common::perch(&["data", "import", "--sfb", &zip_text, "--db", &db.url]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
}

#[test]
fn an_export_zip_in_the_other_shape_imports_through_a_server_and_reports_what_it_cannot_bring() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("PersistentChatData.zip");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    // Indented, properties as child elements, and parts no public source describes.
    let files = [
        (
            "AdUsers.xml",
            "<Pool>\n  <AdUsers>\n    <User>\n      <principalId>1</principalId>\n      <UserPrincipalName>ana@contoso.com</UserPrincipalName>\n      <SipAddress>sip:ana@contoso.com</SipAddress>\n    </User>\n  </AdUsers>\n</Pool>\n",
        ),
        ("AdGroups.xml", "<Pool>\n  <AdGroups/>\n</Pool>\n"),
        (
            "AdAffiliations.xml",
            "<Pool>\n  <AdAffiliations>\n    <User id=\"1\"><Groups/></User>\n  </AdAffiliations>\n</Pool>\n",
        ),
        (
            "ChatRooms.xml",
            "<Pool>\n  <ChatRooms>\n    <ChatRoom isDisabled=\"false\" privacy=\"Secret\">\n      <Name>ops</Name>\n      <Desc>Operations</Desc>\n      <Roles>\n        <Principal id=\"1\" isManager=\"1\" isMember=\"1\" isCreator=\"0\" isPresenter=\"1\"/>\n      </Roles>\n    </ChatRoom>\n  </ChatRooms>\n</Pool>\n",
        ),
        (
            "Content/ops.xml",
            "<Messages><Message>hello</Message></Messages>",
        ),
    ];
    for (name, text) in files {
        writer.start_file(name, options).unwrap();
        writer.write_all(text.as_bytes()).unwrap();
    }
    writer.finish().unwrap();

    let db = common::TestDb::new();
    let token = common::create_token(&db.url, "sip:admin@contoso.com", "admin");
    let server = common::TestServer::start(&db.url);
    let zip_text = zip_path.display().to_string();
    let (code, stdout, stderr) = common::perch(&[
        "data",
        "import",
        "--sfb",
        &zip_text,
        "--category",
        "Operations",
        "--server",
        &server.base,
        "--token",
        &token,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("imported 2 object(s)"), "{stdout}");
    for reported in [
        "AdUsers.xml: Pool/AdUsers/User/SipAddress (1x)",
        "ChatRooms.xml: ChatRooms/ChatRoom/@privacy (1x)",
        "ChatRooms.xml: ChatRooms/ChatRoom/Roles/Principal/@isPresenter (1x)",
        "Content/ops.xml: a file the known format does not describe (1x)",
    ] {
        assert!(stderr.contains(reported), "{reported} in:\n{stderr}");
    }
    let (code, stdout, stderr) = common::perch(&[
        "room",
        "list",
        "--server",
        &server.base,
        "--token",
        &token,
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed[0]["name"], "ops");
    assert_eq!(listed[0]["category"], "Operations");
    assert_eq!(
        listed[0]["privacy"], "closed",
        "the export's privacy is not guessed at"
    );

    // What is not a zip, or not the export, says so and changes nothing.
    let not_zip = dir.path().join("not.zip");
    std::fs::write(&not_zip, "PK not really").unwrap();
    let (code, _, stderr) = common::perch(&[
        "data",
        "import",
        "--sfb",
        &not_zip.display().to_string(),
        "--server",
        &server.base,
        "--token",
        &token,
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a zip archive"), "{stderr}");
}
