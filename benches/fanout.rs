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

use support::http::{Connection, open_events_retrying};
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
    if std::env::var_os("PERCH_FANOUT_FLOOR").is_some() {
        floor_server();
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
    let token_file = db.path().join("tokens.txt");
    std::fs::write(&token_file, tokens.join("\n")).expect("tokens written");
    let load = Load {
        token_file: &token_file,
        poster: &poster,
        streams,
        posts,
        processes,
    };
    let perch = load.run(&server.base, server.pid(), &runtime);
    let mut server = server;
    server.stop();
    println!(
        "live fan-out on {backend}: one room of {streams} members (two groups), {streams} live streams over {processes} client processes (open-file limit {open_files})"
    );
    println!("  set-up in process: {:.1} s", setup.as_secs_f64());
    perch.print(&load);

    // The same clients and posts against the least a server can do (see `floor_server`).
    if env_number("PERCH_BENCH_FLOOR", 1) != 0 {
        let mut floor = Command::new(std::env::current_exe().expect("this bench"))
            .env("PERCH_FANOUT_FLOOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the floor server");
        let mut address = String::new();
        std::io::BufReader::new(floor.stdout.take().expect("stdout"))
            .read_line(&mut address)
            .expect("the floor's address");
        assert!(!address.trim().is_empty(), "the floor server did not start");
        let base = format!("http://{}", address.trim());
        let measured = load.run(&base, floor.id(), &runtime);
        let _ = floor.kill();
        let _ = floor.wait();
        println!(
            "floor, for comparison: a bare tokio server (as many workers as cores, as `perch serve`) that writes one pre-framed buffer to every stream, with the same clients and posts"
        );
        measured.print(&load);
    }
}

/// The load both servers get: streams spread over client processes, and posts.
struct Load<'a> {
    token_file: &'a std::path::Path,
    poster: &'a str,
    streams: usize,
    posts: usize,
    processes: usize,
}

/// What one server did under [`Load`].
struct Measured {
    connected: Duration,
    baseline_kib: u64,
    idle_kib: u64,
    /// Microseconds from the first post (every stream judges its access once) to arrival.
    cold: Vec<u64>,
    /// Microseconds from each later post to arrival.
    latencies: Vec<u64>,
    /// For each later post that arrived anywhere, microseconds from it to its last arrival,
    /// fastest first.
    last_arrivals: Vec<u64>,
    server_cpu_ms: f64,
    clients_cpu_ms: f64,
}

impl Load<'_> {
    fn run(&self, base: &str, server_pid: u32, runtime: &tokio::runtime::Runtime) -> Measured {
        let baseline_kib = rss_kib(server_pid);
        let per_process = self.streams.div_ceil(self.processes);
        let mut children = Vec::new();
        for process in 0..self.processes {
            let first = process * per_process;
            let last = ((process + 1) * per_process).min(self.streams);
            if first >= last {
                break;
            }
            let child = Command::new(std::env::current_exe().expect("this bench"))
                .env("PERCH_FANOUT_CLIENT", "1")
                .env("PERCH_FANOUT_BASE", base)
                .env("PERCH_FANOUT_TOKENS", self.token_file)
                .env("PERCH_FANOUT_RANGE", format!("{first}..{last}"))
                // The warming post, the measured ones, and the closing one.
                .env("PERCH_FANOUT_MESSAGES", (self.posts + 2).to_string())
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
        let idle_kib = rss_kib(server_pid);

        let mut poster = runtime
            .block_on(Connection::connect(base))
            .expect("the poster connected");
        let mut post = |number: usize| {
            runtime.block_on(async {
                let sent = unix_micros();
                let body = json!({"body": format!("fanout {number} {sent}")}).to_string();
                let reply = poster
                    .post_json("/v1/rooms/all-hands/messages", self.poster, &body)
                    .await
                    .expect("posted");
                assert_eq!(reply.status, 201, "a post was refused");
            });
        };
        // The first post: every stream judges its access to the room once. The measured
        // posts follow once it reached every stream.
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
        let (server_cpu_before, clients_cpu_before) = (cpu_ms(server_pid), clients_cpu());
        for number in 1..=self.posts {
            post(number);
            std::thread::sleep(Duration::from_millis(250));
        }
        let server_cpu_ms = cpu_ms(server_pid) - server_cpu_before;
        let clients_cpu_ms = clients_cpu() - clients_cpu_before;
        // A closing post, not measured, once the last measured one has had time to arrive
        // everywhere: each client closes a stream once it has had every message, and 16,000
        // connections closing beside the last measured post's deliveries made its last
        // arrival two and a half times the others' (339 against a median of 131 ms on
        // 2026-12-06).
        std::thread::sleep(Duration::from_secs(1));
        post(self.posts + 1);

        let mut latencies: Vec<u64> = Vec::new();
        let mut last_arrivals: Vec<Option<u64>> = vec![None; self.posts];
        let mut cold: Vec<u64> = Vec::new();
        for output in &mut outputs {
            let mut line = String::new();
            output.read_line(&mut line).expect("results line");
            let results: serde_json::Value = serde_json::from_str(line.trim()).expect("results");
            for value in results["measured"].as_array().into_iter().flatten() {
                let micros = value[1].as_u64().unwrap_or(u64::MAX);
                let number = value[0].as_u64().unwrap_or(u64::MAX) as usize;
                // Posts 1 to `posts`; the closing post is not measured.
                let Some(last) = number
                    .checked_sub(1)
                    .and_then(|at| last_arrivals.get_mut(at))
                else {
                    continue;
                };
                *last = Some(last.map_or(micros, |last| last.max(micros)));
                latencies.push(micros);
            }
            for value in results["cold"].as_array().into_iter().flatten() {
                cold.push(value.as_u64().unwrap_or(u64::MAX));
            }
        }
        for mut child in children {
            let _ = child.wait();
        }
        latencies.sort_unstable();
        let mut last_arrivals: Vec<u64> = last_arrivals.into_iter().flatten().collect();
        last_arrivals.sort_unstable();
        cold.sort_unstable();
        Measured {
            connected,
            baseline_kib,
            idle_kib,
            cold,
            latencies,
            last_arrivals,
            server_cpu_ms,
            clients_cpu_ms,
        }
    }
}

impl Measured {
    fn print(&self, load: &Load<'_>) {
        let (streams, posts) = (load.streams, load.posts);
        let expected = streams * posts;
        let per_stream_kib =
            self.idle_kib.saturating_sub(self.baseline_kib) as f64 / streams as f64;
        println!(
            "  streams connected in {:.1} s",
            self.connected.as_secs_f64()
        );
        println!(
            "  server memory: {:.1} MiB before the streams, {:.1} MiB with them idle: {per_stream_kib:.1} KiB per idle stream",
            self.baseline_kib as f64 / 1024.0,
            self.idle_kib as f64 / 1024.0
        );
        println!(
            "  first post (every stream judges its access once): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&self.cold, 0.50),
            percentile(&self.cold, 0.99),
            percentile(&self.cold, 1.0)
        );
        println!(
            "  {posts} posts, 250 ms apart, post -> arrival on every stream: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} of {expected} deliveries arrived",
            percentile(&self.latencies, 0.50),
            percentile(&self.latencies, 0.99),
            percentile(&self.latencies, 1.0),
            self.latencies.len()
        );
        // Whether the tail is every post's last streams or a few posts late for all.
        println!(
            "  each post's last arrival: fastest {:.1} ms, median {:.1} ms, slowest {:.1} ms",
            percentile(&self.last_arrivals, 0.0),
            percentile(&self.last_arrivals, 0.5),
            percentile(&self.last_arrivals, 1.0)
        );
        println!(
            "  CPU per post ({streams} deliveries each): server {:.1} ms ({:.1} us a delivery), client processes {:.1} ms; the machine has 2 cores",
            self.server_cpu_ms / posts as f64,
            self.server_cpu_ms * 1000.0 / expected as f64,
            self.clients_cpu_ms / posts as f64
        );
    }
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
    let messages = env_number("PERCH_FANOUT_MESSAGES", 22);
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
                    measured.push((number, micros));
                }
            }
        }
        json!({"measured": measured, "cold": cold})
    });
    println!("{results}");
}

/// The floor the fan-out figures are read against: the least a server can do for this load on
/// this machine. One task per connection (as `perch serve` has), woken through a broadcast
/// channel, writes one buffer framed once for every stream: no tokens, access, database, hyper
/// or SSE encoder. What Perch spends above it is its own; what this spends is the kernel's and
/// tokio's, and no server on this machine goes below it.
fn floor_server() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bound");
        let listener = socket.listen(65_535).expect("listening");
        println!("{}", listener.local_addr().expect("address"));
        let _ = std::io::stdout().flush();
        let (frames, _) = tokio::sync::broadcast::channel::<std::sync::Arc<[u8]>>(64);
        let ids = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve_floor(stream, frames.clone(), ids.clone()));
        }
    });
}

/// One connection to the floor: `GET` is a live stream of every framed message; `POST` frames
/// its body's text as a message of about Perch's size, once, and hands it to every stream.
async fn serve_floor(
    mut stream: tokio::net::TcpStream,
    frames: tokio::sync::broadcast::Sender<std::sync::Arc<[u8]>>,
    ids: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream.set_nodelay(true)?;
    let mut read = Vec::with_capacity(1024);
    loop {
        let (is_get, head_length, content_length) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&read) {
                Ok(httparse::Status::Complete(length)) => {
                    let content_length = request
                        .headers
                        .iter()
                        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|header| std::str::from_utf8(header.value).ok()?.parse().ok())
                        .unwrap_or(0usize);
                    break (request.method == Some("GET"), length, content_length);
                }
                Ok(httparse::Status::Partial) => {
                    read.reserve(4096);
                    if stream.read_buf(&mut read).await? == 0 {
                        return Ok(());
                    }
                }
                Err(_) => return Ok(()),
            }
        };
        if is_get {
            let mut heard = frames.subscribe();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
                .await?;
            loop {
                match heard.recv().await {
                    Ok(frame) => stream.write_all(&frame).await?,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
        while read.len() < head_length + content_length {
            read.reserve(4096);
            if stream.read_buf(&mut read).await? == 0 {
                return Ok(());
            }
        }
        let body: serde_json::Value =
            serde_json::from_slice(&read[head_length..head_length + content_length])
                .unwrap_or_default();
        read.drain(..head_length + content_length);
        let id = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let message = json!({
            "id": id,
            "room": "all-hands",
            "author": "sip:member0@contoso.com",
            "body": body["body"],
            "postedAt": "2026-12-06T09:00:00.000000Z",
            "replaced": false,
        });
        let event = format!("id: {id}\nevent: message\ndata: {message}\n\n");
        let frame = format!("{:x}\r\n{event}\r\n", event.len());
        let _ = frames.send(std::sync::Arc::from(frame.into_bytes()));
        let reply = format!("{{\"id\":{id}}}");
        let head = format!(
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        stream.write_all(head.as_bytes()).await?;
    }
}
