//! Durable storage: one SQLite file by default, PostgreSQL when several nodes share a database.
//!
//! Invariants: only `service/` calls this module's writers, and every write happens inside a
//! [`Tx`] that the caller commits or drops. The same SQL text runs on both backends (numbered
//! `$N` parameters, `BIGINT` and `TEXT` columns only); where the dialects differ, [`Backend`]
//! says how. Migrations live per backend under `migrations/`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row};

use crate::domain::Kind;

/// Fails a store call; maps every `sqlx::Error` in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database URL `{url}` is not supported: use sqlite://FILE or postgres://...")]
    UnsupportedUrl { url: String },
    #[error("cannot open the database `{url}`")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the database schema failed at migration {version}")]
    Migrate {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the database schema is at version {found}, newer than this perch knows ({known}); upgrade perch"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("a {kind} named `{name}` already exists")]
    Duplicate { kind: Kind, name: String },
    #[error("the database is busy; try again")]
    Busy(#[source] sqlx::Error),
    #[error("database error")]
    Other(#[source] sqlx::Error),
    #[error("stored {kind} `{name}` is unreadable: {message}")]
    Corrupt {
        kind: Kind,
        name: String,
        message: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error {
            // SQLITE_BUSY (5) / SQLITE_LOCKED (6) and PostgreSQL's serialization and
            // deadlock failures are transient: the caller may retry.
            if matches!(db.code().as_deref(), Some("5" | "6" | "40001" | "40P01")) {
                return StoreError::Busy(error);
            }
        }
        if matches!(error, sqlx::Error::PoolTimedOut) {
            return StoreError::Busy(error);
        }
        StoreError::Other(error)
    }
}

/// Which SQL dialect the pool speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// The statement that opens a write transaction. SQLite takes its write lock up front so
    /// that two writers queue on `busy_timeout` instead of failing on lock upgrade.
    fn begin_statement(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// Appended to a `SELECT` that reads a row the transaction will rely on.
    fn lock_clause(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }
}

struct Migration {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: include_str!("migrations/sqlite/0001_objects.sql"),
        postgres: include_str!("migrations/postgres/0001_objects.sql"),
    },
    Migration {
        version: 2,
        sqlite: include_str!("migrations/sqlite/0002_messages.sql"),
        postgres: include_str!("migrations/postgres/0002_messages.sql"),
    },
    Migration {
        version: 3,
        sqlite: include_str!("migrations/sqlite/0003_archive.sql"),
        postgres: include_str!("migrations/postgres/0003_archive.sql"),
    },
    Migration {
        version: 4,
        sqlite: include_str!("migrations/sqlite/0004_room_changes.sql"),
        postgres: include_str!("migrations/postgres/0004_room_changes.sql"),
    },
    Migration {
        version: 5,
        sqlite: include_str!("migrations/sqlite/0005_generation.sql"),
        postgres: include_str!("migrations/postgres/0005_generation.sql"),
    },
];

pub use crate::service::WriteAccess;

/// One stored configuration object: its JSON body plus the bookkeeping every object carries.
#[derive(Clone, Debug)]
pub struct ObjectRow {
    pub id: i64,
    pub kind: Kind,
    pub name: String,
    pub body: String,
    pub version: i64,
    pub managed: bool,
    pub protected: bool,
    pub created_at: String,
    pub updated_by: String,
    pub updated_at: String,
}

/// What a write stores for one object; the store fills in the id and the creation time.
#[derive(Clone, Debug)]
pub struct ObjectWrite<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub category: Option<&'a str>,
    pub addin: Option<&'a str>,
    pub body: String,
    pub managed: bool,
    pub protected: bool,
    pub updated_by: &'a str,
    pub updated_at: &'a str,
}

/// A stored bearer token, as authentication needs it.
#[derive(Clone, Debug)]
pub struct TokenRow {
    pub user: String,
    pub role: String,
}

/// One stored chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    pub id: i64,
    pub room_id: i64,
    pub author: String,
    pub body: String,
    pub posted_at: String,
    pub in_history: bool,
    pub replaced: bool,
    pub idempotency_key: Option<String>,
}

/// Which page of a room's history to read.
#[derive(Clone, Debug, Default)]
pub struct MessageQuery<'a> {
    /// Only messages with an id below this (older), newest first.
    pub before: Option<i64>,
    /// Only messages with an id above this (newer), oldest first.
    pub after: Option<i64>,
    pub limit: i64,
    /// Lower-cased words that must all appear in the text.
    pub words: &'a [String],
    /// Include messages kept for compliance only.
    pub include_hidden: bool,
}

/// One recorded change of a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomChangeRow {
    pub id: i64,
    pub room_id: i64,
    pub room_name: String,
    /// `created`, `changed` or `removed`.
    pub change: String,
    pub version: i64,
    pub changed_at: String,
}

/// How far the compliance archiver got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub last_message_id: i64,
    /// A batch recorded before its files were written: (first id, last id).
    pub pending: Option<(i64, i64)>,
    pub last_run_at: Option<String>,
}

/// A holder of a named lock.
#[derive(Clone, Debug)]
pub struct LockRow {
    pub holder: String,
    pub acquired_at: String,
    pub expires_at: i64,
}

/// A pool of connections to one database, schema migrated.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// An open write transaction; dropped without [`Tx::commit`] it rolls back.
pub struct Tx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    /// Set by every write of an object or a token; [`Tx::commit`] then bumps the generation,
    /// so no writer can forget to.
    changes_access: bool,
}

/// One page of the state as JSON (see [`Store::state_json_pages`]). Bodies are JSON objects
/// written by this program, never empty; only `updated_by` can hold characters to escape.
const STATE_PAGE_SQL: &str = r#"SELECT '[' || string_agg(
    substr(body, 1, length(body) - 1)
    || ',"kind":"' || kind || '"'
    || ',"id":' || CAST(id AS TEXT)
    || ',"version":' || CAST(version AS TEXT)
    || ',"managed":' || CASE WHEN managed <> 0 THEN 'true' ELSE 'false' END
    || ',"protect":' || CASE WHEN protected <> 0 THEN 'true' ELSE 'false' END
    || ',"createdAt":"' || created_at || '"'
    || ',"updatedBy":"' || replace(replace(updated_by, '\', '\\'), '"', '\"') || '"'
    || ',"updatedAt":"' || updated_at || '"}', ',') || ']', MAX(id), COUNT(*)
FROM (SELECT * FROM objects WHERE id > $1 ORDER BY id LIMIT $2) AS page"#;

const OBJECT_COLUMNS: &str =
    "id, kind, name, body, version, managed, protected, created_at, updated_by, updated_at";

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the database at `url`.
    ///
    /// # Errors
    /// An unsupported URL, an unreachable database, or a failed migration. A failed
    /// migration leaves the schema as it was: each migration is one transaction.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url).ok_or_else(|| StoreError::UnsupportedUrl {
            url: url.to_owned(),
        })?;
        let connect_url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let open_error = |source| StoreError::Open {
            url: url.to_owned(),
            source,
        };
        let options = AnyConnectOptions::from_str(&connect_url)
            .map_err(open_error)?
            .disable_statement_logging();
        let pool_options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; NORMAL syncs the WAL at
                        // checkpoints rather than every commit. A crash of the process loses
                        // nothing; a power cut may lose the last commits, never corrupt.
                        connection
                            .execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                    }
                    Ok(())
                })
            });
        let pool_options = match backend {
            Backend::Sqlite => pool_options.max_connections(4),
            Backend::Postgres => pool_options.max_connections(16),
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(open_error)?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection. On SQLite it first moves the write-ahead log into the database
    /// file, so that the next process to open it (a `plan` after an `apply`) reads the file
    /// rather than a large log.
    pub async fn close(&self) {
        if self.backend == Backend::Sqlite {
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
            {
                tracing::debug!(%error, "could not checkpoint the write-ahead log on close");
            }
        }
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut connection = self.pool.acquire().await?;
        // Several nodes may start at once: one migrates while the others wait on this lock.
        if self.backend == Backend::Postgres {
            connection
                .execute("SELECT pg_advisory_lock(7065726368)")
                .await?;
        }
        let result = self.migrate_locked(&mut connection).await;
        if self.backend == Backend::Postgres {
            connection
                .execute("SELECT pg_advisory_unlock(7065726368)")
                .await?;
        }
        result
    }

    async fn migrate_locked(&self, connection: &mut AnyConnection) -> Result<(), StoreError> {
        connection
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            .await?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *connection)
            .await?
            .try_get(0)?;
        let known = MIGRATIONS.last().map_or(0, |migration| migration.version);
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
            let sql = match self.backend {
                Backend::Sqlite => migration.sqlite,
                Backend::Postgres => migration.postgres,
            };
            let fail = |source| StoreError::Migrate {
                version: migration.version,
                source,
            };
            let mut tx = connection
                .begin_with(self.backend.begin_statement())
                .await
                .map_err(fail)?;
            sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(fail)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(migration.version)
                .bind(crate::clock::now())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            tracing::info!(version = migration.version, "migrated the database schema");
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Opens a write transaction. Only `service/` can make the [`WriteAccess`] it takes, so
    /// every write of the store goes through the service (ARCHITECTURE.md, invariant 1).
    pub async fn begin(&self, _access: WriteAccess) -> Result<Tx, StoreError> {
        let tx = self.pool.begin_with(self.backend.begin_statement()).await?;
        Ok(Tx {
            tx,
            backend: self.backend,
            changes_access: false,
        })
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

    /// Reads every configuration object in one consistent snapshot, as JSON text: pages that
    /// are JSON arrays of objects, each the stored body with `kind` and the bookkeeping fields
    /// (`id`, `version`, `managed`, `protect`, `createdAt`, `updatedBy`, `updatedAt`) added.
    ///
    /// The database writes the JSON itself, a page of rows at a time, so that reading a
    /// hundred thousand objects costs a few round trips and no parsing here.
    pub async fn state_json_pages(&self) -> Result<Vec<String>, StoreError> {
        const PAGE: i64 = 5_000;
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
        };
        let mut pages = Vec::new();
        let mut after = 0_i64;
        loop {
            let row = sqlx::query(STATE_PAGE_SQL)
                .bind(after)
                .bind(PAGE)
                .fetch_one(&mut *tx)
                .await?;
            let page: Option<String> = row.try_get(0)?;
            let last: Option<i64> = row.try_get(1)?;
            let count: i64 = row.try_get(2)?;
            if let Some(page) = page {
                pages.push(page);
            }
            match last {
                Some(last) if count == PAGE => after = last,
                _ => break,
            }
        }
        tx.commit().await?;
        Ok(pages)
    }

    /// The configuration generation: it grows with every committed change of an object or a
    /// token.
    pub async fn generation(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
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

    pub async fn token(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query("SELECT user_uri, role FROM tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(TokenRow {
                user: row.try_get(0)?,
                role: row.try_get(1)?,
            })
        })
        .transpose()
    }
}

impl Tx {
    pub async fn commit(mut self) -> Result<(), StoreError> {
        if self.changes_access {
            sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }

    /// Marks a point that [`Tx::rollback_to_savepoint`] returns to, so that one step of a
    /// batch can fail without undoing the steps before it.
    pub async fn savepoint(&mut self) -> Result<(), StoreError> {
        sqlx::query("SAVEPOINT step").execute(&mut *self.tx).await?;
        Ok(())
    }

    pub async fn release_savepoint(&mut self) -> Result<(), StoreError> {
        sqlx::query("RELEASE SAVEPOINT step")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn rollback_to_savepoint(&mut self) -> Result<(), StoreError> {
        sqlx::query("ROLLBACK TO SAVEPOINT step")
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("RELEASE SAVEPOINT step")
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Reads one object and, on PostgreSQL, locks it until the transaction ends.
    pub async fn get(&mut self, kind: Kind, name: &str) -> Result<Option<ObjectRow>, StoreError> {
        get_object(&mut self.tx, kind, name, self.backend.lock_clause()).await
    }

    /// Reads one object without locking it.
    pub async fn read(&mut self, kind: Kind, name: &str) -> Result<Option<ObjectRow>, StoreError> {
        get_object(&mut self.tx, kind, name, "").await
    }

    pub async fn list(&mut self, kind: Kind) -> Result<Vec<ObjectRow>, StoreError> {
        list_objects(&mut self.tx, kind).await
    }

    /// The names of the rooms in a category, ordered.
    pub async fn rooms_in_category(&mut self, category: &str) -> Result<Vec<String>, StoreError> {
        self.names_where("category", category).await
    }

    /// The names of the rooms that show an add-in, ordered.
    pub async fn rooms_using_addin(&mut self, addin: &str) -> Result<Vec<String>, StoreError> {
        self.names_where("addin", addin).await
    }

    async fn names_where(&mut self, column: &str, value: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT name FROM objects WHERE kind = 'Room' AND {column} = $1 ORDER BY name"
        ))
        .bind(value)
        .fetch_all(&mut *self.tx)
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
        let row = sqlx::query(&format!(
            "INSERT INTO objects (kind, name, category, addin, body, version, managed, protected, created_at, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $9, $7, $8, $7) \
             ON CONFLICT (kind, name) DO NOTHING RETURNING {OBJECT_COLUMNS}"
        ))
        .bind(write.kind.as_str())
        .bind(write.name)
        .bind(write.category)
        .bind(write.addin)
        .bind(&write.body)
        .bind(i64::from(write.managed))
        .bind(write.updated_at)
        .bind(write.updated_by)
        .bind(i64::from(write.protected))
        .fetch_optional(&mut *self.tx)
        .await?;
        match row {
            Some(row) => object_from_row(&row),
            None => Err(StoreError::Duplicate {
                kind: write.kind,
                name: write.name.to_owned(),
            }),
        }
    }

    /// Stores a new object with the id and times it had elsewhere (used by import).
    pub async fn insert_exact(
        &mut self,
        id: i64,
        write: ObjectWrite<'_>,
        version: i64,
        created_at: &str,
    ) -> Result<(), StoreError> {
        self.changes_access = true;
        sqlx::query(
            "INSERT INTO objects (id, kind, name, category, addin, body, version, managed, created_at, updated_by, updated_at, protected) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(id)
        .bind(write.kind.as_str())
        .bind(write.name)
        .bind(write.category)
        .bind(write.addin)
        .bind(&write.body)
        .bind(version)
        .bind(i64::from(write.managed))
        .bind(created_at)
        .bind(write.updated_by)
        .bind(write.updated_at)
        .bind(i64::from(write.protected))
        .execute(&mut *self.tx)
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
        let taken = sqlx::query("SELECT 1 FROM objects WHERE kind = $1 AND name = $2 AND id <> $3")
            .bind(write.kind.as_str())
            .bind(write.name)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Duplicate {
                kind: write.kind,
                name: write.name.to_owned(),
            });
        }
        let row = sqlx::query(&format!(
            "UPDATE objects SET name = $2, category = $3, addin = $4, body = $5, version = version + 1, \
             managed = $6, updated_by = $7, updated_at = $8, protected = $9 WHERE id = $1 RETURNING {OBJECT_COLUMNS}"
        ))
        .bind(id)
        .bind(write.name)
        .bind(write.category)
        .bind(write.addin)
        .bind(&write.body)
        .bind(i64::from(write.managed))
        .bind(write.updated_by)
        .bind(write.updated_at)
        .bind(i64::from(write.protected))
        .fetch_one(&mut *self.tx)
        .await?;
        object_from_row(&row)
    }

    pub async fn delete(&mut self, id: i64) -> Result<(), StoreError> {
        self.changes_access = true;
        sqlx::query("DELETE FROM objects WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn insert_token(
        &mut self,
        hash: &str,
        user: &str,
        role: &str,
        created_at: &str,
    ) -> Result<(), StoreError> {
        self.changes_access = true;
        sqlx::query(
            "INSERT INTO tokens (hash, user_uri, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(user)
        .bind(role)
        .bind(created_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Stores a message. With an idempotency key already used by the same author, stores
    /// nothing and returns the message stored the first time.
    pub async fn insert_message(
        &mut self,
        room_id: i64,
        author: &str,
        body: &str,
        posted_at: &str,
        in_history: bool,
        idempotency_key: Option<&str>,
    ) -> Result<(MessageRow, bool), StoreError> {
        if self.backend == Backend::Postgres {
            // PostgreSQL hands out ids before commit, so concurrent posts could commit out of
            // id order and a live stream reading "after id N" would skip one. Posts take turns
            // for the moment of their insert and commit instead; SQLite's single writer
            // already does.
            sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(7065726369)) AS turn")
                .fetch_one(&mut *self.tx)
                .await?;
        }
        if let Some(key) = idempotency_key {
            let existing = sqlx::query(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE author = $1 AND idempotency_key = $2"
            ))
            .bind(author)
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?;
            if let Some(row) = existing {
                return Ok((message_from_row(&row)?, false));
            }
        }
        let row = sqlx::query(&format!(
            "INSERT INTO messages (room_id, author, body, posted_at, in_history, idempotency_key) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {MESSAGE_COLUMNS}"
        ))
        .bind(room_id)
        .bind(author)
        .bind(body)
        .bind(posted_at)
        .bind(i64::from(in_history))
        .bind(idempotency_key)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok((message_from_row(&row)?, true))
    }

    /// Stores messages as they were elsewhere, ids and times included (import, seeding).
    pub async fn insert_messages_exact(
        &mut self,
        messages: &[MessageRow],
    ) -> Result<(), StoreError> {
        // Several rows per statement: an import of millions of messages is bound by round trips.
        for chunk in messages.chunks(100) {
            let mut sql = String::from(
                "INSERT INTO messages (id, room_id, author, body, posted_at, in_history, replaced, idempotency_key) VALUES ",
            );
            for index in 0..chunk.len() {
                let base = index * 8;
                if index > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    base + 1,
                    base + 2,
                    base + 3,
                    base + 4,
                    base + 5,
                    base + 6,
                    base + 7,
                    base + 8
                ));
            }
            let mut statement = sqlx::query(&sql);
            for message in chunk {
                statement = statement
                    .bind(message.id)
                    .bind(message.room_id)
                    .bind(&message.author)
                    .bind(&message.body)
                    .bind(&message.posted_at)
                    .bind(i64::from(message.in_history))
                    .bind(i64::from(message.replaced))
                    .bind(&message.idempotency_key);
            }
            statement.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Which of these message ids are taken.
    pub async fn existing_message_ids(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let mut taken = Vec::new();
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "SELECT id FROM messages WHERE id IN ({})",
                placeholders.join(",")
            );
            let mut statement = sqlx::query(&sql);
            for id in chunk {
                statement = statement.bind(*id);
            }
            for row in statement.fetch_all(&mut *self.tx).await? {
                taken.push(row.try_get(0)?);
            }
        }
        Ok(taken)
    }

    pub async fn delete_messages(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "DELETE FROM messages WHERE id IN ({})",
                placeholders.join(",")
            );
            let mut statement = sqlx::query(&sql);
            for id in chunk {
                statement = statement.bind(*id);
            }
            statement.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// The object holding this id, if any.
    pub async fn object_by_id(&mut self, id: i64) -> Result<Option<ObjectRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(object_from_row).transpose()
    }

    /// After rows were stored with their own ids, moves PostgreSQL's id sequences past them
    /// (SQLite does this by itself).
    pub async fn sync_id_sequences(&mut self) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            for table in ["objects", "messages"] {
                let sql = format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))"
                );
                sqlx::query(&sql).execute(&mut *self.tx).await?;
            }
        }
        Ok(())
    }

    /// Deletes a room's messages posted at or before `end` (inclusive); returns how many.
    pub async fn clear_messages(&mut self, room_id: i64, end: &str) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM messages WHERE room_id = $1 AND posted_at <= $2")
            .bind(room_id)
            .bind(end)
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected())
    }

    /// A room's messages, optionally by one author and within a window, oldest first.
    pub async fn room_messages(
        &mut self,
        room_id: i64,
        author: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 \
             AND ($2 IS NULL OR author = $2) AND ($3 IS NULL OR posted_at >= $3) \
             AND ($4 IS NULL OR posted_at <= $4) ORDER BY id"
        ))
        .bind(room_id)
        .bind(author)
        .bind(start)
        .bind(end)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    pub async fn delete_message(&mut self, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn replace_message(&mut self, id: i64, body: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET body = $2, replaced = 1 WHERE id = $1")
            .bind(id)
            .bind(body)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn delete_room_messages(&mut self, room_id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM messages WHERE room_id = $1")
            .bind(room_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Reads the archiver's checkpoint (locked on PostgreSQL).
    pub async fn checkpoint(&mut self, name: &str) -> Result<Checkpoint, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT last_message_id, pending_first, pending_last, last_run_at FROM archive_checkpoint WHERE name = $1{}",
            self.backend.lock_clause()
        ))
        .bind(name)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(row) = row else {
            return Ok(Checkpoint::default());
        };
        let first: Option<i64> = row.try_get(1)?;
        let last: Option<i64> = row.try_get(2)?;
        Ok(Checkpoint {
            last_message_id: row.try_get(0)?,
            pending: first.zip(last),
            last_run_at: row.try_get(3)?,
        })
    }

    pub async fn save_checkpoint(
        &mut self,
        name: &str,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO archive_checkpoint (name, last_message_id, pending_first, pending_last, last_run_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET last_message_id = $2, \
             pending_first = $3, pending_last = $4, last_run_at = $5",
        )
        .bind(name)
        .bind(checkpoint.last_message_id)
        .bind(checkpoint.pending.map(|(first, _)| first))
        .bind(checkpoint.pending.map(|(_, last)| last))
        .bind(&checkpoint.last_run_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// The id of the `limit`-th message after `after` (or the last one), for sizing a batch.
    pub async fn batch_end(&mut self, after: i64, limit: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(id) FROM (SELECT id FROM messages WHERE id > $1 ORDER BY id LIMIT $2) AS batch")
            .bind(after)
            .bind(limit)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Records a change of a room for live streams, in commit order.
    pub async fn insert_room_change(
        &mut self,
        room_id: i64,
        room_name: &str,
        change: &str,
        version: i64,
        at: &str,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            // As for messages: ids must commit in order for "after id N" to miss nothing.
            sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(7065726370)) AS turn")
                .fetch_one(&mut *self.tx)
                .await?;
        }
        sqlx::query("INSERT INTO room_changes (room_id, room_name, change, version, changed_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(room_id)
            .bind(room_name)
            .bind(change)
            .bind(version)
            .bind(at)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Takes the named lock for `holder` unless someone else holds an unexpired one.
    ///
    /// Returns the current holder when the lock is taken by another.
    pub async fn acquire_lock(
        &mut self,
        name: &str,
        holder: &str,
        now: &str,
        now_seconds: i64,
        expires_at: i64,
    ) -> Result<Option<LockRow>, StoreError> {
        let existing = sqlx::query(&format!(
            "SELECT holder, acquired_at, expires_at FROM locks WHERE name = $1{}",
            self.backend.lock_clause()
        ))
        .bind(name)
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some(row) = existing {
            let current = LockRow {
                holder: row.try_get(0)?,
                acquired_at: row.try_get(1)?,
                expires_at: row.try_get(2)?,
            };
            if current.holder != holder && current.expires_at > now_seconds {
                return Ok(Some(current));
            }
        }
        sqlx::query(
            "INSERT INTO locks (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, acquired_at = $3, expires_at = $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(None)
    }

    /// Who holds the named lock, if anyone holds it unexpired.
    pub async fn lock_holder(
        &mut self,
        name: &str,
        now_seconds: i64,
    ) -> Result<Option<LockRow>, StoreError> {
        let row = sqlx::query(
            "SELECT holder, acquired_at, expires_at FROM locks WHERE name = $1 AND expires_at > $2",
        )
        .bind(name)
        .bind(now_seconds)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|row| {
            Ok(LockRow {
                holder: row.try_get(0)?,
                acquired_at: row.try_get(1)?,
                expires_at: row.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Every stored token, as hashes (for moving a server).
    pub async fn tokens(&mut self) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT hash, user_uri, role, created_at FROM tokens ORDER BY created_at")
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                ))
            })
            .collect()
    }

    /// Deletes a token by its hash; returns whether there was one.
    pub async fn delete_token(&mut self, hash: &str) -> Result<bool, StoreError> {
        self.changes_access = true;
        let result = sqlx::query("DELETE FROM tokens WHERE hash = $1")
            .bind(hash)
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Releases the named lock if `holder` holds it; returns whether it did.
    pub async fn release_lock(&mut self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM locks WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&mut *self.tx)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

const MESSAGE_COLUMNS: &str =
    "id, room_id, author, body, posted_at, in_history, replaced, idempotency_key";

fn message_from_row(row: &AnyRow) -> Result<MessageRow, StoreError> {
    Ok(MessageRow {
        id: row.try_get(0)?,
        room_id: row.try_get(1)?,
        author: row.try_get(2)?,
        body: row.try_get(3)?,
        posted_at: row.try_get(4)?,
        in_history: row.try_get::<i64, _>(5)? != 0,
        replaced: row.try_get::<i64, _>(6)? != 0,
        idempotency_key: row.try_get(7)?,
    })
}

/// `%word%` for `LIKE ... ESCAPE '\'`, with the pattern characters in `word` escaped.
fn like_pattern(word: &str) -> String {
    let mut pattern = String::with_capacity(word.len() + 2);
    pattern.push('%');
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// Reads a page of a room's messages, returned oldest first.
    pub async fn messages(
        &self,
        room_id: i64,
        query: &MessageQuery<'_>,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1");
        let mut next = 2;
        if !query.include_hidden {
            sql.push_str(" AND in_history = 1");
        }
        if query.before.is_some() {
            sql.push_str(&format!(" AND id < ${next}"));
            next += 1;
        }
        if query.after.is_some() {
            sql.push_str(&format!(" AND id > ${next}"));
            next += 1;
        }
        for _ in query.words {
            sql.push_str(&format!(" AND lower(body) LIKE ${next} ESCAPE '\\'"));
            next += 1;
        }
        let ascending = query.after.is_some() && query.before.is_none();
        sql.push_str(if ascending {
            " ORDER BY id ASC"
        } else {
            " ORDER BY id DESC"
        });
        sql.push_str(&format!(" LIMIT ${next}"));
        let mut statement = sqlx::query(&sql).bind(room_id);
        if let Some(before) = query.before {
            statement = statement.bind(before);
        }
        if let Some(after) = query.after {
            statement = statement.bind(after);
        }
        for word in query.words {
            statement = statement.bind(like_pattern(word));
        }
        let rows = statement.bind(query.limit).fetch_all(&self.pool).await?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if !ascending {
            messages.reverse();
        }
        Ok(messages)
    }

    /// Every message with an id above `after`, oldest first, at most `limit` (for live events).
    pub async fn messages_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
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

    /// Every message with an id in `first..=last`, in order, history or not (for compliance).
    pub async fn messages_between(
        &self,
        first: i64,
        last: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id >= $1 AND id <= $2 ORDER BY id"
        ))
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// A room's messages posted at or after `since` (all when `None`), oldest first.
    pub async fn room_history(
        &self,
        room_id: i64,
        since: Option<&str>,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND ($2 IS NULL OR posted_at >= $2) ORDER BY id"
        ))
        .bind(room_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// Refreshes the planner's statistics after a bulk load (PostgreSQL; SQLite needs none for
    /// the queries Perch runs).
    pub async fn analyze(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("ANALYZE objects").execute(&self.pool).await?;
            sqlx::query("ANALYZE messages").execute(&self.pool).await?;
        }
        Ok(())
    }

    /// How many objects and messages the database holds.
    pub async fn counts(&self) -> Result<(i64, i64), StoreError> {
        let objects: i64 = sqlx::query("SELECT COUNT(*) FROM objects")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let messages: i64 = sqlx::query("SELECT COUNT(*) FROM messages")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok((objects, messages))
    }

    /// Room changes with an id above `after`, oldest first.
    pub async fn room_changes_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RoomChangeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, room_id, room_name, change, version, changed_at FROM room_changes WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RoomChangeRow {
                    id: row.try_get(0)?,
                    room_id: row.try_get(1)?,
                    room_name: row.try_get(2)?,
                    change: row.try_get(3)?,
                    version: row.try_get(4)?,
                    changed_at: row.try_get(5)?,
                })
            })
            .collect()
    }

    /// The highest room change id, 0 when there are none.
    pub async fn last_room_change_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM room_changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The highest message id, 0 when there are none.
    pub async fn last_message_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM messages")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}

async fn get_object(
    connection: &mut AnyConnection,
    kind: Kind,
    name: &str,
    lock_clause: &str,
) -> Result<Option<ObjectRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {OBJECT_COLUMNS} FROM objects WHERE kind = $1 AND name = $2{lock_clause}"
    ))
    .bind(kind.as_str())
    .bind(name)
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
    let kind_text: String = row.try_get(1)?;
    let name: String = row.try_get(2)?;
    let kind = Kind::parse(&kind_text).ok_or_else(|| StoreError::Corrupt {
        kind: Kind::Room,
        name: name.clone(),
        message: format!("unknown kind `{kind_text}`"),
    })?;
    Ok(ObjectRow {
        id: row.try_get(0)?,
        kind,
        name,
        body: row.try_get(3)?,
        version: row.try_get(4)?,
        managed: row.try_get::<i64, _>(5)? != 0,
        protected: row.try_get::<i64, _>(6)? != 0,
        created_at: row.try_get(7)?,
        updated_by: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    })
}
