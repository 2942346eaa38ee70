//! What operators check before they run a service, through the real binary: liveness and
//! readiness, request ids, and JSON logs that carry them and never a token or a body.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::TestDb;
use serde_json::Value;

#[tokio::test]
async fn json_logs_carry_the_request_id_and_nothing_secret() {
    let db = TestDb::new();
    let token = common::create_token(&db.url, "sip:admin@contoso.com", "admin");
    let log_path = db.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_perch"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db.url,
            "--log-format",
            "json",
        ])
        .env("PERCH_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("perch listening on ")
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();

    let liveness = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(liveness.status(), 200);
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let generated = ready.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 16, "{generated}");

    let created = client
        .post(format!("{base}/v1/categories?note=secret-query"))
        .bearer_auth(&token)
        .header("x-request-id", "client-chosen-1")
        .json(&serde_json::json!({"name": "Eng", "description": "a secret description"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["x-request-id"], "client-chosen-1");
    let forged = client
        .get(format!("{base}/healthz"))
        .header("x-request-id", "has space")
        .send()
        .await
        .unwrap();
    assert_ne!(forged.headers()["x-request-id"], "has space");

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|line| line["target"] == "perch::request")
        .collect();
    assert_eq!(requests.len(), 4, "one line per request: {text}");
    let create = requests
        .iter()
        .find(|line| line["fields"]["request_id"] == "client-chosen-1")
        .expect("the client's id is logged");
    assert_eq!(create["fields"]["route"], "/v1/{collection}");
    assert_eq!(create["fields"]["method"], "POST");
    assert_eq!(create["fields"]["status"], 201);
    assert!(
        requests
            .iter()
            .any(|line| line["fields"]["request_id"] == generated.as_str())
    );
    for secret in [token.as_str(), "secret-query", "a secret description"] {
        assert!(!text.contains(secret), "the log holds {secret}: {text}");
    }
}

/// The value of one sample in a Prometheus exposition, by its name and labels as printed.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split(' ').next()?.parse().ok()
    })
}

async fn metrics_text(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    response.text().await.unwrap()
}

async fn a_room_to_post_in(admin: &common::Client) {
    admin
        .post(
            "/v1/categories",
            serde_json::json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/rooms",
            serde_json::json!({"name": "general", "category": "Eng", "privacy": "open"}),
        )
        .await
        .expect(201);
}

#[tokio::test]
async fn metrics_count_real_requests_messages_streams_and_the_apply_lock() {
    let fixture = common::Fixture::new();
    let admin = &fixture.admin;
    a_room_to_post_in(admin).await;
    for _ in 0..3 {
        admin.get("/v1/categories").await.expect(200);
    }
    admin.get("/v1/rooms/nothing-here").await.expect(404);
    for text in ["one", "two"] {
        admin
            .post(
                "/v1/rooms/general/messages",
                serde_json::json!({"body": text}),
            )
            .await
            .expect(201);
    }
    admin
        .post(
            "/v1/locks/apply",
            serde_json::json!({"holder": "ci \"42\"", "ttlSeconds": 60}),
        )
        .await
        .expect(200);
    let http = reqwest::Client::new();
    let stream = http
        .get(format!("{}/v1/events", fixture.server.base))
        .bearer_auth(&fixture.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    let url = format!("{}/metrics", fixture.server.base);
    let text = metrics_text(&http, &url).await;
    let get_categories =
        r#"perch_http_requests_total{route="/v1/{collection}",method="GET",status="200"}"#;
    assert_eq!(sample(&text, get_categories), Some(3.0), "{text}");
    let missing =
        r#"perch_http_requests_total{route="/v1/{collection}/{name}",method="GET",status="404"}"#;
    assert_eq!(sample(&text, missing), Some(1.0), "{text}");
    let latency = r#"perch_http_request_duration_seconds_count{route="/v1/{collection}",method="GET",status="200"}"#;
    assert_eq!(sample(&text, latency), Some(3.0), "{text}");
    assert_eq!(sample(&text, "perch_messages_posted_total"), Some(2.0));
    assert_eq!(sample(&text, "perch_live_streams_open"), Some(1.0));
    for hub in [
        "perch_hub_hand_outs_total",
        "perch_hub_streams_looked_at_total",
        "perch_posts_judged_on_shared_inputs_total",
    ] {
        assert!(sample(&text, hub).is_some(), "{hub}: {text}");
    }
    assert_eq!(
        sample(&text, r#"perch_apply_lock_held{holder="ci \"42\""}"#),
        Some(1.0),
        "the holder is a label, escaped: {text}"
    );
    assert_eq!(sample(&text, "perch_archive_lag_events"), Some(0.0));
    assert_eq!(
        sample(&text, "perch_archive_last_success_timestamp_seconds"),
        Some(0.0)
    );
    assert_eq!(sample(&text, "perch_state_read_ok"), Some(1.0));
    assert!(sample(&text, r#"perch_db_pool_connections{state="in_use"}"#).is_some());
    let pool_size = if common::postgres_wanted() { 16.0 } else { 4.0 };
    assert_eq!(
        sample(&text, "perch_db_pool_max_connections"),
        Some(pool_size)
    );
    let build = format!(
        r#"perch_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &build), Some(1.0), "{text}");
    assert!(text.ends_with("# EOF\n"));

    // The scrape itself is counted by the next one; the stream, once closed, is not open.
    drop(stream);
    admin
        .delete("/v1/locks/apply?holder=ci%20%2242%22")
        .await
        .expect(204);
    let mut again = metrics_text(&http, &url).await;
    for _ in 0..100 {
        if sample(&again, "perch_live_streams_open") == Some(0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        again = metrics_text(&http, &url).await;
    }
    assert_eq!(sample(&again, "perch_live_streams_open"), Some(0.0));
    assert!(
        sample(
            &again,
            r#"perch_http_requests_total{route="/metrics",method="GET",status="200"}"#
        )
        .is_some_and(|count| count >= 1.0)
    );
    assert_eq!(
        sample(&again, r#"perch_apply_lock_held{holder=""}"#),
        Some(0.0)
    );
}

#[tokio::test]
async fn metrics_listen_serves_metrics_apart_from_the_api() {
    let db = TestDb::new();
    let (mut server, printed) = common::TestServer::start_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db.url,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let metrics_url = printed[0]
        .strip_prefix("perch metrics on ")
        .unwrap_or_else(|| panic!("{printed:?}"))
        .to_owned();
    let http = reqwest::Client::new();
    let text = metrics_text(&http, &metrics_url).await;
    assert!(text.contains("perch_build_info"), "{text}");
    let on_api = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404, "the API does not serve /metrics then");
    let healthz = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let text = metrics_text(&http, &metrics_url).await;
    assert_eq!(
        sample(
            &text,
            r#"perch_http_requests_total{route="/healthz",method="GET",status="200"}"#
        ),
        Some(1.0),
        "requests to the API count on the metrics address: {text}"
    );
    assert!(server.stop().success());
}

#[tokio::test]
async fn tls_serves_http2_with_a_certificate_the_client_verifies() {
    let db = TestDb::new();
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert_path = db.path().join("cert.pem");
    let key_path = db.path().join("key.pem");
    std::fs::write(&cert_path, generated.cert.pem()).unwrap();
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).unwrap();
    let (mut server, _) = common::TestServer::start_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db.url,
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let root = reqwest::Certificate::from_pem(generated.cert.pem().as_bytes()).unwrap();
    let verifying = reqwest::Client::builder()
        .add_root_certificate(root)
        .tls_built_in_root_certs(false)
        .https_only(true)
        .build()
        .unwrap();
    let response = verifying
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);

    // A client that does not trust the certificate is refused, and so is plain HTTP.
    let trusting_nothing = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(
        trusting_nothing
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err()
    );
    let plain = server.base.replacen("https://", "http://", 1);
    let answered = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(
        answered.is_err() || !answered.unwrap().status().is_success(),
        "plain HTTP gets no answer from a TLS listener"
    );
    // On SIGTERM the server says GOAWAY on the open HTTP/2 connection and waits for the
    // client to answer: the client's runtime goes on running while the server stops (a
    // frozen client would hold the server until --shutdown-timeout, 10 s, longer than
    // `stop` waits).
    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    drop((verifying, trusting_nothing));
    assert!(status.success());
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_before_serving() {
    let db = TestDb::new();
    let one = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = db.path().join("cert.pem");
    let key_path = db.path().join("key.pem");
    std::fs::write(&cert_path, one.cert.pem()).unwrap();
    std::fs::write(&key_path, other.signing_key.serialize_pem()).unwrap();
    let (code, _stdout, stderr) = common::perch(&[
        "serve",
        "--check-config",
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("do not go together"), "{stderr}");
}

#[test]
fn the_config_file_resolves_under_flags_and_variables() {
    let db = TestDb::new();
    let config = db.path().join("perch.toml");
    std::fs::write(
        &config,
        format!(
            "# perch serve's options\nlisten = \"127.0.0.1:9999\"\ndb = \"{}\"\nrate-limit = 7\nshutdown-timeout = 4\nlog-format = \"json\"\n",
            db.url
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_perch"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(["--check-config", "--rate-limit", "9"])
        .env("PERCH_SHUTDOWN_TIMEOUT", "3")
        .env_remove("PERCH_DB")
        .env_remove("PERCH_LISTEN")
        .env_remove("PERCH_LOG_FORMAT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let row = |name: &str| {
        stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .map_or_else(
                || panic!("no {name} in {stdout}"),
                |line| {
                    line.split_whitespace()
                        .skip(1)
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            )
    };
    assert_eq!(row("listen"), "127.0.0.1:9999 (config file)");
    assert_eq!(row("db"), format!("{} (config file)", db.url));
    assert_eq!(row("rate-limit"), "9 (flag)");
    assert_eq!(row("shutdown-timeout"), "3 (PERCH_SHUTDOWN_TIMEOUT)");
    assert_eq!(row("retention-interval"), "3600 (default)");
    assert_eq!(row("log-format"), "json (config file)");
    assert!(stdout.contains("the configuration is valid"));
    assert!(
        !db.path().join("perch.db").exists() || db.url.starts_with("postgres"),
        "--check-config opens no database"
    );

    // A key no flag has is an error that names its line and column.
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nrate-limt = 5\n").unwrap();
    let (code, _, stderr) = common::perch(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--check-config",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("perch.toml:2:1"), "{stderr}");
    assert!(stderr.contains("rate-limt"), "{stderr}");
    // A password in the database URL is never printed.
    std::fs::write(&config, "db = \"postgres://perch:hunter2@db/perch\"\n").unwrap();
    let (code, stdout, _) = common::perch(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--check-config",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("postgres://perch:***@db/perch"), "{stdout}");
    assert!(!stdout.contains("hunter2"));
}

#[tokio::test]
async fn the_server_listens_where_its_config_file_says() {
    let db = TestDb::new();
    let config = db.path().join("perch.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\ndb = \"{}\"\n", db.url),
    )
    .unwrap();
    let (mut server, _) =
        common::TestServer::start_with(&["--config", config.to_str().unwrap()], &[]);
    assert!(server.base.starts_with("http://127.0.0.1:"));
    let ready = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    server.stop();
}

#[tokio::test]
async fn readiness_fails_once_the_node_drains_and_liveness_does_not() {
    use tower::ServiceExt;
    let db = TestDb::new();
    let store = perch::store::Store::open(&db.url).await.unwrap();
    let service = perch::service::Service::new(store);
    let app = perch::server::app(service.clone());
    let status = |path: &'static str| {
        let app = app.clone();
        async move {
            let request = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            app.oneshot(request).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(status("/readyz").await, 200);
    service.begin_drain();
    assert_eq!(status("/readyz").await, 503);
    assert_eq!(status("/healthz").await, 200);
}

/// A mistyped `--db` names a file that does not exist: a command that does not bring a
/// database into being refuses it, rather than creating an empty one and backing up,
/// exporting or listing nothing with success. `plan` and `apply` still start from nothing.
#[test]
fn a_command_that_creates_no_database_refuses_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let url = format!("sqlite://{}", missing.display());
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let examples = examples.to_str().unwrap();
    let elsewhere = format!("sqlite://{}", dir.path().join("elsewhere.db").display());
    let refusing: [&[&str]; 10] = [
        &[
            "migrate",
            "--to",
            elsewhere.as_str(),
            "--from",
            url.as_str(),
        ],
        &["backup", "--out", out],
        &["drift", examples],
        &["export", "--out", out],
        &["room", "list"],
        &["category", "show", "x"],
        &["token", "list"],
        &["audit"],
        &["data", "export", "--out", out],
        &["unlock", "apply"],
    ];
    for args in refusing {
        let db: &[&str] = if args[0] == "migrate" {
            &[]
        } else {
            &["--db", url.as_str()]
        };
        let args = [args, db].concat();
        let (code, stdout, stderr) = common::perch(&args);
        assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("no database at") && stderr.contains("typo.db"),
            "{args:?}: {stderr}"
        );
        assert!(!missing.exists(), "{args:?} created the database");
    }
    let (code, _, stderr) = common::perch(&["plan", examples, "--db", &url, "--detailed-exitcode"]);
    assert_eq!(code, 2, "{stderr}");
}

/// `perch unlock` names one of the locks there are: a typo (`archivr`) is a usage error, not
/// "nobody holds the archivr lock" and success.
#[test]
fn unlock_refuses_a_lock_that_does_not_exist() {
    let (code, stdout, stderr) = common::perch(&["unlock", "archivr"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("invalid value 'archivr'") && stderr.contains("apply, archiver"),
        "{stderr}"
    );
}
