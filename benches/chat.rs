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

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perch::service::{Caller, Service};
use perch::store::Store;
use serde_json::json;
use sha2::Digest;

const CLIENTS: usize = 50;

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

    let server = common::TestServer::start(url);
    let second = (nodes == 2).then(|| common::TestServer::start(url));
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
        // records, a write of its own).
        let clients: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(index, token)| if index % nodes == 0 { &server } else { listening }.client(token))
            .collect();
        let warm_up = env_number("PERCH_BENCH_WARM_UP", 10);
        let mut warming = Vec::new();
        for client in &clients {
            let client = client.clone();
            warming.push(tokio::spawn(async move {
                for number in 0..warm_up {
                    client.post("/v1/rooms/archive/messages", json!({"body": format!("warming up {number}")})).await.expect(201);
                }
            }));
        }
        for task in warming {
            task.await.expect("warm-up");
        }

        // The SSE reader records when each message arrives.
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
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
            let arrivals = arrivals.clone();
            let base = listening.base.clone();
            let token = reader_token.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the reader's runtime");
                runtime.block_on(async move {
                let client = reqwest::Client::new();
                let mut response = client
                    .get(format!("{base}/v1/events"))
                    .bearer_auth(token)
                    .header("Last-Event-ID", marker.to_string())
                    .send()
                    .await
                    .expect("events");
                let mut buffer = String::new();
                let mut seen = 0;
                while seen < total {
                    let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(30), response.chunk()).await else {
                        break;
                    };
                    let now = Instant::now();
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buffer.find("\n\n") {
                        let frame: String = buffer.drain(..end + 2).collect();
                        for line in frame.lines() {
                            if let Some(data) = line.strip_prefix("data:") {
                                if let Ok(message) = serde_json::from_str::<serde_json::Value>(data.trim()) {
                                    let body = message["body"].as_str().unwrap_or_default().to_owned();
                                    arrivals.lock().unwrap().insert(body, now);
                                    seen += 1;
                                }
                            }
                        }
                    }
                }
                });
            })
        };

        let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let cpu_before = server.cpu_time();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (index, client) in clients.into_iter().enumerate() {
            let sent = sent.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for number in (index..total).step_by(CLIENTS) {
                    let body = format!("message {number} from poster {index}");
                    let at = Instant::now();
                    sent.lock().unwrap().insert(body.clone(), at);
                    client.post("/v1/rooms/busy/messages", json!({"body": body})).await.expect(201);
                    latencies.push(at.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("poster"));
        }
        let elapsed = started.elapsed();
        let cpu = server.cpu_time().zip(cpu_before).and_then(|(after, before)| after.checked_sub(before));
        // The reader ends by itself: when it has seen every message, or after 30 s without one.
        let _ = tokio::task::spawn_blocking(move || listener.join()).await;
        latencies.sort();
        let sent = sent.lock().unwrap();
        let arrivals = arrivals.lock().unwrap();
        let mut deliveries: Vec<Duration> = sent
            .iter()
            .filter_map(|(body, at)| arrivals.get(body).map(|arrived| arrived.saturating_duration_since(*at)))
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
    // with the servers stopped.
    server.stop();
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
