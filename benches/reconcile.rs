//! The reconciler at scale, through the real binary (release build) on the embedded store:
//! for 1,000 / 10,000 / 100,000 rooms with 10 members each, the wall time and peak memory of
//! plan on an empty target, apply, no-op plan, plan after one change, export, and no-op plan
//! over HTTP; and the no-op plan again through the plan cache (unchanged files, unchanged
//! server), embedded and over HTTP. Every other figure is made with `--no-cache`.
//!
//! Read-only commands run three times and the median is printed: on this virtual machine the
//! kernel's time to hand a process fresh memory varies from run to run by several tenths of a
//! second, which a single run would report as the command's own.
//!
//! Run: `cargo bench --bench reconcile` (`PERCH_BENCH_SIZES=1000,10000` to choose sizes).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const CATEGORIES: usize = 10;
const ROOMS_PER_FILE: usize = 1000;

fn write_manifests(dir: &Path, rooms: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut categories = String::new();
    for category in 0..CATEGORIES {
        let _ = write!(
            categories,
            "---\napiVersion: perch/v1\nkind: Category\nname: cat-{category}\nallowedMembers: [domain:contoso.com]\n"
        );
    }
    std::fs::write(dir.join("categories.yaml"), categories).unwrap();
    for start in (0..rooms).step_by(ROOMS_PER_FILE) {
        let mut text = String::new();
        for room in start..(start + ROOMS_PER_FILE).min(rooms) {
            let members: Vec<String> = (0..10)
                .map(|m| format!("sip:user{}@contoso.com", (room * 7 + m) % 50_000))
                .collect();
            let _ = write!(
                text,
                "---\napiVersion: perch/v1\nkind: Room\nname: room-{room:06}\ncategory: cat-{}\nprivacy: closed\ndescription: Room number {room}\nmembers: [{}]\n",
                room % CATEGORIES,
                members.join(", ")
            );
        }
        std::fs::write(dir.join(format!("rooms-{start:06}.yaml")), text).unwrap();
    }
}

/// Runs perch, returning (seconds, peak RSS in MiB if measurable, exit code).
fn timed(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (f64, Option<f64>, i32) {
    let gnu_time = Path::new("/usr/bin/time").exists();
    let mut command = if gnu_time {
        let mut command = Command::new("/usr/bin/time");
        command.args(["-f", "%M", "-o", "rss.txt", common::BIN]);
        command
    } else {
        Command::new(common::BIN)
    };
    command
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .env("PERCH_LOG", "error");
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let status = command.status().expect("run perch");
    let seconds = started.elapsed().as_secs_f64();
    let rss = gnu_time
        .then(|| std::fs::read_to_string(cwd.join("rss.txt")).ok())
        .flatten()
        .and_then(|text| text.trim().lines().last()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0);
    (seconds, rss, status.code().unwrap_or(-1))
}

/// The median of three runs of a read-only command (by wall time).
fn median_of_three(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (f64, Option<f64>, i32) {
    let mut runs: Vec<(f64, Option<f64>, i32)> = (0..3).map(|_| timed(args, cwd, env)).collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs[1]
}

fn main() {
    let sizes: Vec<usize> = std::env::var("PERCH_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "reconciler on the embedded store (SQLite), rooms with 10 members each; seconds (peak RSS MiB)"
    );
    println!(
        "{:>8} | {:>15} | {:>15} | {:>15} | {:>15} | {:>15} | {:>15} | {:>15} | {:>15}",
        "rooms",
        "plan (empty)",
        "apply",
        "no-op plan",
        "plan 1 change",
        "export",
        "no-op plan HTTP",
        "no-op cached",
        "cached HTTP"
    );
    let mut floors = Vec::new();
    for rooms in sizes {
        let db = common::TestDb::new();
        let dir_buf = db.path();
        let dir = dir_buf.as_path();
        let manifests = dir.join("manifests");
        write_manifests(&manifests, rooms);
        let m = manifests.to_str().unwrap();
        let db_args = ["--db", db.url.as_str()];
        let (validate, _, code) = median_of_three(&["validate", m], dir, &[]);
        assert_eq!(code, 0, "perch validate failed on the generated manifests");
        floors.push((
            rooms,
            parser_alone(&manifests, libyaml),
            parser_alone(&manifests, perch_reader),
            validate,
        ));
        let cell = |(seconds, rss, code): (f64, Option<f64>, i32), expected: &[i32]| {
            assert!(
                expected.contains(&code),
                "perch exited {code}, expected {expected:?}"
            );
            match rss {
                Some(rss) => format!("{seconds:>6.2} ({rss:>5.0})"),
                None => format!("{seconds:>6.2}"),
            }
        };
        let plan_empty = cell(
            median_of_three(
                &[
                    &["plan", m, "--detailed-exitcode", "--no-cache"][..],
                    &db_args,
                ]
                .concat(),
                dir,
                &[],
            ),
            &[2],
        );
        let apply = cell(
            timed(&[&["apply", m, "--yes"][..], &db_args].concat(), dir, &[]),
            &[0],
        );
        let noop = cell(
            median_of_three(
                &[
                    &["plan", m, "--detailed-exitcode", "--no-cache"][..],
                    &db_args,
                ]
                .concat(),
                dir,
                &[],
            ),
            &[0],
        );
        let first = manifests.join("rooms-000000.yaml");
        let text = std::fs::read_to_string(&first).unwrap().replacen(
            "description: Room number 0\n",
            "description: Renamed\n",
            1,
        );
        std::fs::write(&first, text).unwrap();
        let one_change = cell(
            median_of_three(
                &[
                    &["plan", m, "--detailed-exitcode", "--no-cache"][..],
                    &db_args,
                ]
                .concat(),
                dir,
                &[],
            ),
            &[2],
        );
        let out = dir.join("export");
        let export = cell(
            median_of_three(
                &[&["export", "--out", out.to_str().unwrap()][..], &db_args].concat(),
                dir,
                &[],
            ),
            &[0],
        );
        let token = common::create_token(&db.url, "sip:admin@contoso.com", "admin");
        let server = common::TestServer::start(&db.url);
        let http = cell(
            median_of_three(
                &[
                    "plan",
                    out.to_str().unwrap(),
                    "--detailed-exitcode",
                    "--no-cache",
                    "--server",
                    &server.base,
                ],
                dir,
                &[("PERCH_TOKEN", &token)],
            ),
            &[0],
        );
        // The plan cache: one plan fills it, the next ones are read from it.
        let cache = dir.join("plan-cache");
        let cache = cache.to_str().unwrap();
        let cached = |target: &[&str], env: &[(&str, &str)]| {
            let args = [
                &["plan", out.to_str().unwrap(), "--detailed-exitcode"][..],
                &["--plan-cache", cache],
                target,
            ]
            .concat();
            let (_, _, code) = timed(&args, dir, env);
            assert_eq!(code, 0, "the plan that fills the cache");
            cell(median_of_three(&args, dir, env), &[0])
        };
        let noop_cached = cached(&db_args, &[]);
        let http_cached = cached(&["--server", &server.base], &[("PERCH_TOKEN", &token)]);
        drop(server);
        println!(
            "{rooms:>8} | {plan_empty:>15} | {apply:>15} | {noop:>15} | {one_change:>15} | {export:>15} | {http:>15} | {noop_cached:>15} | {http_cached:>15}"
        );
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8);
    println!(
        "the floor of an uncached plan: a YAML parser alone into JSON values, the files read beforehand, on {threads} threads as perch's validation runs (libyaml through serde_yaml_ng; Perch's reader, the subset of YAML manifests are written in with libyaml for the rest), beside `perch validate` (median of three)"
    );
    for (rooms, libyaml, reader, validate) in floors {
        println!(
            "{rooms:>8} rooms: libyaml alone {libyaml:.2} s; Perch's reader alone {reader:.2} s; perch validate {validate:.2} s"
        );
    }
}

/// Seconds (median of three) that a YAML parser alone takes over every file under `dir`,
/// read beforehand, on as many threads as `perch validate` uses: no schema, rules or plan.
/// No uncached plan can be faster than this with this parser.
fn parser_alone(dir: &Path, parse: impl Fn(&str) + Sync) -> f64 {
    let texts: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8);
    let mut runs: Vec<f64> = (0..3)
        .map(|_| {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let started = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        loop {
                            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(text) = texts.get(index) else { break };
                            parse(text);
                        }
                    });
                }
            });
            started.elapsed().as_secs_f64()
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[1]
}

/// libyaml (through serde_yaml_ng) into JSON values, without budgets.
fn libyaml(text: &str) {
    use serde::Deserialize as _;
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        std::hint::black_box(serde_json::Value::deserialize(document).expect("YAML"));
    }
}

/// Perch's reader: the subset manifests are written in, libyaml for any other text.
fn perch_reader(text: &str) {
    std::hint::black_box(perch::manifest::yaml::parse_values(text).expect("YAML"));
}
