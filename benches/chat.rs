//! Chat on loopback against the real server (release build, SQLite): 50 concurrent posting
//! clients; messages stored per second, p50/p99 post latency, p99 from post to delivery on an
//! SSE stream; and p99 for reading a 50-message page of a 1,000,000-message room.
//!
//! Run: `cargo bench --bench chat` (`PERCH_BENCH_MESSAGES`, `PERCH_BENCH_BIG_ROOM` to resize;
//! `PERCH_BENCH_WARM_UP`, 10 by default, is how many posts each client makes unmeasured first).
//! With `PERCH_TEST_BACKEND=postgres` it runs on a throwaway PostgreSQL cluster, and with
//! `PERCH_BENCH_NODES=2` the posting clients are spread over two server nodes on it (the SSE
//! reader listens on the second node).

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    reason = "benchmark figures: counts and percentile indices are small and positive"
)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::fmt::Write;
use std::time::{Duration, Instant};

use perch::service::{Caller, Service};
use perch::store::Store;
use serde_json::json;
use sha2::Digest;
use support::env_number;
use support::http::Connection;

const CLIENTS: usize = 50;

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

/// Tokens, two rooms and `CLIENTS` posting clients against the server(s) on `url`; prints the
/// figures under `label`. Returns the server, still running, and the reader's token.
fn posting_run(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    label: &str,
    total: usize,
    nodes: usize,
) -> (common::TestServer, String) {
    let admin_token = common::create_token(url, "sip:admin@contoso.com", "admin");
    let tokens: Vec<String> = (0..CLIENTS)
        .map(|index| common::create_token(url, &format!("sip:poster{index}@contoso.com"), "user"))
        .collect();
    let reader_token = common::create_token(url, "sip:reader@contoso.com", "user");

    // The rate limit stays on (its cost is every request's) but high: the default allows an
    // address 8,000 requests a second, and the bench's 50 clients share 127.0.0.1.
    let start = || {
        common::TestServer::start_with(
            &[
                "--listen",
                "127.0.0.1:0",
                "--db",
                url,
                "--rate-limit",
                "1000000",
            ],
            &[],
        )
        .0
    };
    let server = start();
    let second = (nodes == 2).then(start);
    let listening = second.as_ref().unwrap_or(&server);
    runtime.block_on(async {
        let admin = server.client(&admin_token);
        admin
            .post("/v1/categories", json!({"name": "Bench", "allowedMembers": ["domain:contoso.com"]}))
            .await
            .expect(201);
        admin.post("/v1/rooms", json!({"name": "busy", "category": "Bench", "privacy": "open"})).await.expect(201);
        admin.post("/v1/rooms", json!({"name": "archive", "category": "Bench", "privacy": "open"})).await.expect(201);

        // Every client posts a few times first, so that the figures are of the steady state:
        // not of connections being opened, nor of each token's first use (which the server
        // records, a write of its own). The clients speak HTTP/1.1 on bare sockets
        // (`support::http`): reqwest cost them a third of what the server spent.
        let warm_up = env_number("PERCH_BENCH_WARM_UP", 10);
        let mut warming = Vec::new();
        for (index, token) in tokens.iter().enumerate() {
            let base = if index % nodes == 0 { &server } else { listening }.base.clone();
            let token = token.clone();
            warming.push(tokio::spawn(async move {
                let mut connection = Connection::connect(&base).await.expect("connected");
                for number in 0..warm_up {
                    let body = format!(r#"{{"body":"warming up {number}"}}"#);
                    let reply = connection.post_json("/v1/rooms/archive/messages", &token, &body).await.expect("posted");
                    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
                }
                (connection, token)
            }));
        }
        let mut clients = Vec::new();
        for task in warming {
            clients.push(task.await.expect("warm-up"));
        }

        // The SSE reader records when each message arrives, by its number.
        let marker = server
            .client(&reader_token)
            .post("/v1/rooms/busy/messages", json!({"body": "marker"}))
            .await
            .expect(201)
            .body["id"]
            .as_i64()
            .unwrap();
        // The reader has a thread and a runtime of its own, as a real reader has its own
        // process: a task among the 50 posting ones waited for them to wake it, and that wait
        // counted as delivery.
        let listener = {
            let base = listening.base.clone();
            let token = reader_token.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the reader's runtime");
                runtime.block_on(async move {
                    let mut arrivals: Vec<Option<Instant>> = vec![None; total];
                    let mut events = Connection::connect(&base)
                        .await
                        .expect("connected")
                        .open_events("/v1/events", &token, Some(marker))
                        .await
                        .expect("events");
                    let mut seen = 0;
                    while seen < total {
                        let Ok(Ok(true)) = tokio::time::timeout(Duration::from_secs(30), events.fill()).await else {
                            break;
                        };
                        let now = Instant::now();
                        // Each body is `message NUMBER from poster INDEX`.
                        events.take_marked(b"\"body\":\"message ", |text| {
                            let number = text.split(' ').next().and_then(|n| n.parse::<usize>().ok());
                            if let Some(slot) = number.and_then(|number| arrivals.get_mut(number)) {
                                if slot.is_none() {
                                    seen += 1;
                                }
                                *slot = Some(now);
                            }
                        });
                    }
                    arrivals
                })
            })
        };

        let cpu_before = server.cpu_time();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (index, (mut connection, token)) in clients.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                for number in (index..total).step_by(CLIENTS) {
                    let body = format!(r#"{{"body":"message {number} from poster {index}"}}"#);
                    let at = Instant::now();
                    let reply = connection.post_json("/v1/rooms/busy/messages", &token, &body).await.expect("posted");
                    assert_eq!(reply.status, 201, "{}", String::from_utf8_lossy(&reply.body));
                    sent.push((number, at, at.elapsed()));
                }
                sent
            }));
        }
        let mut sent: Vec<(usize, Instant, Duration)> = Vec::with_capacity(total);
        for task in tasks {
            sent.extend(task.await.expect("poster"));
        }
        let elapsed = started.elapsed();
        let cpu = server.cpu_time().zip(cpu_before).and_then(|(after, before)| after.checked_sub(before));
        // The reader ends by itself: when it has seen every message, or after 30 s without one.
        let arrivals = tokio::task::spawn_blocking(move || listener.join())
            .await
            .expect("the reader's thread")
            .unwrap_or_default();
        let mut latencies: Vec<Duration> = sent.iter().map(|(_, _, latency)| *latency).collect();
        latencies.sort();
        let mut deliveries: Vec<Duration> = sent
            .iter()
            .filter_map(|(number, at, _)| {
                arrivals.get(*number).copied().flatten().map(|arrived| arrived.saturating_duration_since(*at))
            })
            .collect();
        deliveries.sort();
        println!("chat over HTTP on loopback, {label}, {nodes} node(s), {CLIENTS} concurrent posting clients, {total} messages");
        println!("  stored {:.0} messages/s ({:.2} s)", total as f64 / elapsed.as_secs_f64(), elapsed.as_secs_f64());
        println!("  post latency p50 {:.2} ms, p99 {:.2} ms", percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        if let Some(cpu) = cpu {
            // Steadier than the rate on a shared machine: what each message cost the server.
            println!(
                "  server CPU {:.0} µs per message ({:.2} cores while posting)",
                cpu.as_secs_f64() * 1e6 / total as f64,
                cpu.as_secs_f64() / elapsed.as_secs_f64()
            );
        }
        println!(
            "  post to SSE delivery p50 {:.2} ms, p99 {:.2} ms ({} of {} delivered)",
            percentile(&deliveries, 0.5),
            percentile(&deliveries, 0.99),
            deliveries.len(),
            total
        );
    });
    drop(second);
    (server, reader_token)
}

fn main() {
    let total = env_number("PERCH_BENCH_MESSAGES", 20_000);
    let big_room = env_number("PERCH_BENCH_BIG_ROOM", 1_000_000);
    let nodes = env_number("PERCH_BENCH_NODES", 1).clamp(1, 2);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = common::TestDb::new();
    let (mut server, reader_token) = if common::postgres_wanted() {
        posting_run(&runtime, &db.url, "PostgreSQL", total, nodes)
    } else {
        // The documented setting first, then every commit synced, on a database of its own.
        let synced = common::TestDb::sqlite();
        let full = format!("{}?synchronous=full", synced.url);
        let normal = posting_run(
            &runtime,
            &db.url,
            "SQLite (synchronous=normal)",
            total,
            nodes,
        );
        let (mut full_server, _) =
            posting_run(&runtime, &full, "SQLite (synchronous=full)", total, nodes);
        full_server.stop();
        normal
    };
    // Seed the big room through the service's import (`perch data import`, content level),
    // with the servers stopped. `PERCH_BENCH_BIG_ROOM=0` skips it.
    server.stop();
    if big_room == 0 {
        return;
    }
    runtime.block_on(async {
        let store = Store::open(&db.url).await.expect("store");
        let service = Service::new(store.clone());
        let operator = Caller::local_operator();
        let room_id = service
            .get(&operator, perch::domain::Kind::Room, "archive")
            .await
            .unwrap()
            .meta
            .id;
        let first_id = service.last_message_id().await.unwrap() + 1;
        let seeded = Instant::now();
        for start in (0..big_room).step_by(100_000) {
            let end = (start + 100_000).min(big_room);
            let mut text = json!({"format": "perch-data", "version": 1, "level": "content",
                "exportedAt": "2026-01-01T00:00:00Z"})
            .to_string();
            text.push('\n');
            for n in start..end {
                let line = json!({"message": {
                    "id": first_id + n as i64,
                    "roomId": room_id,
                    "author": format!("sip:poster{}@contoso.com", n % CLIENTS),
                    "body": format!("archived message number {n} with some ordinary chat text"),
                    "postedAt": format!("2020-01-01T00:00:00.{:06}Z", n % 1_000_000),
                    "inHistory": true,
                    "replaced": false,
                }});
                text.push_str(&line.to_string());
                text.push('\n');
            }
            let digest = sha2::Sha256::digest(text.as_bytes());
            let sha256 = digest.iter().fold(String::new(), |mut text, byte| {
                let _ = write!(text, "{byte:02x}");
                text
            });
            let end_line =
                json!({"end": {"objects": 0, "messages": end - start, "sha256": sha256}});
            text.push_str(&end_line.to_string());
            service
                .import_data(&operator, text.as_bytes(), false)
                .await
                .unwrap();
        }
        println!(
            "  seeded {big_room} messages in {:.1} s",
            seeded.elapsed().as_secs_f64()
        );
        store.close().await;
    });
    let server = common::TestServer::start(&db.url);
    runtime.block_on(async {
        let reader = server.client(&reader_token);
        let mut latencies = Vec::new();
        let mut seed = 0x9e37_79b9_u64;
        for _ in 0..1000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let before = 1 + (seed % big_room as u64) as i64;
            let at = Instant::now();
            let page = reader
                .get(&format!(
                    "/v1/rooms/archive/messages?limit=50&before={before}"
                ))
                .await
                .expect(200);
            latencies.push(at.elapsed());
            assert!(page.body["items"].as_array().is_some());
        }
        latencies.sort();
        println!(
            "  50-message page of a {big_room}-message room: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    });
}
