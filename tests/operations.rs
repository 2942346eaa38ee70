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
