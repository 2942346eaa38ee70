//! Chat while an embedded `perch apply` writes the same SQLite file a `perch serve` uses: the
//! longest and the p99 post latency during an apply of 20,000 rooms, beside the same figures
//! with no apply running (release build, one poster posting as fast as it can).
//!
//! Run: `cargo bench --bench apply_beside_chat` (`PERCH_BENCH_ROOMS` to resize).

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "benchmark figures: small positive counts and indices"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

fn write_manifests(dir: &Path, rooms: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = String::from(
        "apiVersion: perch/v1\nkind: Category\nname: Bulk\nallowedMembers: [domain:contoso.com]\n",
    );
    for room in 0..rooms {
        let _ = write!(
            text,
            "---\napiVersion: perch/v1\nkind: Room\nname: bulk-{room:06}\ncategory: Bulk\nmembers: [sip:user{}@contoso.com]\n",
            room % 1000
        );
    }
    std::fs::write(dir.join("bulk.yaml"), text).unwrap();
}

/// Posts until `stop`; every post's latency.
async fn post_until(client: common::Client, stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let mut number = 0;
    while !stop.load(Ordering::Relaxed) {
        let at = Instant::now();
        client
            .post(
                "/v1/rooms/lobby/messages",
                json!({"body": format!("message {number}")}),
            )
            .await
            .expect(201);
        let took = at.elapsed();
        if took > Duration::from_millis(200) && std::env::var("PERCH_BENCH_TRACE").is_ok() {
            eprintln!(
                "slow post: {:.0} ms, started {:?} into the run",
                took.as_secs_f64() * 1e3,
                at
            );
        }
        latencies.push(took);
        number += 1;
    }
    latencies.sort();
    latencies
}

fn figures(latencies: &[Duration]) -> String {
    let p99 = latencies[((latencies.len() - 1) as f64 * 0.99).round() as usize];
    let max = latencies.last().copied().unwrap_or_default();
    format!(
        "{} posts, p99 {:.1} ms, longest {:.1} ms",
        latencies.len(),
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    )
}

fn main() {
    let rooms: usize = std::env::var("PERCH_BENCH_ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let db = common::TestDb::sqlite();
    let manifests = db.path().join("manifests");
    write_manifests(&manifests, rooms);
    let admin_token = common::create_token(&db.url, "sip:admin@contoso.com", "admin");
    let poster_token = common::create_token(&db.url, "sip:poster@contoso.com", "user");
    let server = common::TestServer::start(&db.url);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let admin = server.client(&admin_token);
        admin
            .post(
                "/v1/categories",
                json!({"name": "Lobby", "allowedMembers": ["domain:contoso.com"]}),
            )
            .await
            .expect(201);
        admin
            .post(
                "/v1/rooms",
                json!({"name": "lobby", "category": "Lobby", "privacy": "open"}),
            )
            .await
            .expect(201);
        let poster = server.client(&poster_token);

        // Alone, for as long as the apply will take (about).
        let stop = Arc::new(AtomicBool::new(false));
        let alone = tokio::spawn(post_until(poster.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        let alone = alone.await.unwrap();

        // Beside an embedded apply on the same file.
        let stop = Arc::new(AtomicBool::new(false));
        let beside = tokio::spawn(post_until(poster, stop.clone()));
        let started = Instant::now();
        let url = db.url.clone();
        let path = manifests.display().to_string();
        let (code, _, stderr) = tokio::task::spawn_blocking(move || {
            common::perch(&["apply", &path, "--yes", "--db", &url])
        })
        .await
        .unwrap();
        let apply_seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let beside = beside.await.unwrap();
        assert_eq!(code, 0, "{stderr}");

        println!("chat beside an embedded apply of {rooms} rooms on the same SQLite file");
        println!("  no apply running:   {}", figures(&alone));
        println!(
            "  during the apply ({apply_seconds:.1} s): {}",
            figures(&beside)
        );
    });
    drop(server);
}
