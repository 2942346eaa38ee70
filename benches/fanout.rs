//! Live fan-out against the real server (release build): one room of 16,000 members (two
//! groups of 8,000), 16,000 connected live streams, one per member, spread over several client
//! processes (one process may hold at most 20,000 open files here). Prints the server's memory
//! per idle stream, then for 20 posts (after one that warms the streams' access caches) the
//! p50/p99/max from post to arrival on every stream, and how many arrived.
//!
//! Run: `cargo bench --bench fanout` (`PERCH_BENCH_STREAMS`, `PERCH_BENCH_POSTS`,
//! `PERCH_BENCH_CLIENT_PROCESSES` to resize; `PERCH_TEST_BACKEND=postgres` for PostgreSQL).
//! The bench runs itself as the client processes (`PERCH_FANOUT_CLIENT`).

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

fn main() {
    if std::env::var_os("PERCH_FANOUT_CLIENT").is_some() {
        client();
        return;
    }
    let streams = env_number("PERCH_BENCH_STREAMS", 16_000);
    let posts = env_number("PERCH_BENCH_POSTS", 20);
    let processes = env_number("PERCH_BENCH_CLIENT_PROCESSES", 4).max(1);
    let open_files = raise_open_files();
    let backend = if common::postgres_wanted() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let db = common::TestDb::new();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    // The room, its two groups and a token per member, written in process.
    let started = Instant::now();
    let (tokens, poster) = runtime.block_on(async {
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
        let half = streams.div_ceil(2);
        let user = |index: usize| format!("sip:member{index}@contoso.com");
        create(
            Kind::Category,
            json!({"name": "Company", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await;
        for (group, range) in [("fan-a", 0..half), ("fan-b", half..streams)] {
            let members: Vec<String> = range.map(user).collect();
            create(Kind::Group, json!({"name": group, "members": members})).await;
        }
        create(
            Kind::Room,
            json!({"name": "all-hands", "category": "Company", "privacy": "closed", "members": ["group:fan-a", "group:fan-b"]}),
        )
        .await;
        let mut tokens = Vec::with_capacity(streams);
        for index in 0..streams {
            tokens.push(
                service
                    .create_token(&user(index), Role::User)
                    .await
                    .expect("token"),
            );
        }
        let poster = tokens[0].clone();
        service.store().close().await;
        (tokens, poster)
    });
    let setup = started.elapsed();

    let (server, _) = common::TestServer::start_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db.url,
            "--rate-limit",
            "0",
        ],
        &[("PERCH_LOG", "error")],
    );
    let baseline_kib = rss_kib(server.pid());

    // The client processes, each with its share of the streams.
    let token_file = db.path().join("tokens.txt");
    std::fs::write(&token_file, tokens.join("\n")).expect("tokens written");
    let per_process = streams.div_ceil(processes);
    let mut children = Vec::new();
    for process in 0..processes {
        let first = process * per_process;
        let last = ((process + 1) * per_process).min(streams);
        if first >= last {
            break;
        }
        let child = Command::new(std::env::current_exe().expect("this bench"))
            .env("PERCH_FANOUT_CLIENT", "1")
            .env("PERCH_FANOUT_BASE", &server.base)
            .env("PERCH_FANOUT_TOKENS", &token_file)
            .env("PERCH_FANOUT_RANGE", format!("{first}..{last}"))
            .env("PERCH_FANOUT_MESSAGES", (posts + 1).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("a client process");
        children.push(child);
    }
    let (mut outputs, connected) = wait_until_ready(&mut children);
    // The streams are open and idle: what they cost the server.
    std::thread::sleep(Duration::from_secs(1));
    let idle_kib = rss_kib(server.pid());
    let per_stream_kib = idle_kib.saturating_sub(baseline_kib) as f64 / streams as f64;

    let client = server.client(&poster);
    let post = |number: usize| {
        runtime.block_on(async {
            let sent = unix_micros();
            client
                .post(
                    "/v1/rooms/all-hands/messages",
                    json!({"body": format!("fanout {number} {sent}")}),
                )
                .await
                .expect(201);
        });
    };
    // The first post: every stream judges its access to the room once. The measured posts
    // follow once it reached every stream.
    post(0);
    for output in &mut outputs {
        let mut line = String::new();
        output.read_line(&mut line).expect("warm line");
        assert!(
            line.starts_with("warm"),
            "a client did not warm up: {line:?}"
        );
    }
    // Where the CPU goes while the measured posts fan out: the server's and the clients'.
    let client_pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
    let clients_cpu = || client_pids.iter().map(|pid| cpu_ms(*pid)).sum::<f64>();
    let (server_cpu_before, clients_cpu_before) = (cpu_ms(server.pid()), clients_cpu());
    for number in 1..=posts {
        post(number);
        std::thread::sleep(Duration::from_millis(250));
    }
    let server_cpu = cpu_ms(server.pid()) - server_cpu_before;
    let clients_cpu = clients_cpu() - clients_cpu_before;

    let mut latencies: Vec<u64> = Vec::new();
    let mut cold: Vec<u64> = Vec::new();
    for output in &mut outputs {
        let mut line = String::new();
        output.read_line(&mut line).expect("results line");
        let results: serde_json::Value = serde_json::from_str(line.trim()).expect("results");
        for value in results["measured"].as_array().into_iter().flatten() {
            latencies.push(value.as_u64().unwrap_or(u64::MAX));
        }
        for value in results["cold"].as_array().into_iter().flatten() {
            cold.push(value.as_u64().unwrap_or(u64::MAX));
        }
    }
    for mut child in children {
        let _ = child.wait();
    }
    latencies.sort_unstable();
    cold.sort_unstable();
    let expected = streams * posts;
    println!(
        "live fan-out on {backend}: one room of {streams} members (two groups), {streams} live streams over {processes} client processes (open-file limit {open_files})"
    );
    println!(
        "  set-up in process: {:.1} s; streams connected in {:.1} s",
        setup.as_secs_f64(),
        connected.as_secs_f64()
    );
    println!(
        "  server memory: {:.1} MiB before the streams, {:.1} MiB with them idle: {per_stream_kib:.1} KiB per idle stream",
        baseline_kib as f64 / 1024.0,
        idle_kib as f64 / 1024.0
    );
    println!(
        "  first post (every stream judges its access once): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&cold, 0.50),
        percentile(&cold, 0.99),
        percentile(&cold, 1.0)
    );
    println!(
        "  {posts} posts, 250 ms apart, post -> arrival on every stream: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} of {expected} deliveries arrived",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        latencies.len()
    );
    println!(
        "  CPU per post ({streams} deliveries each): server {:.1} ms ({:.1} us a delivery), client processes {:.1} ms; the machine has 2 cores",
        server_cpu / posts as f64,
        server_cpu * 1000.0 / expected as f64,
        clients_cpu / posts as f64
    );
    let mut server = server;
    server.stop();
}

/// A client process: opens its streams, says `ready`, and reports, as one JSON line, the
/// microseconds from post to arrival of every message it received.
fn client() {
    let base = std::env::var("PERCH_FANOUT_BASE").expect("base");
    let tokens = std::fs::read_to_string(std::env::var("PERCH_FANOUT_TOKENS").expect("tokens"))
        .expect("tokens file");
    let range = std::env::var("PERCH_FANOUT_RANGE").expect("range");
    let (first, last) = range.split_once("..").expect("a range");
    let (first, last): (usize, usize) = (first.parse().unwrap(), last.parse().unwrap());
    let messages = env_number("PERCH_FANOUT_MESSAGES", 21);
    let tokens: Vec<String> = tokens
        .lines()
        .skip(first)
        .take(last - first)
        .map(str::to_owned)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime.block_on(async move {
        let mut opened = Vec::with_capacity(tokens.len());
        let (ready_sender, mut ready) = tokio::sync::mpsc::channel::<()>(tokens.len());
        let (warm_sender, mut warm) = tokio::sync::mpsc::channel::<()>(tokens.len());
        for token in tokens {
            let base = base.clone();
            let ready_sender = ready_sender.clone();
            let warm_sender = warm_sender.clone();
            opened.push(tokio::spawn(async move {
                let mut events = open_events_retrying(&base, &token, 20)
                    .await
                    .expect("a live stream opened");
                let _ = ready_sender.send(()).await;
                let mut arrivals: Vec<(usize, u64)> = Vec::new();
                let mut told_warm = false;
                while arrivals.len() < messages {
                    let Ok(Ok(true)) =
                        tokio::time::timeout(Duration::from_secs(60), events.fill()).await
                    else {
                        break;
                    };
                    let now = unix_micros();
                    // Each message's body is `fanout NUMBER SENT_MICROS`.
                    events.take_marked(b"\"body\":\"fanout ", |text| {
                        let mut parts = text.split(' ');
                        let number: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                        let sent: u64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(now);
                        arrivals.push((number, now.saturating_sub(sent)));
                    });
                    // Message 0 warms the stream's access cache; the bench waits for all.
                    if !told_warm && arrivals.iter().any(|(number, _)| *number == 0) {
                        told_warm = true;
                        let _ = warm_sender.send(()).await;
                    }
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
        drop(warm_sender);
        let mut warmed = 0;
        while warm.recv().await.is_some() {
            warmed += 1;
            if warmed == count {
                break;
            }
        }
        println!("warm {warmed}");
        let _ = std::io::stdout().flush();
        let mut measured = Vec::new();
        let mut cold = Vec::new();
        for stream in opened {
            for (number, micros) in stream.await.unwrap_or_default() {
                if number == 0 {
                    cold.push(micros);
                } else {
                    measured.push(micros);
                }
            }
        }
        json!({"measured": measured, "cold": cold})
    });
    println!("{results}");
}
