//! Admin writes over HTTP on loopback: 10,000 room creations against the real `perch serve`
//! (release build) over a temp SQLite file. Prints writes per second and p50/p99 latency.
//!
//! Run: `cargo bench --bench server_writes` (`PERCH_BENCH_ROOMS` and `PERCH_BENCH_CLIENTS`
//! change the size).

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    reason = "benchmark figures: counts and percentile indices are small and positive"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use serde_json::json;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn main() {
    let rooms: usize = std::env::var("PERCH_BENCH_ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let clients: usize = std::env::var("PERCH_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let db = common::TestDb::new();
    let token = common::create_token(&db.url, "sip:admin@contoso.com", "admin");
    let server = common::TestServer::start(&db.url);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let admin = server.client(&token);
        admin
            .post("/v1/categories", json!({"name": "Bench", "allowedMembers": ["domain:contoso.com"]}))
            .await
            .expect(201);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for client_index in 0..clients {
            let admin = admin.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for room_index in (client_index..rooms).step_by(clients) {
                    let body = json!({
                        "name": format!("room-{room_index:06}"),
                        "category": "Bench",
                        "privacy": "closed",
                        "members": (0..10).map(|m| format!("sip:user{m}@contoso.com")).collect::<Vec<_>>(),
                    });
                    let sent = Instant::now();
                    admin.post("/v1/rooms", body).await.expect(201);
                    latencies.push(sent.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::with_capacity(rooms);
        for task in tasks {
            latencies.extend(task.await.expect("client task"));
        }
        let elapsed = started.elapsed();
        latencies.sort();
        println!(
            "room creations over HTTP: {rooms} rooms, {clients} concurrent clients, SQLite WAL synchronous=NORMAL"
        );
        println!("  total {:.2} s, {:.0} writes/s", elapsed.as_secs_f64(), rooms as f64 / elapsed.as_secs_f64());
        println!(
            "  latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        );
    });
}
