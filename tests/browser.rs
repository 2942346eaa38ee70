//! The web interface end to end: real headless Chromium, driven over WebDriver by
//! `chromedriver`, against a real `perch serve` on a temp database.
//!
//! Every page visited is saved as a PNG under `$CARGO_TARGET_TMPDIR/screenshots/` (printed at
//! the end) so that a reviewer can look at each one.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! test says so and passes, except in CI (`CI=true`), where it fails.
//!
//! The WebDriver client is the dozen W3C commands these tests use, over the `reqwest` the
//! crate already has: the WebDriver crates pull in an ICU text segmenter and a second HTTP stack.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestDb, TestServer, create_token, perch};
use serde_json::{Value, json};

/// The key of a web element reference (W3C WebDriver).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn chromedriver() -> Option<&'static str> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|path| Path::new(path).exists())
}

/// A running `chromedriver`, killed when dropped.
struct Driver {
    child: Child,
    base: String,
}

impl Driver {
    fn start(binary: &str) -> Driver {
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// One browser window (a WebDriver session) with its own profile, so its cookies are its own.
struct Browser {
    http: reqwest::Client,
    session: String,
    site: String,
    shots: PathBuf,
    name: &'static str,
    _profile: tempfile::TempDir,
}

#[derive(Clone)]
struct Element(String);

impl Browser {
    async fn open(driver: &Driver, site: &str, shots: &Path, name: &'static str) -> Browser {
        let http = reqwest::Client::new();
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        // chromedriver takes a moment to listen: retried until it answers, within a minute.
        let deadline = Instant::now() + Duration::from_secs(60);
        let answer = loop {
            match http
                .post(format!("{}/session", driver.base))
                .json(&capabilities)
                .send()
                .await
            {
                Ok(response) => break response.json::<Value>().await.expect("session answer"),
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("chromedriver does not answer: {error}"),
            }
        };
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Browser {
            http,
            session: format!("{}/session/{session}", driver.base),
            site: site.to_owned(),
            shots: shots.to_path_buf(),
            name,
            _profile: profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("WebDriver JSON");
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn goto(&self, path: &str) {
        self.post("/url", json!({"url": format!("{}{path}", self.site)}))
            .await;
    }

    async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn try_find(&self, css: &str) -> Option<Element> {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// Waits (up to 20 s, polling) for an element to be there.
    async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(element) = self.try_find(css).await {
                return element;
            }
            if Instant::now() > deadline {
                let page = self.page_text().await;
                panic!(
                    "[{}] no `{css}` on {}:\n{page}",
                    self.name,
                    self.url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn text(&self, element: &Element) -> String {
        self.command(
            reqwest::Method::GET,
            &format!("/element/{}/text", element.0),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    async fn page_text(&self) -> String {
        match self.try_find("body").await {
            Some(body) => self.text(&body).await,
            None => String::new(),
        }
    }

    /// Waits (up to 20 s, polling) until the page's text contains `wanted`.
    async fn wait_for_text(&self, wanted: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.page_text().await;
            if text.contains(wanted) {
                return text;
            }
            let url = self.url().await;
            assert!(
                Instant::now() <= deadline,
                "[{}] `{wanted}` never appeared on {url}:\n{text}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    async fn clear(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{}/clear", element.0), json!({}))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(
            &format!("/element/{}/value", element.0),
            json!({"text": text}),
        )
        .await;
    }

    async fn fill(&self, css: &str, text: &str) {
        self.clear(css).await;
        self.type_into(css, text).await;
    }

    async fn select(&self, select_css: &str, value: &str) {
        self.click(&format!("{select_css} option[value=\"{value}\"]"))
            .await;
    }

    /// Saves the window as `NN-page.png`.
    async fn screenshot(&self, page: &str) {
        use base64::Engine;
        let data = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a PNG in base64");
        std::fs::write(self.shots.join(format!("{}-{page}.png", self.name)), bytes)
            .expect("write a screenshot");
    }

    /// Presses keys as a person would, on whatever has the focus (`\u{E004}` is Tab,
    /// `\u{E007}` Enter).
    async fn keyboard(&self, keys: &str) {
        let mut actions = Vec::new();
        for key in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": key.to_string()}));
            actions.push(json!({"type": "keyUp", "value": key.to_string()}));
        }
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// The `id` of the focused element.
    async fn focused_id(&self) -> String {
        let active = self
            .command(reqwest::Method::GET, "/element/active", None)
            .await;
        let Some(element) = active[ELEMENT].as_str() else {
            return String::new();
        };
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/attribute/id"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Presses Tab until the element with `id` has the focus (at most 40 times).
    async fn tab_to(&self, id: &str) {
        for _ in 0..40 {
            if self.focused_id().await == id {
                return;
            }
            self.keyboard("\u{E004}").await;
        }
        panic!("[{}] Tab never reached #{id}", self.name);
    }

    async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    async fn sign_in(&self, token: &str) {
        self.goto("/signin").await;
        self.fill("#token", token).await;
        self.click("form button[type=submit]").await;
        self.find("form.signout").await;
    }

    async fn quit(self) {
        self.command(reqwest::Method::DELETE, "", None).await;
    }
}

fn manifests(dir: &Path) -> PathBuf {
    let path = dir.join("manifests");
    std::fs::create_dir_all(&path).expect("manifest dir");
    std::fs::write(
        path.join("ops.yaml"),
        "apiVersion: perch/v1\nkind: Category\nname: Ops\nallowedMembers: [domain:contoso.com]\n\
         ---\napiVersion: perch/v1\nkind: Room\nname: ops-room\ncategory: Ops\nprivacy: closed\n\
         members: [sip:carol@contoso.com]\n",
    )
    .expect("write manifests");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_and_users_work_in_a_real_browser() {
    let Some(chromedriver) = chromedriver() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the browser tests: install chromium and chromium-driver"
        );
        eprintln!("skipped: no chromedriver (apt-get install chromium chromium-driver)");
        return;
    };
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let db = TestDb::new();
    let admin_token = create_token(&db.url, "sip:admin@contoso.com", "admin");
    let dana_token = create_token(&db.url, "sip:dana@contoso.com", "admin");
    let alice_token = create_token(&db.url, "sip:alice@contoso.com", "user");
    let bob_token = create_token(&db.url, "sip:bob@contoso.com", "user");
    let server = TestServer::start(&db.url);
    let dana = server.client(&dana_token);
    let driver = Driver::start(chromedriver);

    // An administrator signs in.
    let admin = Browser::open(&driver, &server.base, &shots, "admin").await;
    admin.goto("/admin").await;
    assert!(
        admin.url().await.contains("/signin?next="),
        "a page asks for sign-in first"
    );
    admin.screenshot("01-signin").await;
    admin.fill("#token", "perch_not-a-token").await;
    admin.click("form button[type=submit]").await;
    admin.wait_for_text("not valid").await;
    admin.fill("#token", &admin_token).await;
    admin.click("form button[type=submit]").await;
    admin.wait_for_text("Compliance archive").await;
    assert!(
        admin.url().await.ends_with("/admin"),
        "back where the sign-in began"
    );
    admin.screenshot("02-overview").await;

    // Creates a category, with a principal checked as it is typed.
    admin.goto("/admin/new/categories").await;
    admin.fill("#f-name", "Engineering").await;
    admin
        .type_into("#f-allowedMembers", "domain:contoso.com\nnot a principal")
        .await;
    admin.wait_for_text("Line 2:").await;
    admin.screenshot("03-category-new").await;
    admin.fill("#f-allowedMembers", "domain:contoso.com").await;
    admin.click("button[value=save]").await;
    admin.wait_for_text("Created.").await;
    admin.screenshot("04-category").await;

    // Creates rooms: an open one with members, a secret one, an auditorium, a scratch room.
    for (name, privacy, room_type, members, presenters) in [
        (
            "general",
            "open",
            "normal",
            "sip:alice@contoso.com\nsip:bob@contoso.com",
            "",
        ),
        (
            "secret-plans",
            "secret",
            "normal",
            "sip:bob@contoso.com",
            "",
        ),
        (
            "town-hall",
            "open",
            "auditorium",
            "sip:alice@contoso.com",
            "sip:admin@contoso.com",
        ),
        ("scratch", "open", "normal", "sip:admin@contoso.com", ""),
    ] {
        admin.goto("/admin/new/rooms").await;
        admin.fill("#f-name", name).await;
        admin.fill("#f-category", "Engineering").await;
        admin.select("#f-privacy", privacy).await;
        admin.select("#f-type", room_type).await;
        if name != "general" {
            admin.fill("#f-members", members).await;
        }
        admin.fill("#f-presenters", presenters).await;
        admin.click("button[value=save]").await;
        admin.wait_for_text("Created.").await;
    }
    // Adds a member to a room on its page.
    admin.goto("/admin/rooms/general").await;
    admin
        .fill("#f-members", "sip:alice@contoso.com\nsip:bob@contoso.com")
        .await;
    admin.click("button[value=save]").await;
    admin.wait_for_text("Saved.").await;
    admin.screenshot("05-room").await;
    let general = dana.get("/v1/rooms/general").await.expect(200);
    assert_eq!(
        general.body["members"],
        json!(["sip:alice@contoso.com", "sip:bob@contoso.com"])
    );
    admin.goto("/admin/rooms?privacy=secret").await;
    let listed = admin.wait_for_text("secret-plans").await;
    assert!(
        !listed.contains("town-hall"),
        "the filter keeps only secret rooms: {listed}"
    );
    admin.screenshot("06-rooms").await;

    // Sets compliance.
    let archive = db.path().join("archive");
    admin.goto("/admin/compliance").await;
    admin.click("#f-enabled").await;
    admin
        .fill("#f-adapterOutputDirectory", &archive.display().to_string())
        .await;
    admin.click("form.object button[type=submit]").await;
    admin.wait_for_text("Saved.").await;
    admin.screenshot("07-compliance").await;
    let compliance = dana.get("/v1/compliance").await.expect(200);
    assert_eq!(compliance.body["enabled"], json!(true));

    // Clears a room, after a preview of how many messages go.
    let admin_api = server.client(&admin_token);
    for text in ["one", "two", "three"] {
        admin_api
            .post("/v1/rooms/scratch/messages", json!({"body": text}))
            .await
            .expect(201);
    }
    admin.goto("/admin/history/scratch").await;
    admin.fill("#clear-end", "2999-12-31").await;
    admin.click("button[value=preview-clear]").await;
    let preview = admin.text(&admin.find("#preview-count").await).await;
    assert_eq!(preview, "3", "the preview counts what the clearing removes");
    let still = admin_api
        .get("/v1/rooms/scratch/messages")
        .await
        .expect(200);
    assert_eq!(
        still.body["items"].as_array().map(Vec::len),
        Some(3),
        "a preview changes nothing"
    );
    admin.screenshot("08-history-preview").await;
    admin.click("button[value=clear]").await;
    let done = admin.text(&admin.find("#done-count").await).await;
    assert_eq!(done, "3");
    let cleared = admin_api
        .get("/v1/rooms/scratch/messages")
        .await
        .expect(200);
    assert_eq!(cleared.body["items"], json!([]));

    // The Git view reports a hand change against the manifests last applied, naming who.
    let manifests = manifests(&db.path());
    let (code, stdout, stderr) = perch(&[
        "apply",
        "--server",
        &server.base,
        "--token",
        &admin_token,
        "--yes",
        "--revision",
        "abc1234",
        manifests.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "apply failed: {stdout}\n{stderr}");
    admin.goto("/admin/git").await;
    admin
        .wait_for_text("The server matches the manifests last applied.")
        .await;
    assert!(
        admin.page_text().await.contains("abc1234"),
        "the revision is shown"
    );
    dana.patch(
        "/v1/rooms/ops-room",
        json!({"members": ["sip:carol@contoso.com", "sip:eve@contoso.com"]}),
    )
    .await
    .expect(200);
    admin.goto("/admin/git").await;
    let git = admin.wait_for_text("1 object(s) drifted").await;
    assert!(git.contains("Room \"ops-room\""), "{git}");
    assert!(
        git.contains("sip:dana@contoso.com"),
        "who changed it: {git}"
    );
    assert!(
        git.contains("Added on the server: sip:eve@contoso.com"),
        "{git}"
    );
    assert!(
        git.contains("- sip:eve@contoso.com"),
        "the restoring plan: {git}"
    );
    admin.screenshot("09-git").await;
    // A panel edit of a managed object warns that the next apply reverts it.
    admin.goto("/admin/rooms/ops-room").await;
    admin.wait_for_text("Managed by Git.").await;

    // A stale edit is refused, naming who changed the object.
    admin.goto("/admin/rooms/general").await;
    admin.fill("#f-description", "edited in the panel").await;
    dana.patch(
        "/v1/rooms/general",
        json!({"description": "edited by dana"}),
    )
    .await
    .expect(200);
    admin.click("button[value=save]").await;
    let stale = admin.text(&admin.find("#stale-by").await).await;
    assert!(stale.contains("sip:dana@contoso.com"), "{stale}");
    admin.screenshot("10-stale-edit").await;
    let kept = dana.get("/v1/rooms/general").await.expect(200);
    assert_eq!(
        kept.body["description"],
        json!("edited by dana"),
        "never silently overwritten"
    );

    // The remaining admin pages, for the screenshots.
    for (page, path, wanted) in [
        ("11-categories", "/admin/categories", "Engineering"),
        ("12-addins", "/admin/addins", "None yet."),
        ("13-groups", "/admin/groups", "None yet."),
        ("14-tokens", "/admin/tokens", "sip:alice@contoso.com"),
        ("15-data", "/admin/data", "Import"),
        ("16-plan-preview", "/admin/plan", "Nothing is applied"),
    ] {
        admin.goto(path).await;
        admin.wait_for_text(wanted).await;
        admin.screenshot(page).await;
    }
    admin
        .fill(
            "#manifests",
            "apiVersion: perch/v1\nkind: Addin\nname: Dash\nurl: https://dash.contoso.com\n",
        )
        .await;
    admin.click("#plan-form button[type=submit]").await;
    let plan = admin.text(&admin.find("#preview-plan").await).await;
    assert!(plan.contains("+ create Addin \"Dash\""), "{plan}");
    admin.screenshot("17-plan").await;

    // A user signs in and does not see the secret room.
    let alice = Browser::open(&driver, &server.base, &shots, "alice").await;
    alice.sign_in(&alice_token).await;
    let rooms = alice.wait_for_text("general").await;
    assert!(
        !rooms.contains("secret-plans"),
        "a secret room shows only to members: {rooms}"
    );
    assert!(!rooms.contains("Compliance"), "no admin pages for users");
    alice.screenshot("01-rooms").await;
    alice.goto("/chat/rooms/secret-plans").await;
    alice.wait_for_text("does not exist").await;

    // A second person has the room open; what the first posts arrives there live.
    // Bob uses the keyboard alone: the token field has the focus, Enter signs in.
    let bob = Browser::open(&driver, &server.base, &shots, "bob").await;
    bob.goto("/signin").await;
    bob.find("#token").await;
    assert_eq!(
        bob.focused_id().await,
        "token",
        "the sign-in page starts in its field"
    );
    bob.keyboard(&format!("{bob_token}\u{E007}")).await;
    bob.find("form.signout").await;
    bob.goto("/chat/rooms/general").await;
    bob.wait_for_text("Live.").await;
    alice.goto("/chat/rooms/general").await;
    alice
        .fill("#message-body", "hello from the browser <b>not bold</b>")
        .await;
    alice.click("#composer button[type=submit]").await;
    bob.wait_for_text("hello from the browser <b>not bold</b>")
        .await;
    assert!(
        bob.try_find("#messages b").await.is_none(),
        "a message's text is never markup"
    );
    bob.screenshot("01-room-live").await;
    // Bob answers with the keyboard; Alice sees it arrive.
    bob.tab_to("message-body").await;
    bob.keyboard("typed with the keyboard alone\u{E007}").await;
    alice.wait_for_text("typed with the keyboard alone").await;
    alice.screenshot("02-room").await;

    // On a phone-sized screen the room reads without sideways scrolling.
    alice
        .post("/window/rect", json!({"width": 390, "height": 844}))
        .await;
    let fits = alice
        .script("return document.documentElement.scrollWidth <= window.innerWidth;")
        .await;
    assert_eq!(fits, json!(true), "the room page fits a phone's width");
    alice.screenshot("02-room-phone").await;
    alice
        .post("/window/rect", json!({"width": 1280, "height": 1000}))
        .await;

    // A non-presenter cannot post in an auditorium, and is told why.
    alice.goto("/chat/rooms/town-hall").await;
    let refusal = alice.text(&alice.find("#cannot-post").await).await;
    assert!(refusal.contains("auditorium"), "{refusal}");
    assert!(alice.try_find("#composer").await.is_none());
    alice.screenshot("03-auditorium").await;

    // Search in a room.
    alice.goto("/chat/rooms/general?q=browser").await;
    alice.wait_for_text("hello from the browser").await;
    alice.screenshot("04-search").await;

    // Signing out ends the session on the server.
    alice.click("form.signout button").await;
    alice.find("#token").await;
    alice.goto("/chat").await;
    assert!(alice.url().await.contains("/signin"), "signed out");

    admin.quit().await;
    alice.quit().await;
    bob.quit().await;
    eprintln!("screenshots: {}", shots.display());
}
