//! Server-side render time of the web interface on a large server: 100,000 rooms (10 members
//! each) and one room of 1,000,000 messages. Each page is asked of the router in process
//! (`server::app()`, as `perch serve` runs it, without the socket), signed in by a session
//! cookie; p50 and p99 over repeated requests.
//!
//! Run: `cargo bench --bench web` (`PERCH_BENCH_ROOMS`, `PERCH_BENCH_BIG_ROOM`,
//! `PERCH_BENCH_REQUESTS` to resize).

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    reason = "benchmark figures: counts and percentile indices are small and positive"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use perch::service::{Caller, Role, Service};
use perch::store::Store;
use serde_json::json;
use sha2::Digest;
use tower::ServiceExt;

const CATEGORIES: usize = 10;
const ROOMS_PER_FILE: usize = 1000;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

fn write_manifests(dir: &Path, rooms: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut categories = String::new();
    for category in 0..CATEGORIES {
        let _ = write!(
            categories,
            "---\napiVersion: perch/v1\nkind: Category\nname: cat-{category}\nallowedMembers: [domain:contoso.com]\n"
        );
    }
    categories.push_str(
        "---\napiVersion: perch/v1\nkind: Room\nname: archive\ncategory: cat-0\nprivacy: closed\nmembers: [sip:reader@contoso.com]\n",
    );
    std::fs::write(dir.join("categories.yaml"), categories).unwrap();
    for start in (0..rooms).step_by(ROOMS_PER_FILE) {
        let mut text = String::new();
        for room in start..(start + ROOMS_PER_FILE).min(rooms) {
            let members: Vec<String> = (0..10)
                .map(|m| format!("sip:user{}@contoso.com", (room * 7 + m) % 50_000))
                .collect();
            let _ = write!(
                text,
                "---\napiVersion: perch/v1\nkind: Room\nname: room-{room:06}\ncategory: cat-{}\nprivacy: {}\ndescription: Room number {room}\nmembers: [{}]\n",
                room % CATEGORIES,
                if room % 3 == 0 { "open" } else { "closed" },
                members.join(", ")
            );
        }
        std::fs::write(dir.join(format!("rooms-{start:06}.yaml")), text).unwrap();
    }
}

/// Imports `count` messages into the room with id `room_id` (a `perch data import` at the
/// content level, in slices of 100,000).
async fn seed_messages(service: &Service, room_id: i64, count: usize) {
    let operator = Caller::local_operator();
    let first_id = service.last_message_id().await.unwrap() + 1;
    for start in (0..count).step_by(100_000) {
        let end = (start + 100_000).min(count);
        let mut text = json!({"format": "perch-data", "version": 1, "level": "content",
            "exportedAt": "2026-01-01T00:00:00Z"})
        .to_string();
        text.push('\n');
        for n in start..end {
            let line = json!({"message": {
                "id": first_id + n as i64,
                "roomId": room_id,
                "author": format!("sip:poster{}@contoso.com", n % 50),
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
        let end_line = json!({"end": {"objects": 0, "messages": end - start, "sha256": sha256}});
        text.push_str(&end_line.to_string());
        service
            .import_data(&operator, text.as_bytes(), false)
            .await
            .unwrap();
    }
}

async fn sign_in(app: &axum::Router, token: &str) -> String {
    let request = Request::post("/signin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}")))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Renders `path` `requests` times; (p50 ms, p99 ms, bytes of the last page).
async fn measure(
    app: &axum::Router,
    cookie: &str,
    path: &str,
    requests: usize,
) -> (f64, f64, usize) {
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0;
    for _ in 0..requests {
        let request = Request::get(path)
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap();
        let started = Instant::now();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = axum::body::to_bytes(response.into_body(), 1 << 26)
            .await
            .unwrap();
        times.push(started.elapsed());
        bytes = body.len();
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), bytes)
}

fn main() {
    let rooms = env_number("PERCH_BENCH_ROOMS", 100_000);
    let big_room = env_number("PERCH_BENCH_BIG_ROOM", 1_000_000);
    let requests = env_number("PERCH_BENCH_REQUESTS", 200);
    let db = common::TestDb::new();
    let manifests = db.path().join("manifests");
    write_manifests(&manifests, rooms);
    let seeded = Instant::now();
    let (code, _, stderr) = common::perch(&[
        "apply",
        "--db",
        &db.url,
        "--yes",
        manifests.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "apply: {stderr}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let service = Service::new(Store::open(&db.url).await.unwrap());
        let archive = service
            .get(&Caller::local_operator(), perch::domain::Kind::Room, "archive")
            .await
            .unwrap();
        seed_messages(&service, archive.meta.id, big_room).await;
        println!(
            "web pages, server-side render time: {rooms} rooms of 10 members, a room of {big_room} messages (seeded in {:.1} s), {requests} requests each",
            seeded.elapsed().as_secs_f64()
        );
        let admin = service.create_token("sip:admin@contoso.com", Role::Admin).await.unwrap();
        let reader = service.create_token("sip:reader@contoso.com", Role::User).await.unwrap();
        let app = perch::server::app_with(service.clone(), None);
        let admin_cookie = sign_in(&app, &admin).await;
        let reader_cookie = sign_in(&app, &reader).await;
        let middle = format!("/admin/rooms?after=room-{:06}", rooms / 2);
        let before = format!("/chat/rooms/archive?before={}", big_room / 2);
        for (label, cookie, path) in [
            ("rooms page, first page (admin)", &admin_cookie, "/admin/rooms"),
            ("rooms page, a middle page (admin)", &admin_cookie, middle.as_str()),
            ("rooms page, filtered by category and privacy", &admin_cookie, "/admin/rooms?category=cat-3&privacy=open"),
            ("rooms page, filtered by member", &admin_cookie, "/admin/rooms?member=sip:user700@contoso.com"),
            ("chat client's rooms (a user)", &reader_cookie, "/chat"),
            ("room history page, newest 50", &reader_cookie, "/chat/rooms/archive"),
            ("room history page, 50 from the middle", &reader_cookie, before.as_str()),
        ] {
            let (p50, p99, bytes) = measure(&app, cookie, path, requests).await;
            println!("  {label:48} p50 {p50:7.2} ms  p99 {p99:7.2} ms  ({bytes} bytes)");
        }
    });
}
