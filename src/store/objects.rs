//! The `objects` table: every configuration object as a JSON body plus the columns rules
//! query and the bookkeeping of its envelope.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Backend, Store, StoreError, Tx};
use crate::domain::audit::{AuditAction, changed_fields};
use crate::domain::{Kind, Marks, name_key};

/// An object's fields and marks as its audit entries record them.
fn audited_fields(body: &str, marks: Marks) -> serde_json::Value {
    let mut fields: serde_json::Value =
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    if let Some(map) = fields.as_object_mut() {
        map.insert("managed".to_owned(), marks.managed.into());
        map.insert("protect".to_owned(), marks.protect.into());
    }
    fields
}

/// The audit detail of a creation, `{"after": ...}` with [`audited_fields`], as JSON text.
/// A body this program wrote (an object of fields, none of them the marks) is spliced as it
/// is rather than parsed and written again: that was a thirteenth of a large apply. Readers
/// parse the detail, so only its meaning is kept, not the order of its keys.
fn creation_detail(body: &str, marks: Marks) -> String {
    let fields = body
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .filter(|fields| {
            !fields.trim().is_empty()
                && !fields.contains("\"managed\"")
                && !fields.contains("\"protect\"")
        });
    match fields {
        Some(fields) => format!(
            r#"{{"after":{{{fields},"managed":{},"protect":{}}}}}"#,
            marks.managed, marks.protect
        ),
        None => serde_json::json!({"after": audited_fields(body, marks)}).to_string(),
    }
}

/// One stored configuration object: its JSON body plus the bookkeeping every object carries.
#[derive(Clone, Debug)]
pub struct ObjectRow {
    pub id: i64,
    pub kind: Kind,
    pub name: String,
    pub body: String,
    pub version: i64,
    pub marks: Marks,
    pub created_at: String,
    pub updated_by: String,
    pub updated_at: String,
}

/// How a transaction holds rows it reads, on PostgreSQL (SQLite's one writer holds all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowLock {
    /// Others may hold it the same way; nobody changes the row until the transaction ends.
    Shared,
    /// Nobody else locks the row until the transaction ends.
    Exclusive,
}

/// A column by which a room names another object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomReference {
    Category,
    Addin,
}

impl RoomReference {
    fn column(self) -> &'static str {
        match self {
            RoomReference::Category => "category",
            RoomReference::Addin => "addin",
        }
    }
}

/// What a write stores for one object; the store fills in the id and the creation time.
#[derive(Clone, Debug)]
pub struct ObjectWrite<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub category: Option<&'a str>,
    pub addin: Option<&'a str>,
    pub body: String,
    pub marks: Marks,
    pub updated_by: &'a str,
    pub updated_at: &'a str,
}

/// `updated_by` as the text of a JSON string: the one column of the envelope that can hold
/// characters to escape (a macro, so that both layouts' statements are literals).
macro_rules! updated_by_in_json {
    () => {
        r#"replace(replace(updated_by, '\', '\\'), '"', '\"')"#
    };
}

/// What every page of the state reads: the next slice of rows after `$1`, `$2` of them, and
/// where the slice ends.
macro_rules! state_page_slice {
    () => {
        "MAX(id) AS last_id, COUNT(*) AS row_count
FROM (SELECT * FROM objects WHERE id > $1 ORDER BY id LIMIT $2) AS slice"
    };
}

/// One page of the state as JSON (see [`Store::state_json_pages`]): the objects, each one
/// JSON object, joined by commas, with no brackets around them (a reader that wants an array
/// adds them; `GET /v1/state` joins the pages into its own). Their order within a page is
/// the slice's as the database aggregates it, which no reader depends on (`ORDER BY` inside
/// `string_agg` made SQLite sort every page again: a fifth of the read).
/// Bodies are JSON objects written by this program, so a body other than `{}` begins with
/// `{"` and `ltrim` takes exactly its opening brace; only `updated_by` can hold characters to
/// escape. One `concat` a row: a chain of `||` copied each body once for every operator.
const STATE_PAGE_SQL: &str = concat!(
    r#"SELECT string_agg(concat(
    '{"kind":"', kind,
    '","id":', id,
    ',"version":', version,
    ',"managed":', CASE WHEN managed <> 0 THEN 'true' ELSE 'false' END,
    ',"protect":', CASE WHEN protected <> 0 THEN 'true' ELSE 'false' END,
    ',"createdAt":"', created_at,
    '","updatedBy":"', "#,
    updated_by_in_json!(),
    r#",
    '","updatedAt":"', updated_at, '"',
    CASE WHEN body = '{}' THEN '' ELSE ',' END, ltrim(body, '{')
    ), ',') AS page, "#,
    state_page_slice!()
);

/// One page of the state as rows (see [`Store::state_row_pages_to`]): each object one JSON
/// array, `[kind, id, version, managed, protect, createdAt, updatedBy, updatedAt, body]`,
/// joined by commas, with no brackets around them. The same columns as [`STATE_PAGE_SQL`]
/// writes, by position rather than by name, and the body whole rather than merged: a reader
/// in this program parses no key of the envelope, and takes the body as one value.
const STATE_ROWS_PAGE_SQL: &str = concat!(
    r#"SELECT string_agg(concat(
    '["', kind,
    '",', id,
    ',', version,
    ',', CASE WHEN managed <> 0 THEN 'true' ELSE 'false' END,
    ',', CASE WHEN protected <> 0 THEN 'true' ELSE 'false' END,
    ',"', created_at,
    '","', "#,
    updated_by_in_json!(),
    r#",
    '","', updated_at,
    '",', body, ']'
    ), ',') AS page, "#,
    state_page_slice!()
);

/// A slice of rooms to read (see [`Store::scan_rooms`]).
#[derive(Clone, Debug, Default)]
pub struct RoomScan<'a> {
    /// Names after this one, in the database's order of names.
    pub after: Option<&'a str>,
    pub category: Option<&'a str>,
    pub addin: Option<&'a str>,
    /// Text the stored JSON body contains as written.
    pub body_contains: Vec<String>,
    /// ASCII text (given in lower case) the body contains in any case.
    pub body_contains_folded: Vec<String>,
    pub limit: i64,
}

/// `%needle%` for `LIKE ... ESCAPE '!'`, the needle's own `%`, `_` and `!` taken literally.
/// (`!` rather than a backslash, whose meaning in a string literal depends on PostgreSQL's
/// `standard_conforming_strings`.)
fn like_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for character in needle.chars() {
        if matches!(character, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(character);
    }
    pattern.push('%');
    pattern
}

/// Rows per statement of a multi-row object insert (12 values each).
const OBJECTS_PER_INSERT: usize = 125;

const OBJECT_COLUMNS: &str =
    "id, kind, name, body, version, managed, protected, created_at, updated_by, updated_at";

async fn get_object(
    connection: &mut AnyConnection,
    kind: Kind,
    name: &str,
    lock_clause: &str,
) -> Result<Option<ObjectRow>, StoreError> {
    // Names are stored in NFC; a name asked for in another form (a URL's decomposed `é`) is
    // the same name.
    let mut name = name.to_owned();
    crate::domain::normalise_name(&mut name);
    let row = sqlx::query(&format!(
        "SELECT {OBJECT_COLUMNS} FROM objects WHERE kind = $1 AND name = $2{lock_clause}"
    ))
    .bind(kind.as_str())
    .bind(&name)
    .fetch_optional(connection)
    .await?;
    row.as_ref().map(object_from_row).transpose()
}

async fn list_objects(
    connection: &mut AnyConnection,
    kind: Kind,
) -> Result<Vec<ObjectRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {OBJECT_COLUMNS} FROM objects WHERE kind = $1 ORDER BY name"
    ))
    .bind(kind.as_str())
    .fetch_all(connection)
    .await?;
    rows.iter().map(object_from_row).collect()
}

fn object_from_row(row: &AnyRow) -> Result<ObjectRow, StoreError> {
    let kind_text: String = row.try_get("kind")?;
    let name: String = row.try_get("name")?;
    let kind = Kind::parse(&kind_text).ok_or_else(|| StoreError::Corrupt {
        kind: Kind::Room,
        name: name.clone(),
        message: format!("unknown kind `{kind_text}`"),
    })?;
    Ok(ObjectRow {
        id: row.try_get("id")?,
        kind,
        name,
        body: row.try_get("body")?,
        version: row.try_get("version")?,
        marks: Marks {
            managed: row.try_get::<i64, _>("managed")? != 0,
            protect: row.try_get::<i64, _>("protected")? != 0,
        },
        created_at: row.try_get("created_at")?,
        updated_by: row.try_get("updated_by")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Gives every object stored before name keys existed its key (once, after migration 8).
    pub(super) async fn backfill_name_keys(&self) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT id, name FROM objects WHERE name_key IS NULL")
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let name: String = row.try_get("name")?;
            sqlx::query("UPDATE objects SET name_key = $2 WHERE id = $1")
                .bind(id)
                .bind(name_key(&name))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(objects = rows.len(), "gave stored names their keys");
        Ok(())
    }

    /// Reads one object outside any transaction.
    pub async fn get(&self, kind: Kind, name: &str) -> Result<Option<ObjectRow>, StoreError> {
        let mut connection = self.pool.acquire().await?;
        get_object(&mut connection, kind, name, "").await
    }

    /// Reads every object of a kind, ordered by name.
    pub async fn list(&self, kind: Kind) -> Result<Vec<ObjectRow>, StoreError> {
        let mut connection = self.pool.acquire().await?;
        list_objects(&mut connection, kind).await
    }

    /// Reads every configuration object in one consistent snapshot, as JSON text: pages of
    /// comma-separated JSON objects (no brackets), each the stored body with `kind` and the
    /// bookkeeping fields (`id`, `version`, `managed`, `protect`, `createdAt`, `updatedBy`,
    /// `updatedAt`) added.
    ///
    /// The database writes the JSON itself, a page of rows at a time, so that reading a
    /// hundred thousand objects costs a few round trips and no parsing here.
    pub async fn state_json_pages(&self) -> Result<Vec<String>, StoreError> {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        self.state_json_pages_to(&sender).await?;
        drop(sender);
        let mut pages = Vec::new();
        while let Ok(page) = receiver.try_recv() {
            pages.push(page);
        }
        Ok(pages)
    }

    /// The pages of [`Store::state_json_pages`], each sent as soon as the database wrote it,
    /// so that a reader can parse one page while the next is written. The channel is
    /// unbounded on purpose: the read never waits on its reader, so a client that stops
    /// reading does not keep a connection of the pool and its snapshot (at worst the pages
    /// wait in memory, as a whole read would hold them). Stops early, without an error, when
    /// the receiver is gone.
    pub async fn state_json_pages_to(
        &self,
        pages: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<(), StoreError> {
        self.state_pages_to(STATE_PAGE_SQL, pages).await
    }

    /// The state of [`Store::state_json_pages_to`], in one snapshot and as its pages are
    /// written, each object as a row rather than as it is shown (see [`STATE_ROWS_PAGE_SQL`]):
    /// for a reader in this program (the embedded target).
    pub async fn state_row_pages_to(
        &self,
        pages: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<(), StoreError> {
        self.state_pages_to(STATE_ROWS_PAGE_SQL, pages).await
    }

    async fn state_pages_to(
        &self,
        page_sql: &'static str,
        pages: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<(), StoreError> {
        // Small enough that SQLite builds each page in cache, rather than growing a string of
        // megabytes by copies.
        const PAGE: i64 = 1_000;
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        };
        let mut after = 0_i64;
        loop {
            let row = sqlx::query(page_sql)
                .bind(after)
                .bind(PAGE)
                .fetch_one(&mut *tx)
                .await?;
            let page: Option<String> = row.try_get("page")?;
            let last: Option<i64> = row.try_get("last_id")?;
            let count: i64 = row.try_get("row_count")?;
            if let Some(page) = page
                && pages.send(page).is_err()
            {
                break;
            }
            match last {
                Some(last) if count == PAGE => after = last,
                _ => break,
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// One slice of rooms in name order after `scan.after`, narrowed by the indexed columns
    /// and by text the body must contain. Each condition is necessary, never sufficient: the
    /// service judges every row it reads again with [`crate::domain::RoomFilter`].
    pub async fn scan_rooms(&self, scan: &RoomScan<'_>) -> Result<Vec<ObjectRow>, StoreError> {
        let mut sql = format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE kind = 'Room'");
        let mut binds: Vec<String> = Vec::new();
        let mut condition = |sql: &mut String, clause: &str, value: String| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(after) = scan.after {
            condition(&mut sql, " AND name > ?", after.to_owned());
        }
        if let Some(category) = scan.category {
            condition(&mut sql, " AND category = ?", category.to_owned());
        }
        if let Some(addin) = scan.addin {
            condition(&mut sql, " AND addin = ?", addin.to_owned());
        }
        for needle in &scan.body_contains {
            condition(
                &mut sql,
                " AND body LIKE ? ESCAPE '!'",
                like_pattern(needle),
            );
        }
        // lower() folds ASCII only on SQLite; on PostgreSQL it follows the column's locale
        // (Turkish folds `I` to `ı`), so there it is asked for the C locale's ASCII folding.
        let folded = match self.backend {
            Backend::Sqlite => " AND lower(body) LIKE ? ESCAPE '!'",
            Backend::Postgres => " AND lower(body COLLATE \"C\") LIKE ? ESCAPE '!'",
        };
        for needle in &scan.body_contains_folded {
            condition(&mut sql, folded, like_pattern(needle));
        }
        sql.push_str(&format!(" ORDER BY name LIMIT {}", scan.limit.max(1)));
        let mut query = sqlx::query(&sql);
        for value in &binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(object_from_row).collect()
    }

    /// How many rooms there are.
    pub async fn count_rooms(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM objects WHERE kind = 'Room'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// The names of the rooms that show an add-in, ordered.
    pub async fn rooms_using_addin(&self, addin: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT name FROM objects WHERE kind = 'Room' AND addin = $1 ORDER BY name",
        )
        .bind(addin)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(StoreError::from))
            .collect()
    }

    /// Reads one object by its id.
    pub async fn get_by_id(&self, id: i64) -> Result<Option<ObjectRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(object_from_row).transpose()
    }

    /// The room with this id and the category its `category` column names, in one read:
    /// what a node's streams judge a room by, loaded by every node at a post in a room new
    /// to it. `(None, None)` when the id is no room; the category `None` when it is gone.
    /// The caller checks the category against the room's own field.
    pub async fn room_and_category(
        &self,
        room_id: i64,
    ) -> Result<(Option<ObjectRow>, Option<ObjectRow>), StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS}, 0 AS part FROM objects WHERE id = $1 AND kind = $2 \
             UNION ALL \
             SELECT {OBJECT_COLUMNS}, 1 AS part FROM objects WHERE kind = $3 AND name = \
             (SELECT category FROM objects WHERE id = $1 AND kind = $2) \
             ORDER BY part"
        ))
        .bind(room_id)
        .bind(Kind::Room.as_str())
        .bind(Kind::Category.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut objects = rows.iter().map(object_from_row);
        let room = objects.next().transpose()?;
        let category = objects.next().transpose()?;
        Ok(match room {
            Some(room) if room.kind == Kind::Room => (Some(room), category),
            _ => (None, None),
        })
    }
}

impl Tx {
    /// Reads one object and, on PostgreSQL, locks it until the transaction ends.
    pub async fn get(&mut self, kind: Kind, name: &str) -> Result<Option<ObjectRow>, StoreError> {
        get_object(&mut self.inner, kind, name, self.backend.lock_clause()).await
    }

    /// Reads one object and, on PostgreSQL, keeps it from changing until the transaction ends,
    /// while other transactions may read it the same way.
    pub async fn get_shared(
        &mut self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<ObjectRow>, StoreError> {
        get_object(&mut self.inner, kind, name, self.backend.share_clause()).await
    }

    /// Reads the objects of `kind` with these names (absent ones are left out) and, on
    /// PostgreSQL, locks them in the order of their names. That is the one order in which a
    /// transaction locks several rooms, or several categories (ARCHITECTURE.md, invariant 2):
    /// two transactions that lock overlapping sets this way never wait for each other in a
    /// circle. One statement: callers pass a bounded set (a group of posts).
    pub async fn lock_in_order(
        &mut self,
        kind: Kind,
        names: &[String],
        lock: RowLock,
    ) -> Result<Vec<ObjectRow>, StoreError> {
        Ok(self
            .lock_in_order_reading(kind, names, lock, false)
            .await?
            .0)
    }

    /// [`Tx::lock_in_order`], with the generation read by the same statement (`None` when no
    /// object is found): what this transaction judges on was committed at that generation or
    /// later, so anything read at it or later may stand in for what this transaction would
    /// read without a lock (groups: see `service::access::RoomInputs`). No round trip of
    /// its own: a group of posts reads it with its rooms.
    pub async fn lock_in_order_with_generation(
        &mut self,
        kind: Kind,
        names: &[String],
        lock: RowLock,
    ) -> Result<(Vec<ObjectRow>, Option<i64>), StoreError> {
        self.lock_in_order_reading(kind, names, lock, true).await
    }

    async fn lock_in_order_reading(
        &mut self,
        kind: Kind,
        names: &[String],
        lock: RowLock,
        with_generation: bool,
    ) -> Result<(Vec<ObjectRow>, Option<i64>), StoreError> {
        if names.is_empty() {
            return Ok((Vec::new(), None));
        }
        // The kind is bound last, after the names' `$1..$n`. The generation comes from the
        // statement's own snapshot (PostgreSQL takes one per statement).
        let generation = if with_generation {
            ", (SELECT value FROM generation WHERE id = 1) AS generation"
        } else {
            ""
        };
        let mut sql = format!("SELECT {OBJECT_COLUMNS}{generation} FROM objects WHERE name IN ");
        self.backend.push_placeholders(&mut sql, 1, names.len());
        sql.push_str(&format!(
            " AND kind = ${} ORDER BY name{}",
            names.len() + 1,
            self.row_lock(lock)
        ));
        let mut statement = sqlx::query(&sql);
        for name in names {
            let mut name = name.clone();
            crate::domain::normalise_name(&mut name);
            statement = statement.bind(name);
        }
        let statement = statement.bind(kind.as_str());
        let rows = statement.fetch_all(&mut *self.inner).await?;
        let generation = match rows.first() {
            Some(row) if with_generation => Some(row.try_get("generation")?),
            _ => None,
        };
        let objects = rows.iter().map(object_from_row).collect::<Result<_, _>>()?;
        Ok((objects, generation))
    }

    /// Locks (on PostgreSQL) every room that names `value` as its `category` or `addin`, in
    /// the order of their names, and returns their names in that order: a change of a
    /// category or add-in that rewrites its rooms locks them before the category or add-in
    /// itself, as posts do.
    pub async fn lock_rooms_naming(
        &mut self,
        column: RoomReference,
        value: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut value = value.to_owned();
        crate::domain::normalise_name(&mut value);
        let lock = self.backend.lock_clause();
        self.names_where(column, &value, lock).await
    }

    /// Locks (on PostgreSQL) every room in these categories in the order of their names, and
    /// returns them in that order.
    pub async fn lock_rooms_in_categories(
        &mut self,
        categories: &[String],
    ) -> Result<Vec<ObjectRow>, StoreError> {
        if categories.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql =
            format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE kind = 'Room' AND category IN ");
        self.backend
            .push_placeholders(&mut sql, 1, categories.len());
        sql.push_str(" ORDER BY name");
        sql.push_str(self.backend.lock_clause());
        let mut statement = sqlx::query(&sql);
        for category in categories {
            statement = statement.bind(category);
        }
        let rows = statement.fetch_all(&mut *self.inner).await?;
        rows.iter().map(object_from_row).collect()
    }

    fn row_lock(&self, lock: RowLock) -> &'static str {
        match lock {
            RowLock::Shared => self.backend.share_clause(),
            RowLock::Exclusive => self.backend.lock_clause(),
        }
    }

    /// Reads one object without locking it.
    pub async fn read(&mut self, kind: Kind, name: &str) -> Result<Option<ObjectRow>, StoreError> {
        get_object(&mut self.inner, kind, name, "").await
    }

    pub async fn list(&mut self, kind: Kind) -> Result<Vec<ObjectRow>, StoreError> {
        list_objects(&mut self.inner, kind).await
    }

    /// The names of the rooms in a category, ordered.
    pub async fn rooms_in_category(&mut self, category: &str) -> Result<Vec<String>, StoreError> {
        self.names_where(RoomReference::Category, category, "")
            .await
    }

    /// The names of the rooms that show an add-in, ordered.
    pub async fn rooms_using_addin(&mut self, addin: &str) -> Result<Vec<String>, StoreError> {
        self.names_where(RoomReference::Addin, addin, "").await
    }

    /// The names of the rooms naming `value` in `column`, ordered, read with `lock_clause`.
    async fn names_where(
        &mut self,
        column: RoomReference,
        value: &str,
        lock_clause: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT name FROM objects WHERE kind = 'Room' AND {} = $1 ORDER BY name{lock_clause}",
            column.column()
        ))
        .bind(value)
        .fetch_all(&mut *self.inner)
        .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(StoreError::from))
            .collect()
    }

    /// Stores a new object at version 1.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] when an object of that kind and name exists.
    pub async fn insert(&mut self, write: ObjectWrite<'_>) -> Result<ObjectRow, StoreError> {
        self.changes_access = true;
        let key = name_key(write.name);
        self.refuse_taken_key(write.kind, &key, None).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO objects (kind, name, category, addin, body, version, managed, protected, created_at, updated_by, updated_at, name_key) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $9, $7, $8, $7, $10) \
             ON CONFLICT (kind, name) DO NOTHING RETURNING {OBJECT_COLUMNS}"
        ))
        .bind(write.kind.as_str())
        .bind(write.name)
        .bind(write.category)
        .bind(write.addin)
        .bind(&write.body)
        .bind(i64::from(write.marks.managed))
        .bind(write.updated_at)
        .bind(write.updated_by)
        .bind(i64::from(write.marks.protect))
        .bind(&key)
        .fetch_optional(&mut *self.inner)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Duplicate {
                kind: write.kind,
                name: write.name.to_owned(),
            });
        };
        let row = object_from_row(&row)?;
        let detail = serde_json::json!({"after": audited_fields(&row.body, row.marks)});
        self.record_audit(
            write.updated_at,
            write.updated_by,
            AuditAction::Create,
            write.kind.as_str(),
            write.name,
            &detail,
        )
        .await?;
        Ok(row)
    }

    /// Stores new objects at version 1, as [`Tx::insert`] would one by one, in a few
    /// multi-row statements: `Ok(None)` when a name is taken (by a stored object or by
    /// another of `writes`), and then what was written must be rolled back (to a savepoint)
    /// and the objects inserted one by one, which names the object in the way exactly.
    ///
    /// The rows come back in the order of `writes`.
    pub async fn insert_all(
        &mut self,
        writes: &[ObjectWrite<'_>],
    ) -> Result<Option<Vec<ObjectRow>>, StoreError> {
        let Some(kind) = writes.first().map(|write| write.kind) else {
            return Ok(Some(Vec::new()));
        };
        if writes.iter().any(|write| write.kind != kind) {
            return Err(StoreError::Unsupported(
                "objects inserted together are of one kind".to_owned(),
            ));
        }
        self.changes_access = true;
        let mut keys: Vec<String> = writes.iter().map(|write| name_key(write.name)).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|pair| pair[0] == pair[1]) {
            return Ok(None);
        }
        for chunk in keys.chunks(OBJECTS_PER_INSERT) {
            if self.backend == Backend::Postgres {
                // The per-name locks of `refuse_taken_key`, taken in key order.
                let mut sql = String::from(
                    "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(hashtext(k)) FROM (SELECT k FROM (VALUES ",
                );
                self.backend.push_placeholders(&mut sql, chunk.len(), 1);
                sql.push_str(") AS keys (k) ORDER BY k) AS sorted) AS turn");
                let mut statement = sqlx::query(&sql);
                for key in chunk {
                    statement = statement.bind(format!("{}/{key}", kind.as_str()));
                }
                statement.fetch_one(&mut *self.inner).await?;
            }
            let mut sql = String::from("SELECT COUNT(*) FROM objects WHERE name_key IN ");
            self.backend.push_placeholders(&mut sql, 1, chunk.len());
            sql.push_str(&format!(" AND kind = ${}", chunk.len() + 1));
            let mut statement = sqlx::query(&sql);
            for key in chunk {
                statement = statement.bind(key.as_str());
            }
            let taken: i64 = statement
                .bind(kind.as_str())
                .fetch_one(&mut *self.inner)
                .await?
                .try_get(0)?;
            if taken > 0 {
                return Ok(None);
            }
        }
        // Only the ids come back: the rest of each row is what was written (returning whole
        // rows copied every body back out of the database, a tenth of a large apply).
        let mut ids: std::collections::HashMap<String, i64> =
            std::collections::HashMap::with_capacity(writes.len());
        for chunk in writes.chunks(OBJECTS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO objects (kind, name, category, addin, body, version, managed, protected, created_at, updated_by, updated_at, name_key) VALUES ",
            );
            self.backend.push_placeholders(&mut sql, chunk.len(), 12);
            sql.push_str(" ON CONFLICT (kind, name) DO NOTHING RETURNING id, name");
            let mut statement = sqlx::query(&sql);
            for write in chunk {
                statement = statement
                    .bind(write.kind.as_str())
                    .bind(write.name)
                    .bind(write.category)
                    .bind(write.addin)
                    .bind(write.body.as_str())
                    .bind(1_i64)
                    .bind(i64::from(write.marks.managed))
                    .bind(i64::from(write.marks.protect))
                    .bind(write.updated_at)
                    .bind(write.updated_by)
                    .bind(write.updated_at)
                    .bind(name_key(write.name));
            }
            let rows = statement.fetch_all(&mut *self.inner).await?;
            if rows.len() != chunk.len() {
                return Ok(None);
            }
            for row in &rows {
                ids.insert(row.try_get("name")?, row.try_get("id")?);
            }
        }
        let rows = writes
            .iter()
            .map(|write| {
                let id = ids.remove(write.name).ok_or_else(|| {
                    StoreError::Inconsistent(format!(
                        "a multi-row insert did not return {} `{}`",
                        write.kind, write.name
                    ))
                })?;
                Ok(ObjectRow {
                    id,
                    kind: write.kind,
                    name: write.name.to_owned(),
                    body: write.body.clone(),
                    version: 1,
                    marks: write.marks,
                    created_at: write.updated_at.to_owned(),
                    updated_by: write.updated_by.to_owned(),
                    updated_at: write.updated_at.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let entries: Vec<super::audit::NewAuditEntry<'_>> = rows
            .iter()
            .zip(writes)
            .map(|(row, write)| super::audit::NewAuditEntry {
                at: write.updated_at,
                actor: write.updated_by,
                action: AuditAction::Create,
                kind: write.kind.as_str(),
                name: write.name,
                detail: creation_detail(&row.body, row.marks),
            })
            .collect();
        self.record_audits(&entries).await?;
        Ok(Some(rows))
    }

    /// Stores a new object with the id and times it had elsewhere (used by import, whose own
    /// audit entry records it, with the file's counts and checksum: an import of a hundred
    /// thousand objects is one act, not a hundred thousand).
    pub async fn insert_exact(
        &mut self,
        id: i64,
        write: ObjectWrite<'_>,
        version: i64,
        created_at: &str,
    ) -> Result<(), StoreError> {
        self.changes_access = true;
        // Names stay unique by key on import too.
        self.refuse_taken_key(write.kind, &name_key(write.name), Some(id))
            .await?;
        sqlx::query(
            "INSERT INTO objects (id, kind, name, category, addin, body, version, managed, created_at, updated_by, updated_at, protected, name_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(id)
        .bind(write.kind.as_str())
        .bind(write.name)
        .bind(write.category)
        .bind(write.addin)
        .bind(&write.body)
        .bind(version)
        .bind(i64::from(write.marks.managed))
        .bind(created_at)
        .bind(write.updated_by)
        .bind(write.updated_at)
        .bind(i64::from(write.marks.protect))
        .bind(name_key(write.name))
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Replaces an object's body and name, bumping its version.
    ///
    /// The caller has read the row in this transaction, so `id` is current.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] when a rename takes a name already in use.
    pub async fn update(
        &mut self,
        id: i64,
        write: ObjectWrite<'_>,
    ) -> Result<ObjectRow, StoreError> {
        self.changes_access = true;
        let key = name_key(write.name);
        self.refuse_taken_key(write.kind, &key, Some(id)).await?;
        let before = self.object_by_id(id).await?;
        let row = sqlx::query(&format!(
            "UPDATE objects SET name = $2, category = $3, addin = $4, body = $5, version = version + 1, \
             managed = $6, updated_by = $7, updated_at = $8, protected = $9, name_key = $10 WHERE id = $1 RETURNING {OBJECT_COLUMNS}"
        ))
        .bind(id)
        .bind(write.name)
        .bind(write.category)
        .bind(write.addin)
        .bind(&write.body)
        .bind(i64::from(write.marks.managed))
        .bind(write.updated_by)
        .bind(write.updated_at)
        .bind(i64::from(write.marks.protect))
        .bind(&key)
        .fetch_one(&mut *self.inner)
        .await?;
        let row = object_from_row(&row)?;
        if let Some(before) = before {
            let mut changes = changed_fields(
                &audited_fields(&before.body, before.marks),
                &audited_fields(&row.body, row.marks),
            );
            if !changes.is_empty() {
                // Named as it was, so that an object's entries stay together across a rename.
                changes.remove("name");
                let mut detail = serde_json::json!({"changes": changes});
                if before.name != row.name {
                    detail["renamedTo"] = serde_json::json!(row.name);
                }
                self.record_audit(
                    write.updated_at,
                    write.updated_by,
                    AuditAction::Change,
                    write.kind.as_str(),
                    &before.name,
                    &detail,
                )
                .await?;
            }
        }
        Ok(row)
    }

    /// Removes an object, recording who did and what it held.
    pub async fn delete(&mut self, id: i64, actor: &str, at: &str) -> Result<(), StoreError> {
        self.changes_access = true;
        let Some(before) = self.object_by_id(id).await? else {
            return Ok(());
        };
        sqlx::query("DELETE FROM objects WHERE id = $1")
            .bind(id)
            .execute(&mut *self.inner)
            .await?;
        let detail = serde_json::json!({"before": audited_fields(&before.body, before.marks)});
        self.record_audit(
            at,
            actor,
            AuditAction::Remove,
            before.kind.as_str(),
            &before.name,
            &detail,
        )
        .await?;
        Ok(())
    }

    /// Refuses a name whose key another object of the kind holds (`Secret-Ops` when
    /// `secret-ops` exists), naming the one that holds it. On PostgreSQL the check takes a
    /// transaction lock on the key, so that two writers of look-alike names cannot both pass.
    async fn refuse_taken_key(
        &mut self,
        kind: Kind,
        key: &str,
        except: Option<i64>,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query(
                "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS turn",
            )
            .bind(format!("{}/{key}", kind.as_str()))
            .fetch_one(&mut *self.inner)
            .await?;
        }
        let taken = sqlx::query(
            "SELECT name FROM objects WHERE kind = $1 AND name_key = $2 AND id <> $3 LIMIT 1",
        )
        .bind(kind.as_str())
        .bind(key)
        .bind(except.unwrap_or(0))
        .fetch_optional(&mut *self.inner)
        .await?;
        match taken {
            Some(row) => Err(StoreError::Duplicate {
                kind,
                name: row.try_get("name")?,
            }),
            None => Ok(()),
        }
    }

    /// The object holding this id, if any.
    pub async fn object_by_id(&mut self, id: i64) -> Result<Option<ObjectRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *self.inner)
        .await?;
        row.as_ref().map(object_from_row).transpose()
    }
}

#[cfg(test)]
mod creation_detail_tests {
    use super::*;

    /// Spliced or parsed, the detail means what `audited_fields` says.
    #[test]
    fn a_creation_detail_means_the_audited_fields() {
        let bodies = [
            r#"{"name":"a","members":["sip:ana@contoso.com"]}"#,
            "{}",
            r#"{"managed":true,"name":"a"}"#,
            r#"{"name":"a","description":"the \"protect\" room"}"#,
            r#"{"name":"a","protect":1}"#,
        ];
        for body in bodies {
            for (managed, protect) in [(false, false), (true, false), (false, true)] {
                let marks = Marks { managed, protect };
                let detail: serde_json::Value =
                    serde_json::from_str(&creation_detail(body, marks)).expect("JSON");
                assert_eq!(
                    detail,
                    serde_json::json!({"after": audited_fields(body, marks)}),
                    "{body} {marks:?}"
                );
            }
        }
    }
}
