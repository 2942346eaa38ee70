//! Perch beside a peer, under the same load in one run: `CLIENTS` clients, each with its own
//! user and token, post in one room as fast as their answers come back (each client waits
//! for its answer before it posts again, as a person's client does). Prints messages stored
//! per second, post latency p50/p99 for each, and the ratio.
//!
//! The peer is Matrix Synapse, which `benches/peers/synapse.sh` installs from PyPI into a
//! virtual environment, starts on loopback and names in `PERCH_PEERS_SYNAPSE` (its base URL)
//! before it runs this bench; without it, only Perch is measured and the bench says so.
//! Not in CI: it downloads Synapse.
//!
//! `PERCH_BENCH_MESSAGES` (Perch, default 20,000) and `PERCH_PEERS_MESSAGES` (the peer,
//! default 2,000: at tens of messages a second more only lengthens the run) resize it.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "benchmark figures: counts and percentile indices are small and positive"
)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::env_number;

const CLIENTS: usize = 50;

/// One posting client: where it posts and as whom.
#[derive(Clone)]
enum Poster {
    Perch {
        http: reqwest::Client,
        base: String,
        token: String,
    },
    Synapse {
        http: reqwest::Client,
        base: String,
        room_id: String,
        token: String,
    },
}

impl Poster {
    /// Posts `body` (the `number`th message of the run) and waits for the server's answer.
    async fn post(&self, number: usize, body: &str) {
        let response = match self {
            Poster::Perch { http, base, token } => http
                .post(format!("{base}/v1/rooms/busy/messages"))
                .bearer_auth(token)
                .json(&json!({"body": body}))
                .send()
                .await
                .expect("post to Perch"),
            Poster::Synapse {
                http,
                base,
                room_id,
                token,
            } => http
                .put(format!(
                    "{base}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/txn{number}"
                ))
                .bearer_auth(token)
                .json(&json!({"msgtype": "m.text", "body": body}))
                .send()
                .await
                .expect("post to Synapse"),
        };
        let status = response.status();
        assert!(status.is_success(), "a post was refused: {status}");
    }
}

/// What one load run measured.
struct Figures {
    messages: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, fraction: f64) -> f64 {
        let index = ((self.latencies.len() as f64 - 1.0) * fraction).round() as usize;
        self.latencies[index].as_secs_f64() * 1e3
    }

    fn print(&self, name: &str) {
        println!(
            "  {name:<16} {:>9.1} messages/s ({} in {:.2} s), post p50 {:.2} ms, p99 {:.2} ms",
            self.rate(),
            self.messages,
            self.elapsed.as_secs_f64(),
            self.percentile(0.5),
            self.percentile(0.99)
        );
    }
}

/// The load: `posters.len()` clients share `total` messages and post them one after another.
async fn post_load(posters: Vec<Poster>, total: usize) -> Figures {
    let clients = posters.len();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (index, poster) in posters.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for number in (index..total).step_by(clients) {
                let body = format!("message {number} from poster {index}");
                let at = Instant::now();
                poster.post(number, &body).await;
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
    latencies.sort();
    Figures {
        messages: total,
        elapsed,
        latencies,
    }
}

/// Perch on SQLite at its documented setting, one room of the category's whole domain.
async fn perch_posters(server: &common::TestServer, url: &str) -> Vec<Poster> {
    let admin = server.client(&common::create_token(url, "sip:admin@contoso.com", "admin"));
    admin
        .post(
            "/v1/categories",
            json!({"name": "Bench", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/rooms",
            json!({"name": "busy", "category": "Bench", "privacy": "open"}),
        )
        .await
        .expect(201);
    (0..CLIENTS)
        .map(|index| Poster::Perch {
            http: reqwest::Client::new(),
            base: server.base.clone(),
            token: common::create_token(url, &format!("sip:poster{index}@contoso.com"), "user"),
        })
        .collect()
}

/// Registers a Synapse user (the script's configuration lets anyone register without a
/// challenge) and returns its access token.
async fn synapse_user(http: &reqwest::Client, base: &str, name: &str) -> String {
    let reply: Value = http
        .post(format!("{base}/_matrix/client/v3/register"))
        .json(&json!({
            "username": name,
            "password": "perch-peer-bench",
            "auth": {"type": "m.login.dummy"},
            "inhibit_login": false,
        }))
        .send()
        .await
        .expect("register on Synapse")
        .json()
        .await
        .expect("registration reply");
    reply["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("Synapse registered no `{name}`: {reply}"))
        .to_owned()
}

/// A public room on Synapse that `CLIENTS` fresh users joined.
async fn synapse_posters(base: &str) -> Vec<Poster> {
    let http = reqwest::Client::new();
    let run = std::process::id();
    let owner = synapse_user(&http, base, &format!("owner{run}")).await;
    let room: Value = http
        .post(format!("{base}/_matrix/client/v3/createRoom"))
        .bearer_auth(&owner)
        .json(&json!({"preset": "public_chat", "name": "busy"}))
        .send()
        .await
        .expect("create a room on Synapse")
        .json()
        .await
        .expect("room reply");
    let room_id = room["room_id"]
        .as_str()
        .unwrap_or_else(|| panic!("Synapse made no room: {room}"))
        .to_owned();
    let mut posters = Vec::new();
    for index in 0..CLIENTS {
        let token = synapse_user(&http, base, &format!("poster{index}x{run}")).await;
        let joined = http
            .post(format!("{base}/_matrix/client/v3/join/{room_id}"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .expect("join on Synapse");
        assert!(joined.status().is_success(), "join: {}", joined.status());
        posters.push(Poster::Synapse {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            room_id: room_id.clone(),
            token,
        });
    }
    posters
}

fn main() {
    let perch_messages = env_number("PERCH_BENCH_MESSAGES", 20_000);
    let peer_messages = env_number("PERCH_PEERS_MESSAGES", 2_000);
    let synapse = std::env::var("PERCH_PEERS_SYNAPSE").ok();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = common::TestDb::sqlite();
    let server = common::TestServer::start(&db.url);
    println!(
        "{CLIENTS} clients posting in one room over HTTP on loopback, each waiting for its answer"
    );
    let perch = runtime.block_on(async {
        let posters = perch_posters(&server, &db.url).await;
        // A warm-up, as the peer's first posts also pay for its caches.
        post_load(posters.clone(), CLIENTS * 4).await;
        post_load(posters, perch_messages).await
    });
    perch.print("Perch (SQLite)");
    drop(server);
    let Some(base) = synapse else {
        println!(
            "  Synapse          not measured: benches/peers/synapse.sh installs and starts it"
        );
        return;
    };
    let peer = runtime.block_on(async {
        let posters = synapse_posters(&base).await;
        post_load(posters.clone(), CLIENTS * 4).await;
        post_load(posters, peer_messages).await
    });
    let version = std::env::var("PERCH_PEERS_SYNAPSE_VERSION").unwrap_or_default();
    peer.print(&format!("Synapse {version}"));
    println!(
        "  ratio            Perch stores {:.0}x the messages per second; its p99 is {:.1}x shorter",
        perch.rate() / peer.rate(),
        peer.percentile(0.99) / perch.percentile(0.99)
    );
}
