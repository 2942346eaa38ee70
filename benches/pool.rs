//! The original's pool on one machine: `perch serve` nodes (4) on one PostgreSQL, a live stream
//! per user (60,000 in all, spread evenly over the nodes by client processes: one process may
//! hold at most 20,000 open files here), 33,077 rooms (one of them of 16,000 members through two
//! groups, the others of one or two), and for 60 s 24 posts a second (one of them in the big
//! room) and 10 joins a second (a room's live stream opened, which compliance records, and
//! closed 5 s later), each through a node picked in turn. Prints p50/p99/max from post to
//! arrival on every member's stream, deliveries expected and arrived (nothing may be lost),
//! and each node's memory. A first post in the big room, before the load, is reported
//! apart: at it every stream judges its access to the room once (as in the fan-out bench).
//! So are the posts of the load's first seconds, a warm-up (see [`WARM_UP_SECONDS`]).
//!
//! Run: `PERCH_TEST_BACKEND=postgres cargo bench --bench pool` (`PERCH_BENCH_STREAMS`,
//! `PERCH_BENCH_ROOMS`, `PERCH_BENCH_SECONDS`, `PERCH_BENCH_NODES` to resize;
//! `PERCH_BENCH_WARM_UP`, 3 s by default, the load's seconds before those measured;
//! `PERCH_BENCH_SPREAD=interleaved` gives node `i` every user `u` with `u % nodes == i`, as a
//! load balancer would, instead of a run of consecutive users;
//! `PERCH_BENCH_CLIENT_THREADS`, 1 by default, the worker threads of each client process;
//! one run of 2 beside one of 1 on 2026-12-07, p99 237 against 284 ms, the clients' CPU 7.8
//! against 7.5 s, settled nothing on this VM). The bench runs
//! itself as the client processes (`PERCH_POOL_CLIENT`).

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "benchmark figures: counts and percentile indices are small and positive"
)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::io::{BufRead, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::http::open_events_retrying;
use support::{
    cpu_ms, env_number, percentile, raise_open_files, rss_kib, unix_micros, wait_until_ready,
};

use perch::domain::Kind;
use perch::service::{Caller, Object, Ownership, Role, Service};
use perch::store::Store;
use serde_json::json;

const BIG_ROOM_MEMBERS: usize = 16_000;
/// The number of the big room's post made once the streams opened, before the load: every
/// stream judges its access to the room once at its first message there, as in the fan-out
/// bench, and that post is reported apart.
const FIRST_POST: u64 = 999_999;
/// Seconds of the same load before the measured ones (`PERCH_BENCH_WARM_UP`; 0 for none): the
/// load begins after 3 s of quiet (the first post's time to reach every stream), and in every
/// run of the twelfth and thirteenth sessions its first two or three big posts, the ones after
/// that quiet, were its slowest (last arrival 250 to 385 ms against a median of 155 to 200). A
/// pool under load is never quiet for seconds; the warm-up's posts are reported apart, and
/// each of its deliveries is still counted (nothing may be lost).
const WARM_UP_SECONDS: usize = 3;
const POSTS_PER_SECOND: u64 = 24;
const JOINS_PER_SECOND: u64 = 10;
/// How long a joined room stream stays open.
const JOIN_HELD: Duration = Duration::from_secs(5);

fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid) as f64 / 1024.0
}

fn user(index: usize) -> String {
    format!("sip:user{index}@contoso.com")
}

/// The users of room `room` (not the big one, room 0): every user whose number is the room's
/// modulo the number of rooms.
fn small_room_members(room: usize, rooms: usize, users: usize) -> Vec<usize> {
    (room..users).step_by(rooms).collect()
}

fn room_name(room: usize) -> String {
    format!("room-{room:05}")
}

/// How one post or join of the load went.
enum Outcome {
    /// Stored: owed to this many members' streams, answered after this many microseconds,
    /// whether it went to the big room, and whether it was measured (not the warm-up's).
    Posted(usize, u64, bool, bool),
    Joined,
    Failed(String),
}

/// A small xorshift generator: the same choices every run.
struct Choices(u64);

impl Choices {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

fn main() {
    if std::env::var_os("PERCH_POOL_CLIENT").is_some() {
        client();
        return;
    }
    if !common::postgres_wanted() {
        println!(
            "the pool bench runs its nodes on PostgreSQL: PERCH_TEST_BACKEND=postgres cargo bench --bench pool"
        );
        return;
    }
    let users = env_number("PERCH_BENCH_STREAMS", 60_000).max(BIG_ROOM_MEMBERS);
    let rooms = env_number("PERCH_BENCH_ROOMS", 33_077).max(2);
    let seconds = env_number("PERCH_BENCH_SECONDS", 60) as u64;
    let nodes = env_number("PERCH_BENCH_NODES", 4).max(1);
    let open_files = raise_open_files();
    let db = common::TestDb::new();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    // The configuration and a token per user, written in process, 16 writers at a time.
    let started = Instant::now();
    let tokens: Vec<String> = runtime.block_on(async {
        let service = Service::new(Store::open(&db.url).await.expect("store"));
        let admin = Caller::local_operator();
        let create = |kind: Kind, body: serde_json::Value| {
            let service = service.clone();
            let admin = admin.clone();
            async move {
                let object = Object::from_json(kind, body).expect("a well-formed object");
                service
                    .create(&admin, object, Ownership::Keep)
                    .await
                    .expect("created");
            }
        };
        create(
            Kind::Category,
            json!({"name": "Pool", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await;
        // Two groups of 8,000: a group holds at most 10,000 members.
        let half = BIG_ROOM_MEMBERS / 2;
        for (group, range) in [("big-a", 0..half), ("big-b", half..BIG_ROOM_MEMBERS)] {
            let members: Vec<String> = range.map(user).collect();
            create(Kind::Group, json!({"name": group, "members": members})).await;
        }
        create(
            Kind::Room,
            json!({"name": room_name(0), "category": "Pool", "privacy": "closed", "members": ["group:big-a", "group:big-b"]}),
        )
        .await;
        let mut pending = tokio::task::JoinSet::new();
        for room in 1..rooms {
            let members: Vec<String> = small_room_members(room, rooms, users)
                .into_iter()
                .map(user)
                .collect();
            pending.spawn(create(
                Kind::Room,
                json!({"name": room_name(room), "category": "Pool", "privacy": "closed", "members": members}),
            ));
            if pending.len() >= 16 {
                pending.join_next().await;
            }
        }
        while pending.join_next().await.is_some() {}
        let mut tokens = vec![String::new(); users];
        let mut issued = tokio::task::JoinSet::new();
        for index in 0..users {
            let service = service.clone();
            issued.spawn(async move {
                let token = service
                    .create_token(&user(index), Role::User)
                    .await
                    .expect("token");
                (index, token)
            });
            if issued.len() >= 16
                && let Some(Ok((index, token))) = issued.join_next().await {
                    tokens[index] = token;
                }
        }
        while let Some(Ok((index, token))) = issued.join_next().await {
            tokens[index] = token;
        }
        service.store().close().await;
        tokens
    });
    let setup = started.elapsed();
    let admin_token = common::create_token(&db.url, "sip:admin@contoso.com", "admin");

    let servers: Vec<common::TestServer> = (0..nodes)
        .map(|_| {
            common::TestServer::start_with(
                &[
                    "--listen",
                    "127.0.0.1:0",
                    "--db",
                    &db.url,
                    "--rate-limit",
                    "0",
                ],
                &[("PERCH_LOG", "error")],
            )
            .0
        })
        .collect();
    // Compliance on, as the original's pool ran: every post is captured and every join
    // recorded (nothing archives them during the run).
    runtime.block_on(async {
        servers[0]
            .client(&admin_token)
            .put("/v1/compliance", json!({"enabled": true, "adapterOutputDirectory": db.path().join("archive").display().to_string()}))
            .await
            .expect(200);
    });
    let baseline: Vec<f64> = servers.iter().map(|server| rss_mib(server.pid())).collect();

    // One client process per node, each with the streams of its share of the users: a run
    // of consecutive users (the default, and the figures before 2026-12-06 were made so:
    // node 0 then holds 15,000 of the big room's 16,000 members), or every `nodes`-th user,
    // as a load balancer that knows nothing of rooms spreads them.
    let interleaved = match std::env::var("PERCH_BENCH_SPREAD").as_deref() {
        Ok("interleaved") => true,
        Ok("contiguous") | Err(_) => false,
        Ok(other) => panic!("PERCH_BENCH_SPREAD is contiguous or interleaved, not {other}"),
    };
    let token_file = db.path().join("tokens.txt");
    std::fs::write(&token_file, tokens.join("\n")).expect("tokens written");
    let per_node = users.div_ceil(nodes);
    let mut children = Vec::new();
    for (node, server) in servers.iter().enumerate() {
        let (first, last, step) = if interleaved {
            (node, users, nodes)
        } else {
            (node * per_node, ((node + 1) * per_node).min(users), 1)
        };
        if first >= last {
            break;
        }
        let child = Command::new(std::env::current_exe().expect("this bench"))
            .env("PERCH_POOL_CLIENT", "1")
            .env("PERCH_POOL_BASE", &server.base)
            .env("PERCH_POOL_TOKENS", &token_file)
            .env("PERCH_POOL_RANGE", format!("{first}..{last}"))
            .env("PERCH_POOL_STEP", step.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("a client process");
        children.push(child);
    }
    let (mut outputs, connected) = wait_until_ready(&mut children);
    let idle: Vec<f64> = servers.iter().map(|server| rss_mib(server.pid())).collect();

    // Where the machine's CPU goes during the load: each node, the client processes,
    // PostgreSQL, and this process (which posts and joins).
    let client_pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
    let cpu_now = || CpuSpent {
        nodes: servers.iter().map(|server| cpu_ms(server.pid())).collect(),
        clients: client_pids.iter().map(|pid| cpu_ms(*pid)).sum(),
        postgres: postgres_pids().into_iter().map(cpu_ms).sum(),
        poster: cpu_ms(std::process::id()),
    };
    // The first post in the big room, before the load (see FIRST_POST).
    runtime.block_on(async {
        let reply = reqwest::Client::new()
            .post(format!(
                "{}/v1/rooms/{}/messages",
                servers[0].base,
                room_name(0)
            ))
            .bearer_auth(&tokens[0])
            .json(&json!({"body": format!("pool {FIRST_POST} {}", unix_micros())}))
            .send()
            .await
            .expect("the first post");
        assert_eq!(reply.status(), 201, "the first post");
    });
    // Time for it to reach every stream before the load begins.
    std::thread::sleep(Duration::from_secs(3));
    let warm_up = env_number("PERCH_BENCH_WARM_UP", WARM_UP_SECONDS) as u64;

    // The load: posts and joins, each through the next node.
    let bases: Vec<String> = servers.iter().map(|server| server.base.clone()).collect();
    let (posted, expected, joins, failures, (mut small_replies, mut big_replies), (first_measured, cpu_before, load_started)) = runtime.block_on(async {
        let http = reqwest::Client::new();
        let mut choices = Choices(0x9e37_79b9_7f4a_7c15);
        let mut posting = tokio::time::interval(Duration::from_micros(1_000_000 / POSTS_PER_SECOND));
        let mut joining = tokio::time::interval(Duration::from_micros(1_000_000 / JOINS_PER_SECOND));
        let measured_from = tokio::time::Instant::now() + Duration::from_secs(warm_up);
        let deadline = measured_from + Duration::from_secs(seconds);
        // The number of the first measured post, the CPU spent until then, and when.
        let mut measuring: Option<(usize, CpuSpent, Instant)> = None;
        let mut sent = tokio::task::JoinSet::new();
        let (mut posted, mut expected, mut joins) = (0usize, 0usize, 0usize);
        let mut node = 0;
        while tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = posting.tick() => {
                    if measuring.is_none() && tokio::time::Instant::now() >= measured_from {
                        measuring = Some((posted, cpu_now(), Instant::now()));
                    }
                    let measured = measuring.is_some();
                    // One post in 24 goes to the big room.
                    let (room, author, members) = if posted % 24 == 0 {
                        (0, choices.below(BIG_ROOM_MEMBERS), BIG_ROOM_MEMBERS)
                    } else {
                        let room = 1 + choices.below(rooms - 1);
                        let members = small_room_members(room, rooms, users);
                        if members.is_empty() {
                            continue;
                        }
                        (room, members[choices.below(members.len())], members.len())
                    };
                    // The reply's clock starts where the arrivals' does, as the body is made.
                    let sending = Instant::now();
                    let url = format!("{}/v1/rooms/{}/messages", bases[node % bases.len()], room_name(room));
                    node += 1;
                    let request = http
                        .post(url)
                        .bearer_auth(&tokens[author])
                        .json(&json!({"body": format!("pool {posted} {}", unix_micros())}));
                    let big = room == 0;
                    sent.spawn(async move {
                        // Only a stored post is owed to its members' streams.
                        match request.send().await {
                            Ok(reply) if reply.status() == 201 => {
                                let micros = u64::try_from(sending.elapsed().as_micros()).unwrap_or(u64::MAX);
                                Outcome::Posted(members, micros, big, measured)
                            }
                            Ok(reply) => Outcome::Failed(format!("post: {}", reply.status())),
                            Err(error) => Outcome::Failed(format!("post: {error}")),
                        }
                    });
                    posted += 1;
                }
                _ = joining.tick() => {
                    let room = 1 + choices.below(rooms - 1);
                    let members = small_room_members(room, rooms, users);
                    if members.is_empty() {
                        continue;
                    }
                    let member = members[choices.below(members.len())];
                    let url = format!("{}/v1/rooms/{}/events", bases[node % bases.len()], room_name(room));
                    node += 1;
                    let request = http.get(url).bearer_auth(&tokens[member]);
                    sent.spawn(async move {
                        match request.send().await {
                            Ok(reply) if reply.status() == 200 => {
                                tokio::time::sleep(JOIN_HELD).await;
                                drop(reply);
                                Outcome::Joined
                            }
                            Ok(reply) => Outcome::Failed(format!("join: {}", reply.status())),
                            Err(error) => Outcome::Failed(format!("join: {error}")),
                        }
                    });
                    joins += 1;
                }
            }
        }
        let mut failures = Vec::new();
        let mut replies = (Vec::new(), Vec::new());
        while let Some(done) = sent.join_next().await {
            match done.expect("a post or join") {
                Outcome::Posted(members, micros, big, measured) => {
                    expected += members;
                    if measured {
                        if big { &mut replies.1 } else { &mut replies.0 }.push(micros);
                    }
                }
                Outcome::Joined => {}
                Outcome::Failed(why) => failures.push(why),
            }
        }
        let measuring = measuring.unwrap_or_else(|| (posted, cpu_now(), Instant::now()));
        (posted, expected, joins, failures, replies, measuring)
    });
    let loaded: Vec<f64> = servers.iter().map(|server| rss_mib(server.pid())).collect();
    // Time for the last posts to arrive, then the clients report.
    std::thread::sleep(Duration::from_secs(3));
    let cpu_after = cpu_now();
    let load_wall = load_started.elapsed().as_secs_f64();
    let mut latencies: Vec<u64> = Vec::new();
    let mut first_post: Vec<u64> = Vec::new();
    // The warm-up's deliveries: counted, and reported apart.
    let mut warming: Vec<u64> = Vec::new();
    let first_measured = first_measured as u64;
    // The big room's posts apart: their deliveries are most of the load.
    let mut big_room: Vec<u64> = Vec::new();
    // Each big-room post's first and last arrival, by its number.
    let mut big_room_last = std::collections::BTreeMap::<u64, (u64, u64)>::new();
    for (child, output) in children.iter_mut().zip(&mut outputs) {
        if let Some(stdin) = child.stdin.as_mut() {
            let _ = writeln!(stdin, "stop");
        }
        let mut line = String::new();
        output.read_line(&mut line).expect("results line");
        let results: serde_json::Value = serde_json::from_str(line.trim()).expect("results");
        for value in results["measured"].as_array().into_iter().flatten() {
            let micros = value[1].as_u64().unwrap_or(u64::MAX);
            let number = value[0].as_u64().unwrap_or(u64::MAX);
            if number == FIRST_POST {
                first_post.push(micros);
                continue;
            }
            if number < first_measured {
                warming.push(micros);
                continue;
            }
            latencies.push(micros);
            if number % 24 == 0 {
                big_room.push(micros);
                let (first, last) = big_room_last.entry(number).or_insert((u64::MAX, 0));
                *first = (*first).min(micros);
                *last = (*last).max(micros);
            }
        }
    }
    big_room.sort_unstable();
    // The slowest posts, to tell a slow start (the post, its notification, the node's read)
    // from a slow fan-out, and to see when in the load they came.
    let mut slowest: Vec<(u64, u64, u64)> = big_room_last
        .iter()
        .map(|(number, (first, last))| (*last, *first, *number))
        .collect();
    slowest.sort_unstable_by(|one, other| other.cmp(one));
    slowest.truncate(5);
    let mut big_room_first: Vec<u64> = big_room_last.values().map(|(first, _)| *first).collect();
    big_room_first.sort_unstable();
    let mut big_room_last: Vec<u64> = big_room_last.into_values().map(|(_, last)| last).collect();
    big_room_last.sort_unstable();
    for mut child in children {
        let _ = child.wait();
    }
    latencies.sort_unstable();
    first_post.sort_unstable();
    warming.sort_unstable();
    println!(
        "the pool: {nodes} nodes on one PostgreSQL, {users} live streams over {nodes} client processes (open-file limit {open_files}; users {}), {rooms} rooms (one of {BIG_ROOM_MEMBERS} members)",
        if interleaved {
            "interleaved over the nodes"
        } else {
            "in runs, one per node"
        }
    );
    println!(
        "  set-up in process {:.1} s; streams connected in {:.1} s",
        setup.as_secs_f64(),
        connected.as_secs_f64()
    );
    println!(
        "  first post in the big room once the streams opened, before the load (every stream judges its access to the room once; not in the figures below): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} of {BIG_ROOM_MEMBERS} arrived",
        percentile(&first_post, 0.50),
        percentile(&first_post, 0.99),
        percentile(&first_post, 1.0),
        first_post.len()
    );
    println!(
        "  {warm_up} s of warm-up, then {seconds} s measured, at {POSTS_PER_SECOND} posts/s and {JOINS_PER_SECOND} joins/s: {posted} posts ({first_measured} in the warm-up), {joins} joins sent"
    );
    if !warming.is_empty() {
        println!(
            "  the warm-up's posts (not in the figures below): post -> arrival p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&warming, 0.50),
            percentile(&warming, 0.99),
            percentile(&warming, 1.0)
        );
    }
    if !failures.is_empty() {
        println!(
            "  {} posts or joins failed, the first: {}",
            failures.len(),
            failures[0]
        );
    }
    println!(
        "  post -> arrival on every member's stream: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} of {expected} deliveries (the warm-up's among them) arrived before the clients stopped (3 s after the last post)",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        latencies.len() + warming.len()
    );
    println!(
        "  of which the big room's {} posts: p50 {:.1} ms, p99 {:.1} ms; each one's first arrival: median {:.1} ms, slowest {:.1} ms; each one's last arrival: fastest {:.1} ms, median {:.1} ms, slowest {:.1} ms",
        big_room_last.len(),
        percentile(&big_room, 0.50),
        percentile(&big_room, 0.99),
        percentile(&big_room_first, 0.5),
        percentile(&big_room_first, 1.0),
        percentile(&big_room_last, 0.0),
        percentile(&big_room_last, 0.5),
        percentile(&big_room_last, 1.0)
    );
    small_replies.sort_unstable();
    big_replies.sort_unstable();
    // What the first arrival spends before the hand-out: the post itself, as its author waits.
    println!(
        "  the post's own reply: big room p50 {:.1} ms, p99 {:.1} ms; other rooms p50 {:.1} ms, p99 {:.1} ms",
        percentile(&big_replies, 0.50),
        percentile(&big_replies, 0.99),
        percentile(&small_replies, 0.50),
        percentile(&small_replies, 0.99)
    );
    println!(
        "  the big room's slowest posts (number, seconds into the measured load, first and last arrival): {}",
        slowest
            .iter()
            .map(|(last, first, number)| format!(
                "{number} at {:.1} s: {:.0} / {:.0} ms",
                (*number - first_measured) as f64 / POSTS_PER_SECOND as f64,
                *first as f64 / 1000.0,
                *last as f64 / 1000.0
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    for (node, ((before, idle), loaded)) in baseline.iter().zip(&idle).zip(&loaded).enumerate() {
        println!(
            "  node {node}: {before:.0} MiB before its streams, {idle:.0} MiB with them idle, {loaded:.0} MiB at the end of the load"
        );
    }
    let node_seconds: Vec<f64> = cpu_after
        .nodes
        .iter()
        .zip(&cpu_before.nodes)
        .map(|(after, before)| (after - before) / 1000.0)
        .collect();
    let clients = (cpu_after.clients - cpu_before.clients) / 1000.0;
    let postgres = (cpu_after.postgres - cpu_before.postgres) / 1000.0;
    let this_process = (cpu_after.poster - cpu_before.poster) / 1000.0;
    let total = node_seconds.iter().sum::<f64>() + clients + postgres + this_process;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
    println!(
        "  CPU over the load and the 3 s after ({load_wall:.1} s on {cores:.0} cores): nodes {} s, client processes {clients:.1} s, PostgreSQL {postgres:.1} s, this process (posts, joins) {this_process:.1} s: {:.0}% of the machine",
        node_seconds
            .iter()
            .map(|seconds| format!("{seconds:.1}"))
            .collect::<Vec<_>>()
            .join(" / "),
        100.0 * total / (load_wall * cores)
    );
    for mut server in servers {
        server.stop();
    }
}

/// CPU milliseconds spent so far, by part of the bench.
struct CpuSpent {
    nodes: Vec<f64>,
    clients: f64,
    postgres: f64,
    poster: f64,
}

/// Every `postgres` process on the machine: the bench's throwaway cluster, and any other
/// cluster's too (idle ones add next to nothing). A backend that exits during the load takes
/// its CPU time with it, but the nodes keep their connections.
fn postgres_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim() == "postgres")
        })
        .collect()
}

/// A client process: opens its users' streams, says `ready`, and on `stop` (a line on its
/// standard input) reports, as one JSON line, the microseconds from post to arrival of every
/// message its streams received.
fn client() {
    let base = std::env::var("PERCH_POOL_BASE").expect("base");
    let tokens = std::fs::read_to_string(std::env::var("PERCH_POOL_TOKENS").expect("tokens"))
        .expect("tokens file");
    let range = std::env::var("PERCH_POOL_RANGE").expect("range");
    let (first, last) = range.split_once("..").expect("a range");
    let (first, last): (usize, usize) = (first.parse().unwrap(), last.parse().unwrap());
    let every = env_number("PERCH_POOL_STEP", 1).max(1);
    let tokens: Vec<String> = tokens
        .lines()
        .skip(first)
        .take(last - first)
        .step_by(every)
        .map(str::to_owned)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_number("PERCH_BENCH_CLIENT_THREADS", 1).max(1))
        .enable_all()
        .build()
        .expect("runtime");
    let (stop_sender, stop) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = stop_sender.send(true);
    });
    let results = runtime.block_on(async move {
        let mut opened = Vec::with_capacity(tokens.len());
        let (ready_sender, mut ready) = tokio::sync::mpsc::channel::<()>(tokens.len());
        for token in tokens {
            let base = base.clone();
            let ready_sender = ready_sender.clone();
            let mut stop = stop.clone();
            opened.push(tokio::spawn(async move {
                let mut events = open_events_retrying(&base, &token, 50)
                    .await
                    .expect("a live stream opened");
                let _ = ready_sender.send(()).await;
                let mut arrivals: Vec<(u64, u64)> = Vec::new();
                loop {
                    let filled = tokio::select! {
                        _ = stop.changed() => break,
                        filled = events.fill() => filled,
                    };
                    let Ok(true) = filled else {
                        break;
                    };
                    let now = unix_micros();
                    // Each message's body is `pool NUMBER SENT_MICROS`.
                    events.take_marked(b"\"body\":\"pool ", |text| {
                        let mut parts = text.split(' ');
                        let number: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                        let sent: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(now);
                        arrivals.push((number, now.saturating_sub(sent)));
                    });
                }
                arrivals
            }));
        }
        drop(ready_sender);
        let mut count = 0;
        while ready.recv().await.is_some() {
            count += 1;
            if count == opened.len() {
                break;
            }
        }
        println!("ready {count}");
        let _ = std::io::stdout().flush();
        let mut measured = Vec::new();
        for stream in opened {
            measured.extend(stream.await.unwrap_or_default());
        }
        json!({"measured": measured})
    });
    println!("{results}");
}
