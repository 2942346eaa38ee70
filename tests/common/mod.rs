//! Starts the real `perch` binary on a random loopback port over a fresh database.
#![allow(dead_code)] // Each test crate uses a different part of this helper.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_perch");

/// A throwaway database: a SQLite file in a temp dir.
pub struct TestDb {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("perch.db").display());
        TestDb { dir, url }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// Runs `perch` with arguments and returns (exit code, stdout, stderr).
pub fn perch(args: &[&str]) -> (i32, String, String) {
    perch_in(None, args)
}

pub fn perch_in(dir: Option<&std::path::Path>, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("PERCH_LOG", "warn")
        .env_remove("PERCH_TOKEN")
        .env_remove("PERCH_DB");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.stdin(Stdio::null()).output().expect("run perch");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn create_token(db: &str, user: &str, role: &str) -> String {
    let (code, stdout, stderr) = perch(&[
        "token", "create", "--db", db, "--user", user, "--role", role,
    ]);
    assert_eq!(code, 0, "token create failed: {stderr}");
    stdout.trim().to_owned()
}

/// A running `perch serve`, stopped with SIGTERM when dropped.
pub struct TestServer {
    child: Child,
    pub base: String,
    pub db_url: String,
}

impl TestServer {
    pub fn start(db_url: &str) -> TestServer {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--db", db_url])
            .env("PERCH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn perch serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("perch listening on ")
            .unwrap_or_else(|| panic!("perch serve did not print its address; it printed {line:?}"))
            .to_owned();
        TestServer {
            child,
            base,
            db_url: db_url.to_owned(),
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        panic!("perch serve did not stop within 5 s of SIGTERM");
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn client(&self, token: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            token: Some(token.to_owned()),
        }
    }

    pub fn anonymous(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            token: None,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A response: status, ETag and JSON body (Null when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected reply: {:#}",
            self.body
        );
        self
    }

    pub fn expect_error(self, status: u16, code: &str) -> Reply {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "unexpected reply: {:#}",
            self.body
        );
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        self
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    token: Option<String>,
}

impl Client {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.expect("response body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply { status, etag, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(&body), &[]).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(&body), &[]).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(&body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, &[]).await
    }

    pub async fn raw(&self, method: Method, path: &str, body: &str) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Reply {
            status,
            etag: None,
            body,
        }
    }
}

/// A server with an admin client over a fresh database.
pub struct Fixture {
    pub db: TestDb,
    pub server: TestServer,
    pub admin: Client,
    pub admin_token: String,
}

impl Fixture {
    pub fn new() -> Fixture {
        let db = TestDb::new();
        let admin_token = create_token(&db.url, "sip:admin@contoso.com", "admin");
        let server = TestServer::start(&db.url);
        let admin = server.client(&admin_token);
        Fixture {
            db,
            server,
            admin,
            admin_token,
        }
    }

    pub fn user(&self, user: &str) -> Client {
        let token = create_token(&self.db.url, user, "user");
        self.server.client(&token)
    }
}
