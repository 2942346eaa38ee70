//! The cost of capture: messages stored per second with compliance off and on, in one run, the
//! service in process over SQLite (or PostgreSQL with `PERCH_TEST_BACKEND=postgres`), 50
//! concurrent posters. Each setting runs twice, interleaved (off, on, off, on), each on a fresh
//! database, so that a warming disk or a busy neighbour does not favour one.
//!
//! Run: `cargo bench --bench compliance` (`PERCH_BENCH_MESSAGES` to resize, default 20,000).

#![allow(
    clippy::cast_precision_loss,
    reason = "benchmark figures: counts are far below 2^52"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use perch::domain::{ComplianceConfiguration, Kind};
use perch::service::{Caller, Object, Ownership, Precondition, Role, Service};
use perch::store::Store;
use serde_json::json;

const CLIENTS: usize = 50;

async fn run(total: usize, compliance: bool) -> f64 {
    let db = common::TestDb::new();
    let service = Service::new(Store::open(&db.url).await.expect("store"));
    let admin = Caller::local_operator();
    let category = Object::from_json(
        Kind::Category,
        json!({"name": "Bench", "allowedMembers": ["domain:contoso.com"]}),
    )
    .expect("category");
    service
        .create(&admin, category, Ownership::Keep)
        .await
        .expect("category");
    let room = Object::from_json(
        Kind::Room,
        json!({"name": "busy", "category": "Bench", "privacy": "open"}),
    )
    .expect("room");
    service
        .create(&admin, room, Ownership::Keep)
        .await
        .expect("room");
    let configuration: ComplianceConfiguration = serde_json::from_value(json!({
        "enabled": compliance,
        "adapterOutputDirectory": db.path().join("archive").display().to_string(),
    }))
    .expect("configuration");
    service
        .set_compliance(&admin, configuration, Precondition::None, Ownership::Keep)
        .await
        .expect("compliance");
    let mut posters = Vec::new();
    for index in 0..CLIENTS {
        let token = service
            .create_token(&format!("sip:poster{index}@contoso.com"), Role::User)
            .await
            .expect("token");
        posters.push(
            service
                .authenticate(&token)
                .await
                .expect("auth")
                .expect("caller"),
        );
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, poster) in posters.into_iter().enumerate() {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            for number in (index..total).step_by(CLIENTS) {
                service
                    .post_message(&poster, "busy", &format!("message {number}"), None)
                    .await
                    .expect("post");
            }
        }));
    }
    for task in tasks {
        task.await.expect("poster");
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    service.store().close().await;
    rate
}

fn main() {
    let total = std::env::var("PERCH_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let backend = if common::postgres_wanted() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut off = Vec::new();
    let mut on = Vec::new();
    for _ in 0..2 {
        off.push(runtime.block_on(run(total, false)));
        on.push(runtime.block_on(run(total, true)));
    }
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    println!(
        "capture cost, service in process, {backend}, {CLIENTS} concurrent posters, {total} messages per run"
    );
    println!(
        "  compliance off: {:.0} messages/s (runs {:.0}, {:.0})",
        mean(&off),
        off[0],
        off[1]
    );
    println!(
        "  compliance on:  {:.0} messages/s (runs {:.0}, {:.0})",
        mean(&on),
        on[0],
        on[1]
    );
    println!(
        "  capture costs {:.1}% of the throughput",
        (1.0 - mean(&on) / mean(&off)) * 100.0
    );
}
