//! The service in process over a temporary database (SQLite, or PostgreSQL with
//! `PERCH_TEST_BACKEND=postgres`): the rules and the error each breach is, without HTTP.

mod common;

use expect_test::expect;
use perch::api::ErrorCode;
use perch::domain::Kind;
use perch::service::{Caller, Object, Ownership, Precondition, Role, Service, ServiceError};
use perch::store::Store;
use serde_json::{Map, Value, json};

struct Fixture {
    service: Service,
    admin: Caller,
    db: common::TestDb,
}

impl Fixture {
    async fn new() -> Fixture {
        let db = common::TestDb::new();
        let service = Service::new(Store::open(&db.url).await.expect("store"));
        let admin = service
            .authenticate(&token(&service, "sip:admin@contoso.com", Role::Admin).await)
            .await
            .expect("authenticate")
            .expect("a caller");
        Fixture { service, admin, db }
    }

    async fn user(&self, user: &str) -> Caller {
        let token = token(&self.service, user, Role::User).await;
        self.service
            .authenticate(&token)
            .await
            .expect("authenticate")
            .expect("a caller")
    }

    /// A category (its fields as given), a room `r` open in it, and compliance on, archiving
    /// into the test's directory.
    async fn room_with_compliance(&self, category: Value) {
        let name = category["name"].clone();
        self.create(&self.admin, Kind::Category, category)
            .await
            .unwrap();
        self.create(
            &self.admin,
            Kind::Room,
            json!({"name": "r", "category": name, "privacy": "open"}),
        )
        .await
        .unwrap();
        let archive = self.db.path().join("archive");
        let configuration: perch::domain::ComplianceConfiguration = serde_json::from_value(json!({
            "enabled": true, "adapterOutputDirectory": archive.display().to_string(),
        }))
        .unwrap();
        self.service
            .set_compliance(
                &self.admin,
                configuration,
                Precondition::None,
                Ownership::Keep,
            )
            .await
            .unwrap();
    }

    async fn create(&self, caller: &Caller, kind: Kind, body: Value) -> Result<(), ServiceError> {
        let object = Object::from_json(kind, body).expect("a well-formed object");
        self.service
            .create(caller, object, Ownership::Keep)
            .await
            .map(drop)
    }
}

async fn token(service: &Service, user: &str, role: Role) -> String {
    service.create_token(user, role).await.expect("token")
}

/// The outcome of a call as one line: `ok`, or the code and the field at fault.
fn outcome<T>(result: Result<T, ServiceError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(error) => format!("{} {}", error.code(), error.field().unwrap_or("-")),
    }
}

#[tokio::test]
async fn rules_answer_with_their_codes() {
    let f = Fixture::new().await;
    let alice = f.user("sip:alice@contoso.com").await;
    let creator = f.user("sip:creator@contoso.com").await;
    let mut lines = Vec::new();
    let mut record = |what: &str, line: String| lines.push(format!("{what:<36} {line}"));

    record(
        "category by a user",
        outcome(
            f.create(&alice, Kind::Category, json!({"name": "Mine"}))
                .await,
        ),
    );
    record(
        "category by an admin",
        outcome(
            f.create(
                &f.admin,
                Kind::Category,
                json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"],
                       "creators": ["sip:creator@contoso.com"]}),
            )
            .await,
        ),
    );
    record(
        "room outside the scope",
        outcome(
            f.create(
                &f.admin,
                Kind::Room,
                json!({"name": "r", "category": "Eng", "members": ["sip:eve@fabrikam.com"]}),
            )
            .await,
        ),
    );
    record(
        "secret room by an admin",
        outcome(
            f.create(
                &f.admin,
                Kind::Room,
                json!({"name": "hidden", "category": "Eng", "privacy": "secret"}),
            )
            .await,
        ),
    );
    record(
        "a user reads the secret room",
        outcome(f.service.get(&alice, Kind::Room, "hidden").await),
    );
    record(
        "a creator takes its name",
        outcome(
            f.create(
                &creator,
                Kind::Room,
                json!({"name": "hidden", "category": "Eng"}),
            )
            .await,
        ),
    );
    record(
        "a creator makes a room",
        outcome(
            f.create(
                &creator,
                Kind::Room,
                json!({"name": "mine", "category": "Eng"}),
            )
            .await,
        ),
    );
    let managers = f
        .service
        .get(&creator, Kind::Room, "mine")
        .await
        .map(|room| serde_json::to_value(&room.spec).expect("json")["managers"].clone());
    record("its managers", format!("{managers:?}"));
    record(
        "a user patches a room it only sees",
        outcome(
            f.service
                .patch(
                    &alice,
                    Kind::Room,
                    "mine",
                    json!({"description": "mine now"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    Precondition::None,
                )
                .await,
        ),
    );
    record(
        "a stale version",
        outcome(
            f.service
                .patch(
                    &f.admin,
                    Kind::Room,
                    "mine",
                    Map::new(),
                    Precondition::Version(99),
                )
                .await,
        ),
    );
    let text = lines.join("\n") + "\n";
    expect![[r#"
        category by a user                   forbidden -
        category by an admin                 ok
        room outside the scope               outside_scope members
        secret room by an admin              ok
        a user reads the secret room         not_found name
        a creator takes its name             not_found name
        a creator makes a room               ok
        its managers                         Ok(Array [String("sip:creator@contoso.com")])
        a user patches a room it only sees   forbidden -
        a stale version                      version_mismatch If-Match
    "#]]
    .assert_eq(&text);
}

/// Two patches of one group at once, 20 rounds: both additions land every time.
#[tokio::test]
async fn concurrent_patches_in_process_lose_nothing() {
    let f = Fixture::new().await;
    f.create(&f.admin, Kind::Group, json!({"name": "g"}))
        .await
        .expect("group");
    for round in 0..20 {
        let add = |who: &str| {
            let change = json!({"members": {"add": [format!("sip:{who}{round}@contoso.com")]}});
            f.service.patch(
                &f.admin,
                Kind::Group,
                "g",
                change.as_object().cloned().unwrap_or_default(),
                Precondition::None,
            )
        };
        let (a, b) = tokio::join!(add("a"), add("b"));
        for result in [a, b] {
            if let Err(error) = result {
                panic!("round {round}: {error}");
            }
        }
        let group = f
            .service
            .get(&f.admin, Kind::Group, "g")
            .await
            .expect("group");
        let members = serde_json::to_value(&group.spec).expect("json")["members"].clone();
        for who in ["a", "b"] {
            let wanted = json!(format!("sip:{who}{round}@contoso.com"));
            assert!(
                members
                    .as_array()
                    .is_some_and(|list| list.contains(&wanted)),
                "round {round}: {wanted} lost from {members}"
            );
        }
    }
}

/// Retention never deletes what compliance has not archived: messages past their category's
/// retention stay in history until the archiver has written them, then go.
#[tokio::test]
async fn retention_waits_for_the_archiver() {
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    fixture
        .room_with_compliance(
            json!({"name": "Short", "allowedMembers": ["domain:contoso.com"], "retention": "P1D"}),
        )
        .await;
    let ana = fixture.user("sip:ana@contoso.com").await;
    fixture
        .service
        .post_message(&ana, "r", "captured, not yet archived", None)
        .await
        .unwrap();
    let in_two_days = time::OffsetDateTime::now_utc().unix_timestamp() + 2 * 86_400;

    let run = fixture
        .service
        .expire_messages_at(admin, in_two_days)
        .await
        .unwrap();
    assert_eq!(run.expired, 0, "expired before compliance archived it");

    fixture.service.archive_now(admin).await.unwrap();
    let run = fixture
        .service
        .expire_messages_at(admin, in_two_days)
        .await
        .unwrap();
    assert_eq!(run.expired, 1);
    // Users may not run retention.
    expect!["forbidden -"].assert_eq(&outcome(fixture.service.expire_messages(&ana).await));
}

/// A server upgraded from before the compliance log (schema 5) loses nothing compliance has not
/// archived: the messages after the archiver's checkpoint move into the log under their own
/// ids, and what is posted afterwards comes after them.
#[tokio::test]
async fn upgrading_to_the_compliance_log_keeps_what_was_not_archived() {
    let db = common::TestDb::new();
    let backend = if common::postgres_wanted() {
        "postgres"
    } else {
        "sqlite"
    };
    sqlx::any::install_default_drivers();
    let url = if backend == "sqlite" {
        format!("{}?mode=rwc", db.url)
    } else {
        db.url.clone()
    };
    let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/store/migrations")
        .join(backend);
    for (version, file) in [
        (1, "0001_objects.sql"),
        (2, "0002_messages.sql"),
        (3, "0003_archive.sql"),
        (4, "0004_room_changes.sql"),
        (5, "0005_generation.sql"),
    ] {
        let sql = std::fs::read_to_string(migrations.join(file)).unwrap();
        sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, '2026-01-01')",
        )
        .bind(version)
        .execute(&pool)
        .await
        .unwrap();
    }
    // A category, a room (id 7), three messages; the archiver has written the first.
    let at = "2026-01-01T00:00:00.000000Z";
    for (id, kind, name, category, body) in [
        (
            1_i64,
            "Category",
            "Eng",
            None,
            r#"{"name":"Eng","allowedMembers":["domain:contoso.com"]}"#,
        ),
        (
            7,
            "Room",
            "r",
            Some("Eng"),
            r#"{"name":"r","category":"Eng","privacy":"open"}"#,
        ),
    ] {
        sqlx::query(
            "INSERT INTO objects (id, kind, name, category, addin, body, version, managed, protected, created_at, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, NULL, $5, 1, 0, 0, $6, 'test', $6)",
        )
        .bind(id)
        .bind(kind)
        .bind(name)
        .bind(category)
        .bind(body)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    for id in 1..=3_i64 {
        sqlx::query(
            "INSERT INTO messages (id, room_id, author, body, posted_at) VALUES ($1, 7, 'sip:ana@contoso.com', $2, $3)",
        )
        .bind(id)
        .bind(format!("message {id}"))
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO archive_checkpoint (name, last_message_id) VALUES ('archiver', 1)")
        .execute(&pool)
        .await
        .unwrap();
    if backend == "postgres" {
        // Rows a server made itself came from the sequences; these were given ids by hand.
        for table in ["objects", "messages"] {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            ))
            .fetch_all(&pool)
            .await
            .unwrap();
        }
    }
    pool.close().await;

    let store = Store::open(&db.url).await.expect("the upgrade");
    let service = Service::new(store.clone());
    let carried: Vec<(i64, String, String)> = store
        .compliance_events_between(0, i64::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|event| (event.id, event.room_name, event.content))
        .collect();
    expect![[r#"[(2, "r", "message 2"), (3, "r", "message 3")]"#]]
        .assert_eq(&format!("{carried:?}"));

    // New events come after the carried ones.
    let admin = Caller::local_operator();
    let configuration: perch::domain::ComplianceConfiguration = serde_json::from_value(json!({
        "enabled": true, "adapterOutputDirectory": db.path().join("archive").display().to_string(),
    }))
    .unwrap();
    service
        .set_compliance(&admin, configuration, Precondition::None, Ownership::Keep)
        .await
        .unwrap();
    let token = token(&service, "sip:ana@contoso.com", Role::User).await;
    let ana = service.authenticate(&token).await.unwrap().unwrap();
    service
        .post_message(&ana, "r", "after the upgrade", None)
        .await
        .unwrap();
    let last = store.compliance_events_between(4, i64::MAX).await.unwrap();
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].content, "after the upgrade");
    // And the archiver writes exactly the three.
    let run = service.archive_now(&admin).await.unwrap();
    assert_eq!(run.archived, 3);
}

/// A server moved by `migrate` after its archiver caught up keeps archiving: new events come
/// after everything the carried checkpoint counts as archived.
#[tokio::test]
async fn after_a_migration_new_events_are_still_archived() {
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    fixture
        .room_with_compliance(json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"]}))
        .await;
    let ana = fixture.user("sip:ana@contoso.com").await;
    for text in ["one", "two"] {
        fixture
            .service
            .post_message(&ana, "r", text, None)
            .await
            .unwrap();
    }
    assert_eq!(
        fixture.service.archive_now(admin).await.unwrap().archived,
        2
    );

    let target_db = common::TestDb::new();
    let target = Service::new(Store::open(&target_db.url).await.expect("target store"));
    fixture.service.migrate_into(admin, &target).await.unwrap();
    let token = token(&target, "sip:ana@contoso.com", Role::User).await;
    let ana = target.authenticate(&token).await.unwrap().unwrap();
    target.post_message(&ana, "r", "three", None).await.unwrap();
    let run = target.archive_now(&Caller::local_operator()).await.unwrap();
    assert_eq!(
        run.archived, 1,
        "the message posted after the migration was archived"
    );
}

/// The node's hub reads the log once for every live stream; each stream judges a batch by its
/// own caller's access, and every stream that delivers a message sends the one JSON the hub
/// made of it.
#[tokio::test]
async fn the_hub_serialises_each_message_once_for_every_stream_that_may_read_it() {
    let fixture = Fixture::new().await;
    let ana = open_room_with_ana(&fixture).await;
    let bob = fixture.user("sip:bob@contoso.com").await;
    let outsider = fixture.user("sip:zed@fabrikam.com").await;
    // An administrator's filter that never judges: the hub hands it every batch.
    let (_watching, mut log) = watch_everything(&fixture);
    // The hub announces where it starts, before anything is posted.
    let start = next_batch(&mut log).await;
    let live_after = start.ends_at().0;
    assert_eq!(live_after, fixture.service.last_message_id().await.unwrap());
    let mut posted = Vec::new();
    for text in ["one", "two", "three"] {
        let (message, _) = fixture
            .service
            .post_message(&ana, "r", text, None)
            .await
            .unwrap();
        posted.push(message.id);
    }
    let mut batches = Vec::new();
    let mut through = live_after;
    while through < *posted.last().unwrap() {
        let batch = next_batch(&mut log).await;
        assert_eq!(batch.starts_after().0, through, "batches are contiguous");
        through = batch.ends_at().0;
        batches.push(batch);
    }

    let mut delivered = Vec::new();
    for caller in [&ana, &bob, &outsider] {
        let mut filter = fixture.service.event_filter(caller, live_after);
        let mut events = Vec::new();
        for batch in &batches {
            events.extend(
                fixture
                    .service
                    .events_in_batch(&mut filter, batch, live_after)
                    .await
                    .unwrap(),
            );
        }
        delivered.push(events);
    }
    let ids = |events: &[perch::service::BatchMessage<'_>]| -> Vec<i64> {
        events.iter().map(|message| message.id).collect()
    };
    assert_eq!(ids(&delivered[0]), posted, "the author's stream");
    assert_eq!(ids(&delivered[1]), posted, "a reader's stream");
    assert!(
        delivered[2].is_empty(),
        "a caller outside the scope hears nothing"
    );
    // A frame names the room change its stream's cursor stands at, as an event's id does.
    let frame_at = |change: i64| move |json: &str| bytes::Bytes::from(format!("{change} {json}"));
    for (for_ana, for_bob) in delivered[0].iter().zip(&delivered[1]) {
        assert!(
            std::ptr::eq(for_ana.json(), for_bob.json()),
            "one serialisation for every recipient"
        );
        let at_7 = for_ana.framed(7, frame_at(7));
        assert_eq!(at_7, format!("7 {}", for_ana.json()).as_bytes());
        assert_eq!(
            at_7.as_ptr(),
            for_bob.framed(7, frame_at(7)).as_ptr(),
            "one framing for every stream whose cursor stands at the same room change"
        );
        let at_8 = for_bob.framed(8, frame_at(8));
        assert_eq!(
            at_8,
            format!("8 {}", for_bob.json()).as_bytes(),
            "a stream elsewhere gets its own frame, never the one made for another cursor"
        );
    }
    let first: Value = serde_json::from_str(delivered[0][0].json()).unwrap();
    assert_eq!(first["room"], "r");
    assert_eq!(first["body"], "one");
}

/// The hub wakes a stream only for the batches that may concern it: a post in a room of one
/// member reaches that member's stream, and another user's stream hears only the stretch of
/// the log it passed over (unless the stretch passes the end of its finite mode); a post in an
/// open room reaches both.
#[tokio::test]
async fn the_hub_wakes_only_the_streams_a_batch_concerns() {
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    create_eng_for_contoso(&fixture).await;
    for room in [
        json!({"name": "ana-only", "category": "Eng", "privacy": "closed", "members": ["sip:ana@contoso.com"]}),
        json!({"name": "open", "category": "Eng", "privacy": "open"}),
    ] {
        fixture.create(admin, Kind::Room, room).await.unwrap();
    }
    let ana = fixture.user("sip:ana@contoso.com").await;
    let bob = fixture.user("sip:bob@contoso.com").await;
    let service = &fixture.service;
    let live_after = service.last_message_id().await.unwrap();
    // Bob's second stream is finite: it ends once past the next message, whatever it holds.
    let mut finite = service.event_filter(&bob, live_after);
    finite.ends_after(Some(live_after + 1));
    let mut filters = [
        service.event_filter(&ana, live_after),
        service.event_filter(&bob, live_after),
        finite,
    ];
    let mut logs = Vec::new();
    for filter in &mut filters {
        logs.push(service.subscribe_log(filter));
        // A stream's first read judges at the current generation, which the hub is told.
        service
            .events_after(filter, live_after, 10)
            .await
            .expect("a first read");
    }

    let [for_ana, for_bob, for_bob_until] = &logs[..] else {
        unreachable!("three streams")
    };
    // The hub announces where it starts reading before anything is posted.
    for log in &logs {
        tokio::time::timeout(std::time::Duration::from_secs(10), log.recv())
            .await
            .expect("the hub started");
    }
    let (secret, _) = service
        .post_message(&ana, "ana-only", "for ana", None)
        .await
        .unwrap();
    assert_eq!(heard_through(for_ana, secret.id).await, Heard::Handed);
    assert_eq!(
        heard_through(for_bob, secret.id).await,
        Heard::PassedOver,
        "a post bob may not read does not wake his stream"
    );
    assert_eq!(
        heard_through(for_bob_until, secret.id).await,
        Heard::Handed,
        "a finite stream is woken at its end, to end"
    );
    let (open, _) = service
        .post_message(&ana, "open", "for all", None)
        .await
        .unwrap();
    assert_eq!(heard_through(for_ana, open.id).await, Heard::Handed);
    assert_eq!(heard_through(for_bob, open.id).await, Heard::Handed);
}

/// A batch of a room whose lists alone name its readers looks at the streams of the users
/// named there, not at every stream of the node, and every other stream still hears the
/// stretch it was passed over; a post in an open room looks at every stream, and a stream
/// that ended is looked at no more.
#[tokio::test]
async fn a_post_in_a_room_of_one_looks_at_one_stream() {
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    create_ana_only(&fixture, "closed").await;
    fixture
        .create(
            admin,
            Kind::Room,
            json!({"name": "open", "category": "Eng", "privacy": "open"}),
        )
        .await
        .unwrap();
    // A room of two through a group: its lists name its readers too, through the directory.
    create_group_room(
        &fixture,
        "pair",
        &["sip:ana@contoso.com", "sip:user1@contoso.com"],
        "pair-room",
    )
    .await;
    let service = &fixture.service;
    let ana = fixture.user("sip:ana@contoso.com").await;
    // Every caller first, then every stream: each judges at the generation it opens at.
    let mut users = Vec::new();
    for index in 0..50 {
        users.push(fixture.user(&format!("sip:user{index}@contoso.com")).await);
    }
    let (mut ana_filter, for_ana) = listen_judged(&fixture, &ana).await;
    // Opened together, as `listen_judged` opens one: each hears the hub's next batch.
    let live_after = service.last_message_id().await.unwrap();
    let mut others = Vec::new();
    for user in &users {
        let mut filter = service.event_filter(user, live_after);
        let log = service.subscribe_log(&mut filter);
        service
            .events_after(&mut filter, live_after, 10)
            .await
            .expect("a first read");
        others.push((filter, log));
    }
    for (_, log) in &others {
        tokio::time::timeout(std::time::Duration::from_secs(10), log.recv())
            .await
            .expect("the hub went on");
    }
    let post = |room: &'static str, text: &'static str| {
        let ana = ana.clone();
        async move {
            service
                .post_message(&ana, room, text, None)
                .await
                .unwrap()
                .0
                .id
        }
    };
    // Streams looked at for one post since `before`, less `per_tick` for each other
    // hand-out in between: a tick of the hub's, which looks only at the streams it must.
    let looks = || (service.hub_streams_looked_at(), service.hub_hand_outs());
    let looked_for_post = |before: (u64, u64), per_tick: u64| {
        let (looked, hand_outs) = looks();
        looked - before.0 - per_tick * (hand_outs - before.1 - 1)
    };
    // The hub looks at every stream once after it published its judgment.
    let settling = post("ana-only", "settling").await;
    assert_eq!(heard_through(&for_ana, settling).await, Heard::Handed);
    for (_, log) in &others {
        assert_eq!(heard_through(log, settling).await, Heard::PassedOver);
    }

    let before = looks();
    let secret = post("ana-only", "for ana").await;
    assert_eq!(heard_through(&for_ana, secret).await, Heard::Handed);
    assert_eq!(
        looked_for_post(before, 0),
        1,
        "a post in a room of one looks at its one reader's stream, of 51"
    );
    for (_, log) in &others {
        assert_eq!(
            heard_through(log, secret).await,
            Heard::PassedOver,
            "a stream passed over without a look hears the stretch"
        );
    }

    let before = looks();
    let pair = post("pair-room", "for the pair").await;
    assert_eq!(heard_through(&for_ana, pair).await, Heard::Handed);
    assert_eq!(
        looked_for_post(before, 0),
        2,
        "a post in a room of a group of two looks at the group's two streams, of 51"
    );
    for (index, (_, log)) in others.iter().enumerate() {
        let heard = heard_through(log, pair).await;
        let expected = if index == 1 {
            Heard::Handed
        } else {
            Heard::PassedOver
        };
        assert_eq!(heard, expected, "user{index}");
    }

    let before = looks();
    let open = post("open", "for all").await;
    assert_eq!(heard_through(&for_ana, open).await, Heard::Handed);
    assert_eq!(looked_for_post(before, 0), 51);
    for (_, log) in &others {
        assert_eq!(heard_through(log, open).await, Heard::Handed);
    }

    // Forty streams end: the next post in the open room looks at the eleven left.
    others.truncate(10);
    let before = looks();
    let after_ending = post("open", "for those left").await;
    assert_eq!(heard_through(&for_ana, after_ending).await, Heard::Handed);
    assert_eq!(looked_for_post(before, 0), 11);
    for (_, log) in &others {
        assert_eq!(heard_through(log, after_ending).await, Heard::Handed);
    }

    // Access changes (user0 joins ana's room): the first batch at the new generation looks
    // at every stream and hands it to each, and the hub goes on looking at a stream until
    // it judged again; then a post in the room looks at its two readers' streams.
    patch_room(
        service,
        admin,
        "ana-only",
        json!({"members": ["sip:ana@contoso.com", "sip:user0@contoso.com"]}),
    )
    .await;
    // The room's change is handed to every stream (here seen by ana's).
    loop {
        let heard = tokio::time::timeout(std::time::Duration::from_secs(10), for_ana.recv())
            .await
            .expect("the hub went on");
        if let perch::service::Heard::Batch(batch) = heard
            && batch.has_changes_after(0)
        {
            break;
        }
    }
    // The next post continues at the new generation, which no stream judged at yet.
    let before = looks();
    let changed = post("ana-only", "user0 is in").await;
    assert_eq!(heard_through(&for_ana, changed).await, Heard::Handed);
    assert_eq!(looked_for_post(before, 11), 11);
    // Each stream judges again as it delivers, but the second, which is not run.
    let mut delivered_to = Vec::new();
    for (index, (filter, log)) in others.iter_mut().enumerate() {
        if index == 1 {
            continue;
        }
        let batch = next_batch_through(log, changed).await;
        let delivered = service
            .events_in_batch(filter, &batch, after_ending)
            .await
            .expect("judged");
        if delivered.iter().any(|message| message.id == changed) {
            delivered_to.push(index);
        }
    }
    assert_eq!(delivered_to, [0], "user0 alone reads the room");
    service
        .events_after(&mut ana_filter, after_ending, 10)
        .await
        .expect("ana's stream judged again");
    // The hub looks once at each stream that judged again, then only at the room's readers'
    // and at the one stream that has not judged at the new generation: that one is handed
    // every batch, to look itself.
    let published = post("ana-only", "judged again").await;
    assert_eq!(heard_through(&for_ana, published).await, Heard::Handed);
    let before = looks();
    let settled = post("ana-only", "settled").await;
    assert_eq!(heard_through(&for_ana, settled).await, Heard::Handed);
    assert_eq!(looked_for_post(before, 1), 3);
    assert_eq!(heard_through(&others[0].1, settled).await, Heard::Handed);
    assert_eq!(heard_through(&others[1].1, settled).await, Heard::Handed);
    assert_eq!(
        heard_through(&others[2].1, settled).await,
        Heard::PassedOver
    );
}

/// The batch `log` is handed that holds message `id`, past what it heard before.
async fn next_batch_through(
    log: &perch::service::LogListener,
    id: i64,
) -> std::sync::Arc<perch::service::LogBatch> {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), log.recv())
            .await
            .expect("the hub went on")
        {
            perch::service::Heard::Batch(batch) if batch.ends_at().0 >= id => return batch,
            perch::service::Heard::Lagged => panic!("a stream of a few batches lagged"),
            perch::service::Heard::Draining => panic!("the node drained"),
            _ => {}
        }
    }
}

/// The hub remembers, for each stream, whether its caller reads the room it last judged; once
/// access changes (the generation moves), that answer is no longer used: bob, judged unable to
/// read a room, is added to it and is woken for every message posted there from then on.
#[tokio::test]
async fn the_hub_judges_a_room_again_once_access_changed() {
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    create_ana_only(&fixture, "closed").await;
    let ana = fixture.user("sip:ana@contoso.com").await;
    let bob = fixture.user("sip:bob@contoso.com").await;
    let service = &fixture.service;
    let (mut filter, log) = listen_judged(&fixture, &bob).await;
    let post = |text: &'static str| {
        let ana = ana.clone();
        async move {
            service
                .post_message(&ana, "ana-only", text, None)
                .await
                .unwrap()
                .0
                .id
        }
    };
    // An administrator's stream is handed every batch: once it heard a post, the hub has
    // judged bob's stream for it too (a stream passed over is not woken to be told).
    let (_watching, everything) = watch_everything(&fixture);
    let before = post("before bob").await;
    assert_eq!(heard_through(&everything, before).await, Heard::Handed);
    assert_eq!(heard_through(&log, before).await, Heard::PassedOver);
    patch_room(
        service,
        admin,
        "ana-only",
        json!({"members": ["sip:ana@contoso.com", "sip:bob@contoso.com"]}),
    )
    .await;
    // The first post after the change reaches bob's stream, which judges it at the new
    // generation (and tells the hub so).
    let first = post("bob is in").await;
    let reached = async {
        loop {
            if let perch::service::Heard::Batch(batch) = log.recv().await {
                let delivered = service
                    .events_in_batch(&mut filter, &batch, before)
                    .await
                    .unwrap();
                if delivered.iter().any(|message| message.id == first) {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), reached)
        .await
        .expect("the first post after the change reached bob's stream");
    let second = post("and stays in").await;
    assert_eq!(heard_through(&everything, second).await, Heard::Handed);
    assert_eq!(
        heard_through(&log, second).await,
        Heard::Handed,
        "the hub judged the room again at the new generation"
    );
}

/// A post is judged on the room inputs the node's streams share (its room's groups not read
/// and decoded again) only when they were loaded at the generation its transaction reads or
/// later: after a member leaves the room's group, inputs loaded before would let him post
/// (fails with `StreamRooms::loaded` ignoring the generation), and after a room change they
/// would judge by the old room's lists.
#[tokio::test]
async fn a_post_is_judged_on_shared_room_inputs_only_at_their_generation() {
    let fixture = Fixture::new().await;
    let (admin, service) = (&fixture.admin, &fixture.service);
    create_eng_for_contoso(&fixture).await;
    let crew = |members: &[&str]| json!({"name": "crew", "members": members});
    create_group_room(
        &fixture,
        "crew",
        &["sip:ana@contoso.com", "sip:bob@contoso.com"],
        "crewed",
    )
    .await;
    let ana = fixture.user("sip:ana@contoso.com").await;
    let bob = fixture.user("sip:bob@contoso.com").await;
    let cy = fixture.user("sip:cy@contoso.com").await;
    let (_watching, everything) = watch_everything(&fixture);
    let post = |caller: &Caller| {
        let caller = caller.clone();
        async move { service.post_message(&caller, "crewed", "hello", None).await }
    };
    // Shared inputs are those the hub loaded for a batch it handed out: once it handed a post,
    // the next ones are judged on them.
    let handed = |id: i64| heard_through(&everything, id);
    let judged_on_shared = || service.posts_judged_on_shared_inputs();
    let first = post(&ana).await.unwrap().0.id;
    assert_eq!(handed(first).await, Heard::Handed);
    let before = judged_on_shared();
    let second = post(&bob).await.unwrap().0.id;
    assert_eq!(
        judged_on_shared(),
        before + 1,
        "bob's post judged on the hub's inputs"
    );
    assert_eq!(handed(second).await, Heard::Handed);

    // Bob leaves the group: the generation moves, and the inputs the hub holds are older.
    let patch = crew(&["sip:ana@contoso.com"]).as_object().unwrap().clone();
    service
        .patch(admin, Kind::Group, "crew", patch, Precondition::None)
        .await
        .unwrap();
    let before = judged_on_shared();
    assert_eq!(outcome(post(&bob).await), "forbidden -");
    assert_eq!(
        judged_on_shared(),
        before,
        "judged on the group as it is now"
    );
    let third = post(&ana).await.unwrap().0.id;
    assert_eq!(handed(third).await, Heard::Handed);
    assert_eq!(outcome(post(&bob).await), "forbidden -");
    assert_eq!(
        judged_on_shared(),
        before + 1,
        "judged on the hub's new inputs"
    );

    // A room change moves the generation too: cy, named in the room itself, posts at once.
    patch_room(
        service,
        admin,
        "crewed",
        json!({"members": ["group:crew", "sip:cy@contoso.com"]}),
    )
    .await;
    assert_eq!(outcome(post(&cy).await), "ok");
}

/// An administrator reads every room, named in it or not: the hub's shortcut for rooms whose
/// lists alone name their readers never passes over an administrator's stream, even one whose
/// token names a user principal (`sip:admin@contoso.com`, in no room's list here).
#[tokio::test]
async fn an_administrators_stream_is_handed_rooms_it_is_not_named_in() {
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    create_ana_only(&fixture, "secret").await;
    let ana = fixture.user("sip:ana@contoso.com").await;
    let service = &fixture.service;
    // Judged at the current generation, so that only the room's judgment decides.
    let (_filter, log) = listen_judged(&fixture, admin).await;
    let (_watching, everything) = watch_everything(&fixture);
    let (message, _) = service
        .post_message(&ana, "ana-only", "for ana and the administrators", None)
        .await
        .unwrap();
    assert_eq!(heard_through(&everything, message.id).await, Heard::Handed);
    assert_eq!(
        heard_through(&log, message.id).await,
        Heard::Handed,
        "an administrator's stream is handed a room it is not named in"
    );
}

/// The first batch a stream hears is handed over even when it holds nothing for it: the hub
/// may start reading after messages the stream has not read yet, and only a handed batch
/// shows the stream that it is behind (it then reads the gap from the database).
#[tokio::test]
async fn the_first_batch_a_stream_hears_wakes_it() {
    let fixture = Fixture::new().await;
    let service = &fixture.service;
    let bob = fixture.user("sip:bob@contoso.com").await;
    let live_after = service.last_message_id().await.unwrap();
    let mut filter = service.event_filter(&bob, live_after);
    // Judged before it listens, as a stream whose first read came before the hub started.
    service
        .events_after(&mut filter, live_after, 10)
        .await
        .expect("a first read");
    let log = service.subscribe_log(&mut filter);
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), log.recv())
        .await
        .expect("the hub started");
    assert!(
        matches!(first, perch::service::Heard::Batch(_)),
        "heard {first:?}"
    );
}

/// The node's poster hands what it commits to the hub, which then need not read it back; a
/// message committed beside it (another process on the same SQLite file, another node) is
/// between the hub's cursor and the handed group, and the hub reads it from the database
/// rather than hand the group on and skip it.
#[tokio::test]
async fn the_hub_never_skips_a_message_committed_beside_the_poster() {
    let fixture = Fixture::new().await;
    let ana = open_room_with_ana(&fixture).await;
    let (_watching, mut log) = watch_everything(&fixture);
    let live_after = next_batch(&mut log).await.ends_at().0;
    // Another writer of the same database, whose commits this node is not told of.
    let beside = Service::new(Store::open(&fixture.db.url).await.expect("a second store"));
    let mut posted = Vec::new();
    for (service, text) in [
        (&fixture.service, "one"),
        (&beside, "two, beside"),
        (&fixture.service, "three"),
    ] {
        let (message, _) = service.post_message(&ana, "r", text, None).await.unwrap();
        posted.push(message.id);
    }
    let mut filter = fixture.service.event_filter(&ana, live_after);
    let mut delivered = Vec::new();
    let mut through = live_after;
    while through < *posted.last().unwrap() {
        let batch = next_batch(&mut log).await;
        assert_eq!(batch.starts_after().0, through, "batches are contiguous");
        through = batch.ends_at().0;
        let events = fixture
            .service
            .events_in_batch(&mut filter, &batch, live_after)
            .await
            .unwrap();
        delivered.extend(events.into_iter().map(|message| message.id));
    }
    assert_eq!(delivered, posted, "every message, in commit order, once");
}

/// A post by a token this node remembers skips the token's read, and the poster confirms the
/// token in the transaction that stores the post: revoked since, by another process on the
/// same database or on this node, the token posts nothing more (401). A change of anything
/// else meanwhile makes the poster read the token again, and the post goes in. With a stream
/// listening, as here, the poster's transaction reads the generation on SQLite and reads a
/// token again only when it moved; without one, and on PostgreSQL, it always reads it.
#[tokio::test]
async fn a_remembered_token_revoked_since_posts_nothing() {
    let fixture = Fixture::new().await;
    open_room_with_ana(&fixture).await;
    let (_watching, _log) = watch_everything(&fixture);
    let service = &fixture.service;
    let beside = Service::new(Store::open(&fixture.db.url).await.expect("a second store"));
    for (round, revoker) in [&beside, service].into_iter().enumerate() {
        let token = service
            .create_token("sip:ana@contoso.com", Role::User)
            .await
            .unwrap();
        let read = service.authenticate_to_post(&token).await.unwrap().unwrap();
        assert!(!read.remembered(), "the first use reads the token");
        service
            .post_message_as(&read, "r", "read", None)
            .await
            .unwrap();
        let remembered = service.authenticate_to_post(&token).await.unwrap().unwrap();
        assert!(remembered.remembered(), "the second use remembers it");
        service
            .post_message_as(&remembered, "r", "remembered", None)
            .await
            .unwrap();
        // Something else changes: the generation moves, the token is read again, and holds.
        let description = format!("moved {round}");
        patch_room(
            &beside,
            &fixture.admin,
            "r",
            json!({"description": description}),
        )
        .await;
        service
            .post_message_as(&remembered, "r", "after another change", None)
            .await
            .unwrap();

        revoker
            .revoke_token(&Caller::local_operator(), &token)
            .await
            .unwrap()
            .expect("revoked");
        let last = service.last_message_id().await.unwrap();
        let refused = service
            .post_message_as(&remembered, "r", "after the revocation", None)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Unauthorized, "{refused}");
        assert_eq!(
            service.last_message_id().await.unwrap(),
            last,
            "nothing stored"
        );
        assert!(
            service
                .authenticate_to_post(&token)
                .await
                .unwrap()
                .is_none(),
            "the revoked token is forgotten, and read as revoked"
        );
    }
}

/// A restore brings back the backup's generation, which may be older than the one the
/// database's nodes have seen (an emptied database restored into); the generation never goes
/// back, or a node could take a remembered token at a generation it saw before.
#[tokio::test]
async fn a_restore_never_takes_the_generation_back() {
    let source = Fixture::new().await;
    let operator = Caller::local_operator();
    let mut backup = Vec::new();
    source
        .service
        .backup(&operator, &mut backup, &mut |_| {})
        .await
        .unwrap();
    let empty = common::TestDb::new();
    let restored_into = Service::new(Store::open(&empty.url).await.expect("an empty store"));
    let store = restored_into.store();
    let seen = store.generation().await.unwrap() + 100;
    // The database's nodes saw generation `seen`, and then it was emptied.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&empty.url)
        .await
        .expect("the database");
    sqlx::query("UPDATE generation SET value = $1 WHERE id = 1")
        .bind(seen)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    restored_into
        .restore(&operator, &mut backup.as_slice(), &mut |_| {})
        .await
        .unwrap();
    let after = store.generation().await.unwrap();
    assert!(
        after > seen,
        "generation {after} after a restore, {seen} seen before"
    );
}

/// A text PostgreSQL cannot store (one holding a NUL) is refused by the rule of its field (a
/// description, an add-in's URL), with the field, on both backends; anywhere no rule covers
/// (a name looked up) it is the request's fault, never an internal error.
#[tokio::test]
async fn a_nul_in_a_text_is_the_requests_fault() {
    let fixture = Fixture::new().await;
    create_eng_for_contoso(&fixture).await;
    let admin = &fixture.admin;
    let room = json!({"name": "r", "category": "Eng", "privacy": "open", "description": "a\u{0}b"});
    let refused = fixture.create(admin, Kind::Room, room).await.unwrap_err();
    assert_eq!(
        (refused.code(), refused.field()),
        (ErrorCode::InvalidField, Some("description")),
        "{refused}"
    );
    let add_in = json!({"name": "a", "url": "https://a.example/\u{0}"});
    let refused = fixture
        .create(admin, Kind::Addin, add_in)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::InvalidUrl, "{refused}");
    let looked_up = fixture
        .service
        .get(admin, Kind::Room, "a\u{0}b")
        .await
        .unwrap_err();
    assert!(
        matches!(
            looked_up.code(),
            ErrorCode::NotFound | ErrorCode::InvalidField
        ),
        "{looked_up:?}"
    );
}

/// A room change committed beside the poster, between two of its groups, reaches streams no
/// later than the group after it: the handed group does not continue the hub's cursor in the
/// room-change log, so the hub reads the database first.
#[tokio::test]
async fn the_hub_never_hands_a_post_on_ahead_of_a_room_change_committed_before_it() {
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    let ana = open_room_with_ana(&fixture).await;
    let (_watching, mut log) = watch_everything(&fixture);
    let start = next_batch(&mut log).await.ends_at();
    let service = &fixture.service;
    service.post_message(&ana, "r", "one", None).await.unwrap();
    let beside = Service::new(Store::open(&fixture.db.url).await.expect("a second store"));
    patch_room(
        &beside,
        admin,
        "r",
        json!({"description": "changed beside"}),
    )
    .await;
    let change = beside.last_room_change_id().await.unwrap();
    assert!(change > start.1, "the patch recorded a room change");
    let (two, _) = service.post_message(&ana, "r", "two", None).await.unwrap();
    let mut through = start;
    while through.0 < two.id {
        let batch = next_batch(&mut log).await;
        assert_eq!(batch.starts_after(), through, "batches are contiguous");
        through = batch.ends_at();
    }
    assert!(
        through.1 >= change,
        "the batch with `two` ends at room change {}, before {change}, committed ahead of it",
        through.1
    );
}

/// The hub's one read of the log ([`Store::log_after`]): the messages after a cursor with
/// their rooms' names, bounded and in order; room changes only past their own cursor; and
/// the generation, never older than the changes it holds. And its read of a room it judges
/// ([`Store::room_and_category`]): the room with its category.
#[tokio::test]
async fn the_hubs_reads_of_the_log_and_of_a_room() {
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    let ana = open_room_with_ana(&fixture).await;
    create_open_rooms_in_eng(&fixture, &["other", "gone"]).await;
    let store = fixture.service.store();
    let (messages_start, changes_start) = (
        store.last_message_id().await.unwrap(),
        store.last_room_change_id().await.unwrap(),
    );
    let empty = store
        .log_after(messages_start, changes_start, 10)
        .await
        .unwrap();
    assert!(empty.messages.is_empty() && empty.changes.is_empty());
    assert_eq!(empty.generation, store.generation().await.unwrap());

    let service = &fixture.service;
    for (room, body) in [("r", "one"), ("other", "two"), ("r", "three")] {
        service.post_message(&ana, room, body, None).await.unwrap();
    }
    service
        .remove(admin, Kind::Room, "gone", Precondition::None, false)
        .await
        .unwrap();
    patch_room(service, admin, "r", json!({"description": "changed"})).await;
    let read = store
        .log_after(messages_start, changes_start, 2)
        .await
        .unwrap();
    let summary = |read: &perch::store::LogRead| {
        let messages: Vec<String> = read
            .messages
            .iter()
            .map(|(row, room)| format!("{} in {room:?}", row.body))
            .collect();
        let changes: Vec<String> = read
            .changes
            .iter()
            .map(|change| format!("{} {:?}", change.room_name, change.change))
            .collect();
        format!("messages: {messages:?}\nchanges: {changes:?}")
    };
    expect![[r#"
        messages: ["one in Some(\"r\")", "two in Some(\"other\")"]
        changes: ["gone Removed", "r Changed"]"#]]
    .assert_eq(&summary(&read));
    assert_eq!(
        read.generation,
        store.generation().await.unwrap(),
        "read after the changes it holds"
    );
    let rest = store
        .log_after(
            read.messages.last().unwrap().0.id,
            read.changes.last().unwrap().id,
            2,
        )
        .await
        .unwrap();
    expect![[r#"
        messages: ["three in Some(\"r\")"]
        changes: []"#]]
    .assert_eq(&summary(&rest));

    // What streams judge a room by, read with it: the room and its category; nothing for an
    // id that is no room.
    let room_id = rest.messages[0].0.room_id;
    let names = |(room, category): (
        Option<perch::store::ObjectRow>,
        Option<perch::store::ObjectRow>,
    )| (room.map(|row| row.name), category.map(|row| row.name));
    assert_eq!(
        names(store.room_and_category(room_id).await.unwrap()),
        (Some("r".to_owned()), Some("Eng".to_owned()))
    );
    let category_id = store
        .get(Kind::Category, "Eng")
        .await
        .unwrap()
        .expect("the category")
        .id;
    for no_room in [category_id, i64::MAX] {
        assert_eq!(
            names(store.room_and_category(no_room).await.unwrap()),
            (None, None)
        );
    }
}

/// A handed group is judged at the generation it committed at: a member removed beside the
/// poster (another process) before a post does not receive it.
#[tokio::test]
async fn a_handed_group_is_judged_at_the_generation_it_committed_at() {
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    create_eng_for_contoso(&fixture).await;
    fixture
        .create(
            admin,
            Kind::Room,
            json!({"name": "pair", "category": "Eng", "privacy": "closed",
                   "members": ["sip:ana@contoso.com", "sip:bob@contoso.com"]}),
        )
        .await
        .unwrap();
    let ana = fixture.user("sip:ana@contoso.com").await;
    let bob = fixture.user("sip:bob@contoso.com").await;
    let service = &fixture.service;
    let mut watching = service.event_filter(&perch::service::Caller::local_operator(), 0);
    let mut log = service.subscribe_log(&mut watching);
    let live_after = next_batch(&mut log).await.ends_at().0;
    // Bob's stream judged the room while he was a member.
    let mut for_bob = service.event_filter(&bob, live_after);
    let (first, _) = service
        .post_message(&ana, "pair", "bob is here", None)
        .await
        .unwrap();
    let (seen, _) = service
        .events_after(&mut for_bob, live_after, 10)
        .await
        .unwrap();
    assert_eq!(seen.len(), 1, "bob reads the room while a member");
    let beside = Service::new(Store::open(&fixture.db.url).await.expect("a second store"));
    patch_room(
        &beside,
        admin,
        "pair",
        json!({"members": {"remove": ["sip:bob@contoso.com"]}}),
    )
    .await;
    let (after, _) = service
        .post_message(&ana, "pair", "bob left", None)
        .await
        .unwrap();
    let mut through = live_after;
    let mut delivered = Vec::new();
    while through < after.id {
        let batch = next_batch(&mut log).await;
        through = batch.ends_at().0;
        delivered.extend(
            service
                .events_in_batch(&mut for_bob, &batch, first.id)
                .await
                .unwrap()
                .into_iter()
                .map(|message| message.id),
        );
    }
    assert!(delivered.is_empty(), "bob, removed, received {delivered:?}");
}

/// On PostgreSQL every commit that live streams care about is announced once on
/// `perch_changes` (some in their own `RETURNING`, see `store::ANNOUNCE`), and a transaction
/// that wrote nothing of the kind is not. Counted up to a sentinel sent after them all:
/// notifications arrive in commit order.
#[tokio::test]
async fn every_commit_streams_care_about_is_announced_once() {
    if !common::postgres_wanted() {
        return;
    }
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    let ana = open_room_with_ana(&fixture).await;
    let service = &fixture.service;
    let mut listener = sqlx::postgres::PgListener::connect(&fixture.db.url)
        .await
        .expect("a listener");
    listener.listen("perch_changes").await.expect("listening");

    // Announced: a group of posts, a keyed post, a room's change (access and a room change in
    // one transaction), a token.
    service
        .post_message(&ana, "r", "plain", None)
        .await
        .unwrap();
    service
        .post_message(&ana, "r", "keyed", Some("key-1"))
        .await
        .unwrap();
    patch_room(service, admin, "r", json!({"description": "changed"})).await;
    service
        .create_token("sip:bob@contoso.com", Role::User)
        .await
        .unwrap();
    // Not announced: a post the rules refuse, and a keyed post that finds the one stored.
    assert!(
        service
            .post_message(&ana, "nowhere", "lost", None)
            .await
            .is_err()
    );
    service
        .post_message(&ana, "r", "keyed", Some("key-1"))
        .await
        .unwrap();

    let mut sender = <sqlx::PgConnection as sqlx::Connection>::connect(&fixture.db.url)
        .await
        .unwrap();
    sqlx::query("SELECT pg_notify('perch_changes', 'sentinel')")
        .execute(&mut sender)
        .await
        .unwrap();
    let mut announced = 0;
    loop {
        let notification =
            tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
                .await
                .expect("the sentinel arrives")
                .expect("a notification");
        if notification.payload() == "sentinel" {
            break;
        }
        announced += 1;
    }
    assert_eq!(announced, 4, "one notification per announced commit");
}

/// Changes room `room` by a JSON merge, as `caller`, through `service`.
async fn patch_room(service: &Service, caller: &Caller, room: &str, patch: Value) {
    let patch = patch.as_object().expect("a JSON object").clone();
    service
        .patch(caller, Kind::Room, room, patch, Precondition::None)
        .await
        .expect("the room changed");
}

/// A group of these members, and a closed room in `Eng` whose members are that group.
async fn create_group_room(fixture: &Fixture, group: &str, members: &[&str], room: &str) {
    fixture
        .create(
            &fixture.admin,
            Kind::Group,
            json!({"name": group, "members": members}),
        )
        .await
        .unwrap();
    fixture
        .create(
            &fixture.admin,
            Kind::Room,
            json!({"name": room, "category": "Eng", "privacy": "closed", "members": [format!("group:{group}")]}),
        )
        .await
        .unwrap();
}

/// Open rooms of these names in `Eng`, created by the administrator.
async fn create_open_rooms_in_eng(fixture: &Fixture, rooms: &[&str]) {
    for room in rooms {
        fixture
            .create(
                &fixture.admin,
                Kind::Room,
                json!({"name": room, "category": "Eng", "privacy": "open"}),
            )
            .await
            .unwrap();
    }
}

/// `Eng` for contoso.com, an open room `r` in it, and ana, who may post there.
async fn open_room_with_ana(fixture: &Fixture) -> Caller {
    create_eng_for_contoso(fixture).await;
    fixture
        .create(
            &fixture.admin,
            Kind::Room,
            json!({"name": "r", "category": "Eng", "privacy": "open"}),
        )
        .await
        .unwrap();
    fixture.user("sip:ana@contoso.com").await
}

/// Draining reaches every live stream through the hub: those listening when it begins, woken
/// from their wait, and those that subscribe afterwards, at once.
#[tokio::test]
async fn draining_reaches_every_stream_through_the_hub() {
    let fixture = Fixture::new().await;
    open_room_with_ana(&fixture).await;
    let (_watching, before) = watch_everything(&fixture);
    assert!(!before.is_draining());
    let waiting =
        tokio::spawn(async move { matches!(before.recv().await, perch::service::Heard::Draining) });
    // The test's runtime has one thread: yielding lets the spawned stream wait (its waker
    // registered) before the drain begins, so that only a wake can end its wait.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "the stream waits before the drain");
    fixture.service.begin_drain();
    let within = std::time::Duration::from_secs(10);
    assert!(
        tokio::time::timeout(within, waiting)
            .await
            .expect("the waiting stream was woken")
            .unwrap(),
        "a listening stream hears Draining"
    );
    let (_after, after) = watch_everything(&fixture);
    assert!(
        after.is_draining(),
        "a stream subscribing afterwards drains"
    );
    let heard = tokio::time::timeout(within, after.recv()).await;
    assert!(matches!(heard, Ok(perch::service::Heard::Draining)));
    tokio::time::timeout(within, after.drained())
        .await
        .expect("drained() completes once draining began");
}

/// `Eng` for contoso.com and a room `ana-only` in it of this privacy, listing ana alone.
async fn create_ana_only(fixture: &Fixture, privacy: &str) {
    create_eng_for_contoso(fixture).await;
    fixture
        .create(
            &fixture.admin,
            Kind::Room,
            json!({"name": "ana-only", "category": "Eng", "privacy": privacy, "members": ["sip:ana@contoso.com"]}),
        )
        .await
        .unwrap();
}

/// A live stream of `caller` from now on, at the hub, as a stream's first read leaves it:
/// judged at the current generation (which the hub is told), past the hub's first batch.
async fn listen_judged(
    fixture: &Fixture,
    caller: &Caller,
) -> (perch::service::EventFilter, perch::service::LogListener) {
    let service = &fixture.service;
    let live_after = service.last_message_id().await.unwrap();
    let mut filter = service.event_filter(caller, live_after);
    let log = service.subscribe_log(&mut filter);
    service
        .events_after(&mut filter, live_after, 10)
        .await
        .expect("a first read");
    tokio::time::timeout(std::time::Duration::from_secs(10), log.recv())
        .await
        .expect("the hub started");
    (filter, log)
}

/// A stream's place at the hub that is handed every batch (an administrator's, never
/// judged), with the filter it judges by, kept alive while it listens.
fn watch_everything(
    fixture: &Fixture,
) -> (perch::service::EventFilter, perch::service::LogListener) {
    let mut watching = fixture
        .service
        .event_filter(&perch::service::Caller::local_operator(), 0);
    let log = fixture.service.subscribe_log(&mut watching);
    (watching, log)
}

/// A category `Eng` whose scope is every user of contoso.com.
async fn create_eng_for_contoso(fixture: &Fixture) {
    fixture
        .create(
            &fixture.admin,
            Kind::Category,
            json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await
        .unwrap();
}

/// How a stream heard of a message.
#[derive(Debug, PartialEq)]
enum Heard {
    /// In a batch handed to it.
    Handed,
    /// In a stretch of the log it was told it passed over.
    PassedOver,
}

/// Listens until the stream has heard of message `id`, and says how.
async fn heard_through(log: &perch::service::LogListener, id: i64) -> Heard {
    loop {
        let heard = tokio::time::timeout(std::time::Duration::from_secs(10), log.recv())
            .await
            .expect("the hub went on");
        let (after, through, how) = match heard {
            perch::service::Heard::Batch(batch) => {
                (batch.starts_after().0, batch.ends_at().0, Heard::Handed)
            }
            perch::service::Heard::Nothing { after, through } => {
                (after.0, through.0, Heard::PassedOver)
            }
            perch::service::Heard::Lagged => panic!("a stream of a few batches lagged"),
            perch::service::Heard::Draining => panic!("the node drained"),
        };
        if after < id && id <= through {
            return how;
        }
    }
}

async fn next_batch(
    log: &mut perch::service::LogListener,
) -> std::sync::Arc<perch::service::LogBatch> {
    match tokio::time::timeout(std::time::Duration::from_secs(10), log.recv())
        .await
        .expect("the hub read the log")
    {
        perch::service::Heard::Batch(batch) => batch,
        other => panic!("expected a batch, heard {other:?}"),
    }
}

/// A text PostgreSQL cannot hold (a NUL) is refused before it joins a group of posts: stored
/// with the others, it failed the whole group, the posts of everyone who posted meanwhile.
#[tokio::test]
async fn a_text_the_database_cannot_hold_is_refused_alone() {
    let fixture = Fixture::new().await;
    let ana = open_room_with_ana(&fixture).await;
    let service = &fixture.service;
    let (refused, no_room, first, second) = tokio::join!(
        service.post_message(&ana, "r", "nul \u{0} inside", None),
        service.post_message(&ana, "r\u{0}", "to a room named with a NUL", None),
        service.post_message(&ana, "r", "fine", None),
        service.post_message(&ana, "r", "also fine", None),
    );
    assert_eq!(outcome(refused.map(drop)), "invalid_field body");
    assert_eq!(outcome(no_room.map(drop)), "not_found name");
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
}

/// An unreadable stored room refuses the posts to it, not the posts of the same group to
/// healthy rooms: only a failure of the database ends a group.
#[tokio::test]
async fn an_unreadable_room_refuses_only_its_own_posts() {
    let fixture = Fixture::new().await;
    let admin = &fixture.admin;
    fixture
        .create(
            admin,
            Kind::Category,
            json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await
        .unwrap();
    create_open_rooms_in_eng(&fixture, &["fine", "broken"]).await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&fixture.db.url)
        .await
        .expect("connect");
    sqlx::query("UPDATE objects SET body = 'not json' WHERE kind = 'Room' AND name = 'broken'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let ana = fixture.user("sip:ana@contoso.com").await;
    let mut posts = Vec::new();
    for number in 0..40 {
        let (service, ana) = (fixture.service.clone(), ana.clone());
        let room = if number % 2 == 0 { "fine" } else { "broken" };
        posts.push(tokio::spawn(async move {
            let posted = service
                .post_message(&ana, room, &format!("post {number}"), None)
                .await;
            (room, outcome(posted))
        }));
    }
    let mut outcomes = std::collections::BTreeMap::<(&str, String), usize>::new();
    for post in posts {
        *outcomes.entry(post.await.unwrap()).or_default() += 1;
    }
    expect![[r#"
        {
            (
                "broken",
                "internal -",
            ): 20,
            (
                "fine",
                "ok",
            ): 20,
        }
    "#]]
    .assert_debug_eq(&outcomes);
}

/// What a fixture holds after a batch of room creations, to compare two ways of making it:
/// the rooms (name, category, version, marks), the audit entries and the room changes.
async fn created_state(fixture: &Fixture) -> String {
    let store = Store::open(&fixture.db.url).await.expect("store");
    let mut lines = Vec::new();
    for room in fixture
        .service
        .list(&fixture.admin, Kind::Room)
        .await
        .unwrap()
    {
        let Object::Room(spec) = &room.spec else {
            unreachable!("a room")
        };
        lines.push(format!(
            "room {} in {} v{} managed={} members={:?}",
            spec.name, spec.category, room.meta.version, room.meta.managed, spec.members
        ));
    }
    for entry in store.audit_all().await.unwrap() {
        // A token's detail names its random id.
        let detail = if entry.kind == "Token" {
            serde_json::Value::Null
        } else {
            entry.detail
        };
        lines.push(format!(
            "audit {} {} {} {detail}",
            entry.action, entry.kind, entry.name
        ));
    }
    for change in store.room_changes_after(0, 1000).await.unwrap() {
        lines.push(format!(
            "change {} {} v{}",
            change.room_name,
            change.change.as_str(),
            change.version
        ));
    }
    store.close().await;
    lines.join("\n")
}

/// `Batch::create_all` writes an administrator's rooms together; whatever the rooms, it must
/// end exactly as creating them one by one with `Batch::run` does: the same error for the
/// same room, the same rooms, audit entries and room changes.
#[tokio::test]
async fn rooms_created_together_end_as_created_one_by_one() {
    // Each room as name/category/member, `in` or `out` of the categories' scope.
    let cases = [
        ("all fine", "a/c/in b/c/in c/d/in"),
        ("second outside the scope", "a/c/in b/c/out c/c/in"),
        ("second in no category", "a/c/in b/none/in c/c/in"),
        ("third name taken", "a/c/in b/c/in TAKEN/c/in d/c/in"),
        ("a name twice", "a/c/in dup/c/in DUP/c/in"),
        ("taken, then outside", "taken/c/in b/c/out"),
        ("outside, then taken", "a/c/in b/c/out taken/c/in"),
    ];
    let rooms_of = |text: &str| -> Vec<(Object, Ownership)> {
        text.split(' ')
            .map(|room| {
                let [name, category, scope] = room.split('/').collect::<Vec<_>>()[..] else {
                    panic!("a room is name/category/scope: {room}")
                };
                let member = if scope == "in" {
                    "sip:ana@contoso.com"
                } else {
                    "sip:eve@fabrikam.com"
                };
                let body = json!({"name": name, "category": category, "privacy": "closed",
                    "members": [member]});
                (
                    Object::from_json(Kind::Room, body).unwrap(),
                    Ownership::Managed { protect: false },
                )
            })
            .collect()
    };
    let mut lines = Vec::new();
    for (label, rooms) in cases {
        let rooms = rooms_of(rooms);
        let mut outcomes = Vec::new();
        let mut states = Vec::new();
        for together in [true, false] {
            let f = Fixture::new().await;
            for name in ["c", "d"] {
                f.create(
                    &f.admin,
                    Kind::Category,
                    json!({"name": name, "allowedMembers": ["domain:contoso.com"]}),
                )
                .await
                .unwrap();
            }
            f.create(
                &f.admin,
                Kind::Room,
                json!({"name": "taken", "category": "c", "privacy": "open"}),
            )
            .await
            .unwrap();
            let mut batch = f.service.batch().await.unwrap();
            let outcome = if together {
                batch.create_all(&f.admin, rooms.clone()).await
            } else {
                let mut outcome = Ok(());
                for (index, (object, ownership)) in rooms.iter().cloned().enumerate() {
                    let operation = perch::service::Operation::Create { object, ownership };
                    if let Err(error) = batch.run(&f.admin, operation).await {
                        outcome = Err((index, error));
                        break;
                    }
                }
                outcome
            };
            batch.commit().await.unwrap();
            outcomes.push(match outcome {
                Ok(()) => "ok".to_owned(),
                Err((done, error)) => format!("{done} done, then {error}"),
            });
            states.push(created_state(&f).await);
        }
        assert_eq!(outcomes[0], outcomes[1], "{label}: the outcome");
        assert_eq!(states[0], states[1], "{label}: what is stored");
        lines.push(format!("{label:<26} {}", outcomes[0]));
    }
    expect![[r"
        all fine                   ok
        second outside the scope   1 done, then `sip:eve@fabrikam.com` is not within category `c`'s allowed members (or is denied)
        second in no category      1 done, then category `none` does not exist; create it before its rooms
        third name taken           2 done, then a Room named `taken` already exists
        a name twice               2 done, then a Room named `dup` already exists
        taken, then outside        0 done, then a Room named `taken` already exists
        outside, then taken        1 done, then `sip:eve@fabrikam.com` is not within category `c`'s allowed members (or is denied)"]]
    .assert_eq(&lines.join("\n"));
}

/// The writer never checkpoints its own commits (a post would wait for the file's sync): the
/// store's checkpointer moves them into the database file soon after. Without it the file
/// would stay as it was however much is written.
#[tokio::test]
async fn commits_reach_the_sqlite_file_through_the_checkpointer() {
    let db = common::TestDb::sqlite();
    let service = Service::new(Store::open(&db.url).await.expect("store"));
    let operator = Caller::local_operator();
    let file = db.path().join("perch.db");
    let before = std::fs::metadata(&file).expect("the database file").len();
    for number in 0..20 {
        let category = Object::from_json(
            Kind::Category,
            json!({"name": format!("c{number}"), "description": "x".repeat(1000)}),
        )
        .expect("a well-formed category");
        service
            .create(&operator, category, Ownership::Keep)
            .await
            .expect("created");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::metadata(&file).expect("the database file").len() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was checkpointed into {} in 30 s",
            file.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Objects without a name key (restored from a backup older than the keys) get theirs when the
/// store opens, found through the index of such objects: a name differing only in case is then
/// the same name.
#[tokio::test]
async fn a_store_keys_the_names_of_objects_restored_without_keys_when_it_opens() {
    let db = common::TestDb::new();
    let operator = Caller::local_operator();
    let category = |name: &str| {
        Object::from_json(Kind::Category, json!({"name": name})).expect("a well-formed category")
    };
    let store = Store::open(&db.url).await.expect("store");
    Service::new(store.clone())
        .create(&operator, category("Eng"), Ownership::Keep)
        .await
        .expect("created");
    store.close().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("the database");
    sqlx::query("UPDATE objects SET name_key = NULL")
        .execute(&pool)
        .await
        .expect("keys removed");
    pool.close().await;

    let service = Service::new(Store::open(&db.url).await.expect("store"));
    let again = service
        .create(&operator, category("ENG"), Ownership::Keep)
        .await;
    let outcome = outcome(again);
    assert!(
        outcome.starts_with("already_exists"),
        "a name differing only in case was taken as another: {outcome}"
    );
}
