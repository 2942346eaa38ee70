//! Starts the real `perch` binary on a random loopback port over a fresh database.
#![allow(dead_code)] // Each test crate uses a different part of this helper.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_perch");

/// A throwaway database and a temp dir for files: a SQLite file in that dir, or, with
/// `PERCH_TEST_BACKEND=postgres`, a fresh database on a PostgreSQL cluster the tests start
/// themselves (or on the server `PERCH_TEST_PG_URL` names).
pub struct TestDb {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = if postgres_wanted() {
            postgres::fresh_database()
        } else {
            format!("sqlite://{}", dir.path().join("perch.db").display())
        };
        TestDb { dir, url }
    }

    /// A fresh SQLite database, whatever the backend under test.
    pub fn sqlite() -> TestDb {
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
        .env_remove("PERCH_DB")
        // `perch plan` keeps its cache beside the test's files, never in the home directory.
        .env(
            "PERCH_PLAN_CACHE",
            dir.map_or_else(std::env::temp_dir, std::path::Path::to_path_buf)
                .join("perch-plan-cache"),
        );
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
        TestServer::start_with_env(db_url, &[])
    }

    pub fn start_with_env(db_url: &str, env: &[(&str, &str)]) -> TestServer {
        TestServer::start_with(&["--listen", "127.0.0.1:0", "--db", db_url], env).0
    }

    /// Starts `perch serve ARGS` and reads the line that names its address (and, with
    /// `--metrics-listen`, the line that names the metrics address, returned).
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> (TestServer, Vec<String>) {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .env("PERCH_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn perch serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("perch listening on ")
            .unwrap_or_else(|| panic!("perch serve did not print its address; it printed {line:?}"))
            .to_owned();
        let mut more = Vec::new();
        if args.contains(&"--metrics-listen") {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read the metrics line");
            more.push(line.trim().to_owned());
        }
        let db_url = args
            .iter()
            .position(|arg| *arg == "--db")
            .and_then(|at| args.get(at + 1))
            .map_or_else(String::new, |url| (*url).to_owned());
        (
            TestServer {
                child,
                base,
                db_url,
            },
            more,
        )
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    /// The CPU time the server process used so far (user and system), where `/proc` tells.
    #[allow(dead_code, reason = "benchmarks only")]
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The fields after the command name (which may hold spaces) close with `)`.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // The kernel counts in USER_HZ, 100 on Linux.
        Some(Duration::from_millis(ticks * 10))
    }

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

    /// Waits for the server to exit by itself (a crash), up to `seconds`.
    pub fn wait_for_exit(&mut self, seconds: u64) -> std::process::ExitStatus {
        for _ in 0..seconds * 40 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("perch serve did not exit within {seconds} s");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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

pub fn postgres_wanted() -> bool {
    std::env::var("PERCH_TEST_BACKEND").is_ok_and(|backend| backend == "postgres")
}

/// A PostgreSQL cluster for the tests of one process, and fresh databases on it.
pub mod postgres {
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    static SERVER: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// The URL of a new, empty database.
    ///
    /// Runs on a thread of its own, since async tests call it from inside their runtime.
    pub fn fresh_database() -> String {
        std::thread::spawn(fresh_database_here)
            .join()
            .expect("test database")
    }

    fn fresh_database_here() -> String {
        let admin = SERVER.get_or_init(start_or_find_server);
        let name = format!(
            "perch_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(admin)
                .await
                .expect("connect to the test cluster");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut connection)
                .await
                .expect("create a test database");
        });
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        format!("{base}/{name}")
    }

    fn start_or_find_server() -> String {
        if let Ok(url) = std::env::var("PERCH_TEST_PG_URL") {
            return url;
        }
        let bin = [
            "/usr/lib/postgresql/15/bin",
            "/usr/lib/postgresql/16/bin",
            "/usr/lib/postgresql/17/bin",
        ]
        .into_iter()
        .find(|dir| std::path::Path::new(dir).join("initdb").exists())
        .map(str::to_owned)
        .unwrap_or_default();
        let tool = |name: &str| {
            if bin.is_empty() {
                name.to_owned()
            } else {
                format!("{bin}/{name}")
            }
        };
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        // PostgreSQL refuses to run as root; the cluster belongs to the postgres user then.
        let as_owner = |program: String| {
            if root {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--", &program]);
                command
            } else {
                Command::new(program)
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("perch-pg-")
            .tempdir()
            .expect("temp dir")
            .keep();
        if root {
            let _ = Command::new("chown")
                .args(["-R", "postgres", dir.to_str().unwrap()])
                .status();
            let _ = Command::new("chmod")
                .args(["755", dir.to_str().unwrap()])
                .status();
        }
        let data = dir.join("data");
        let status = as_owner(tool("initdb"))
            .args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb (install PostgreSQL, or set PERCH_TEST_PG_URL)");
        assert!(status.success(), "initdb failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The cluster stops and its files go when this test process ends.
        let script = format!(
            "{postgres} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c max_connections=300 >{dir}/log 2>&1 & pg=$!; \
             while [ -d /proc/{parent} ]; do sleep 0.5; done; kill -INT $pg; wait $pg; rm -rf {dir}",
            postgres = tool("postgres"),
            data = data.display(),
            dir = dir.display(),
            parent = std::process::id(),
        );
        let mut shell = as_owner("sh".to_owned());
        shell
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The watchdog shell outlives this handle on purpose: it ends with the test process.
        let watchdog = shell.spawn().expect("start postgres");
        std::mem::forget(watchdog);
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let deadline = Instant::now() + Duration::from_secs(60);
        runtime.block_on(async {
            use sqlx::Connection;
            loop {
                match sqlx::PgConnection::connect(&url).await {
                    Ok(connection) => {
                        let _ = connection.close().await;
                        return;
                    }
                    Err(error) if Instant::now() > deadline => {
                        panic!("the test PostgreSQL on port {port} did not start within 60 s: {error}; see {}/log", dir.display())
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        url
    }
}

/// A `perch-data` file (level `content`) holding these lines (`{"object": ..}` or
/// `{"message": ..}`), with its header and end line.
#[allow(
    dead_code,
    reason = "used by some of the test binaries that include this module"
)]
pub fn data_file(lines: &[String]) -> String {
    use sha2::Digest;
    let header = serde_json::json!({"format": "perch-data", "version": 1, "level": "content",
        "exportedAt": "2026-01-01T00:00:00.000000Z"});
    let mut body = format!("{header}\n");
    for line in lines {
        body.push_str(line);
        body.push('\n');
    }
    let sha256 =
        sha2::Sha256::digest(body.as_bytes())
            .iter()
            .fold(String::new(), |mut hex, byte| {
                use std::fmt::Write as _;
                let _ = write!(hex, "{byte:02x}");
                hex
            });
    let objects = lines
        .iter()
        .filter(|line| line.starts_with("{\"object\""))
        .count();
    let messages = lines.len() - objects;
    body.push_str(
        &serde_json::json!({"end": {"objects": objects, "messages": messages, "sha256": sha256}})
            .to_string(),
    );
    body.push('\n');
    body
}
