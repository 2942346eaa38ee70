//! What one room read costs a `user` token against an `admin` token on a large server: the
//! access rules must cost what the request touches, not the size of the server.
//!
//! Seeds 100,000 rooms (10 members each) through the service, then, against the real release
//! server on loopback, times 2,000 `GET /v1/rooms/{name}` for each role one after the other,
//! and 8 concurrent users for 5 seconds.
//!
//! Run: `cargo bench --bench access` (`PERCH_BENCH_ROOMS` to resize).

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    reason = "benchmark figures: counts and percentile indices are small and positive"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use perch::domain::{Category, Principal, Privacy, Room, RoomInvitations, RoomType};
use perch::service::{Caller, Object, Operation, Ownership, Role, Service};
use perch::store::Store;

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

fn principal(text: &str) -> Principal {
    Principal::parse(text).expect("principal")
}

fn main() {
    let rooms: usize = std::env::var("PERCH_BENCH_ROOMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let db = common::TestDb::sqlite();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (admin_token, user_token) = runtime.block_on(async {
        let store = Store::open(&db.url).await.expect("store");
        let service = Service::new(store.clone());
        let operator = Caller::local_operator();
        let seeded = Instant::now();
        let mut batch = service.batch().await.expect("batch");
        batch
            .run(
                &operator,
                Operation::Create {
                    object: Object::Category(Category {
                        name: "Eng".to_owned(),
                        description: String::new(),
                        allowed_members: vec![principal("domain:contoso.com")],
                        denied_members: vec![],
                        creators: vec![],
                        invitations: false,
                        file_upload: false,
                        chat_history: true,
                        retention: None,
                    }),
                    ownership: Ownership::Keep,
                },
            )
            .await
            .expect("category");
        for n in 0..rooms {
            let members = (0..10)
                .map(|m| principal(&format!("sip:user{}@contoso.com", (n + m) % 5000)))
                .collect();
            let room = Room {
                name: format!("room-{n}"),
                category: "Eng".to_owned(),
                description: "a room of the access benchmark".to_owned(),
                privacy: if n % 2 == 0 {
                    Privacy::Closed
                } else {
                    Privacy::Secret
                },
                room_type: RoomType::Normal,
                addin: None,
                invitations: RoomInvitations::Inherit,
                disabled: false,
                members,
                managers: vec![],
                presenters: vec![],
            };
            batch
                .run(
                    &operator,
                    Operation::Create {
                        object: Object::Room(room),
                        ownership: Ownership::Keep,
                    },
                )
                .await
                .expect("room");
            if n % 5000 == 4999 {
                batch.commit().await.expect("commit");
                batch = service.batch().await.expect("batch");
            }
        }
        batch.commit().await.expect("commit");
        println!(
            "seeded {rooms} rooms with 10 members each in {:.1} s",
            seeded.elapsed().as_secs_f64()
        );
        let admin = service
            .create_token("sip:admin@contoso.com", Role::Admin)
            .await
            .expect("token");
        let user = service
            .create_token("sip:user7@contoso.com", Role::User)
            .await
            .expect("token");
        store.close().await;
        (admin, user)
    });
    let server = common::TestServer::start(&db.url);
    runtime.block_on(async {
        for (role, token) in [("admin", &admin_token), ("user", &user_token)] {
            let client = server.client(token);
            let mut latencies = Vec::new();
            let mut seed = 0x9e37_79b9_u64;
            for _ in 0..2000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let name = format!("room-{}", seed as usize % rooms);
                let started = Instant::now();
                let reply = client.get(&format!("/v1/rooms/{name}")).await;
                latencies.push(started.elapsed());
                assert!(
                    matches!(reply.status.as_u16(), 200 | 404),
                    "{:?}",
                    reply.body
                );
            }
            latencies.sort();
            println!(
                "GET /v1/rooms/{{name}} on {rooms} rooms, {role} token: p50 {:.2} ms, p99 {:.2} ms",
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99)
            );
        }
        // Eight users at once, for five seconds.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tasks = Vec::new();
        for worker in 0..8u64 {
            let client = server.client(&user_token);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut seed = 0x2545_f491_u64 + worker;
                while Instant::now() < deadline {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let started = Instant::now();
                    client
                        .get(&format!("/v1/rooms/room-{}", seed as usize % rooms))
                        .await;
                    latencies.push(started.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("worker"));
        }
        latencies.sort();
        println!(
            "8 concurrent user tokens for 5 s: {:.0} requests/s, p99 {:.2} ms",
            latencies.len() as f64 / 5.0,
            percentile(&latencies, 0.99)
        );
    });
}
