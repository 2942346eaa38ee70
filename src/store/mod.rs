//! Durable storage: one SQLite file by default, PostgreSQL when several nodes share a database.
//!
//! Invariants: only `service/` calls this module's writers, and every write happens inside a
//! [`Tx`] that the caller commits or drops. The same SQL text runs on both backends (numbered
//! `$N` parameters, `BIGINT` and `TEXT` columns only); where the dialects differ, [`Backend`]
//! says how. Migrations live per backend under `migrations/`.

use std::str::FromStr;

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

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
    /// A text held a character the database cannot store: PostgreSQL refuses NUL (U+0000).
    #[error("a text holds a NUL character (U+0000), which the database cannot store")]
    UnstorableText(#[source] sqlx::Error),
    #[error("database error")]
    Other(#[source] sqlx::Error),
    #[error("{0}")]
    Unsupported(String),
    /// The database answered what Perch cannot square with what it asked.
    #[error("the database answered inconsistently: {0}")]
    Inconsistent(String),
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
            // PostgreSQL's character_not_in_repertoire: a NUL in a bound text (a name looked
            // up, a field no rule covers). The request was at fault, not the server.
            if db.code().as_deref() == Some("22021") {
                return StoreError::UnstorableText(error);
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
    /// Appends `(.., ..), (.., ..)`: `rows` rows of `columns` placeholders each, for values
    /// bound in that order, and they must be the statement's first placeholders. On
    /// PostgreSQL they are `$1, $2, ...`. On SQLite they are `?`: there a `$N` is a name,
    /// which binding looks up by a walk over all of the statement's names, so a multi-row
    /// statement of `$N`s cost the square of its values to bind (a tenth of a large apply
    /// at 32 rows of 12). A `$N` after them (N counting on from them) still works on both.
    pub(crate) fn push_placeholders(self, sql: &mut String, rows: usize, columns: usize) {
        use std::fmt::Write as _;
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..columns {
                if column > 0 {
                    sql.push_str(", ");
                }
                match self {
                    Backend::Sqlite => sql.push('?'),
                    Backend::Postgres => {
                        let _ = write!(sql, "${}", row * columns + column + 1);
                    }
                }
            }
            sql.push(')');
        }
    }

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

    /// A lock that holds off every change of the rows read but not other readers with the
    /// same lock: writers judged on the same rows (posts) never wait for one another.
    fn share_clause(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR SHARE",
        }
    }
}

/// The PostgreSQL advisory locks Perch takes, each with its key ("perch" in ASCII, then one
/// more digit): one place, so that no two uses share a key by accident.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AdvisoryLock {
    /// Held while migrations run, so that nodes starting together migrate once.
    Migrations,
    /// Held for the instant a message is inserted, so that ids commit in order.
    MessageIds,
    /// Held for the instant a room change is inserted, for the same reason.
    RoomChangeIds,
}

impl AdvisoryLock {
    fn key(self) -> i64 {
        match self {
            AdvisoryLock::Migrations => 7_065_726_368,
            AdvisoryLock::MessageIds => 7_065_726_369,
            AdvisoryLock::RoomChangeIds => 7_065_726_370,
        }
    }

    fn lock_sql(self) -> String {
        format!("SELECT pg_advisory_lock({})", self.key())
    }

    fn unlock_sql(self) -> String {
        format!("SELECT pg_advisory_unlock({})", self.key())
    }

    /// Takes the lock until the transaction ends; a query that returns one row, as `Any` needs.
    fn transaction_lock_sql(self) -> String {
        format!(
            "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock({})) AS turn",
            self.key()
        )
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
    Migration {
        version: 6,
        sqlite: include_str!("migrations/sqlite/0006_compliance_audit.sql"),
        postgres: include_str!("migrations/postgres/0006_compliance_audit.sql"),
    },
    Migration {
        version: 7,
        sqlite: include_str!("migrations/sqlite/0007_token_lifetimes.sql"),
        postgres: include_str!("migrations/postgres/0007_token_lifetimes.sql"),
    },
    Migration {
        version: 8,
        sqlite: include_str!("migrations/sqlite/0008_name_keys.sql"),
        postgres: include_str!("migrations/postgres/0008_name_keys.sql"),
    },
    Migration {
        version: 9,
        sqlite: include_str!("migrations/sqlite/0009_web_sessions_applied.sql"),
        postgres: include_str!("migrations/postgres/0009_web_sessions_applied.sql"),
    },
    Migration {
        version: 10,
        sqlite: include_str!("migrations/sqlite/0010_partial_idempotency_index.sql"),
        postgres: include_str!("migrations/postgres/0010_partial_idempotency_index.sql"),
    },
    Migration {
        version: 11,
        sqlite: include_str!("migrations/sqlite/0011_objects_without_name_key.sql"),
        postgres: include_str!("migrations/postgres/0011_objects_without_name_key.sql"),
    },
];

mod audit;
mod backup;
mod compliance;
mod leases;
mod messages;
mod objects;
mod sessions;
mod tokens;

pub use audit::{AuditQuery, AuditRow};
pub use backup::{Cell, ColumnType, Snapshot, Table};
pub use compliance::{ComplianceEventRow, NewComplianceEvent};
pub use leases::{Checkpoint, LockRow};
pub use messages::{LogPosition, LogRead, MessageQuery, MessageRow, NewMessage, RoomChangeRow};
pub use objects::{ObjectRow, ObjectWrite, RoomReference, RoomScan, RowLock};
pub use sessions::{AppliedRow, SessionRow};
pub use tokens::TokenRow;

pub use crate::service::WriteAccess;

/// See [`Store::pool_status`].
#[derive(Clone, Copy, Debug)]
pub struct PoolStatus {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// A pool of connections to one database, schema migrated.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// SQLite: the one connection this process writes through (see [`SqliteWriter`]).
    writer: Option<SqliteWriter>,
    backend: Backend,
    url: ConnectUrl,
    /// The SQLite file this store created when it opened, if it did.
    created: Option<std::path::PathBuf>,
}

/// The one connection a SQLite store writes through, outside the pool, held by one write
/// transaction at a time.
///
/// The process's writers queue in order for it rather than meet on SQLite's write lock,
/// whose busy handler sleeps a millisecond or more before it tries again; the connection
/// keeps its page cache between writes; and handing it on costs nothing, where the pool
/// returns a connection through a task of its own and a round trip to the connection's
/// worker thread (a ping), which the next writer waited for.
///
/// Its commits never checkpoint (move the write-ahead log into the database file): a task
/// beside it does, on a connection of the pool, while the writer goes on. A checkpoint syncs
/// the file, and a post that waited for it waited tens of milliseconds.
#[derive(Clone, Debug)]
struct SqliteWriter {
    slot: std::sync::Arc<tokio::sync::Mutex<Option<WriterSlot>>>,
    /// Told of every commit; the checkpointer waits for it, and ends when every clone of the
    /// writer is gone (the store was dropped) or the pool is closed.
    committed: tokio::sync::mpsc::Sender<()>,
}

/// How long a writer waits for the writer connection before it is told the database is busy
/// (the pool's wait for a connection).
const WRITER_WAIT: Duration = Duration::from_secs(30);

/// How long the checkpointer lets commits gather before it moves them into the database file:
/// about as often as SQLite would (every 1,000 pages) under a steady load of posts.
const CHECKPOINT_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct WriterSlot {
    connection: AnyConnection,
    /// A transaction began and was neither committed nor rolled back (its [`Tx`] was
    /// dropped, or its commit failed): the next writer rolls it back first.
    open: bool,
}

/// The connection a write transaction runs on.
enum TxConnection {
    /// PostgreSQL: a transaction on a connection of the pool.
    Pooled(sqlx::Transaction<'static, sqlx::Any>),
    /// SQLite: the store's writer, `BEGIN IMMEDIATE` sent.
    Writer(WriterGuard),
}

/// The writer, held by one transaction.
struct WriterGuard {
    slot: tokio::sync::OwnedMappedMutexGuard<Option<WriterSlot>, WriterSlot>,
    writer: SqliteWriter,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if !self.slot.open {
            return;
        }
        // Dropped without a commit: roll back now, not at this process's next write. Until
        // then SQLite's write lock stays taken, and other processes (a `perch ... --db`
        // beside the server) wait for it. Without a runtime, the next writer rolls back.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let writer = self.writer.clone();
            runtime.spawn(async move { writer.roll_back_if_open().await });
        }
    }
}

impl std::ops::Deref for TxConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            TxConnection::Pooled(transaction) => transaction,
            TxConnection::Writer(guard) => &guard.slot.connection,
        }
    }
}

impl std::ops::DerefMut for TxConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            TxConnection::Pooled(transaction) => transaction,
            TxConnection::Writer(guard) => &mut guard.slot.connection,
        }
    }
}

impl SqliteWriter {
    /// Opens the writer's connection and starts its checkpointer on `pool`.
    async fn open(
        options: &AnyConnectOptions,
        synchronous: SqliteSynchronous,
        pool: &AnyPool,
    ) -> Result<SqliteWriter, sqlx::Error> {
        let mut connection = options.connect().await?;
        connection
            .execute(
                format!(
                    "{} PRAGMA wal_autocheckpoint = 0;",
                    sqlite_pragmas(synchronous)
                )
                .as_str(),
            )
            .await?;
        let (committed, commits) = tokio::sync::mpsc::channel(1);
        let writer = SqliteWriter {
            slot: std::sync::Arc::new(tokio::sync::Mutex::new(Some(WriterSlot {
                connection,
                open: false,
            }))),
            committed,
        };
        tokio::spawn(checkpoint_behind(pool.clone(), commits));
        Ok(writer)
    }

    async fn begin(&self) -> Result<TxConnection, StoreError> {
        // As long as the pool would wait for a connection: then busy, never a hang.
        let slot = tokio::time::timeout(WRITER_WAIT, self.slot.clone().lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        let Ok(mut slot) = tokio::sync::OwnedMutexGuard::try_map(slot, Option::as_mut) else {
            return Err(sqlx::Error::PoolClosed.into());
        };
        slot.roll_back_if_open().await;
        // Marked before it is sent: SQLite runs it even if this future is dropped meanwhile
        // (a client that went away), and the next writer must then roll it back.
        slot.open = true;
        slot.connection.execute("BEGIN IMMEDIATE").await?;
        Ok(TxConnection::Writer(WriterGuard {
            slot,
            writer: self.clone(),
        }))
    }

    async fn roll_back_if_open(&self) {
        if let Some(slot) = self.slot.lock().await.as_mut() {
            slot.roll_back_if_open().await;
        }
    }

    async fn close(&self) {
        if let Some(mut slot) = self.slot.lock().await.take() {
            slot.roll_back_if_open().await;
            let _ = slot.connection.close().await;
        }
        // The checkpointer wakes, finds the pool closed, and ends.
        let _ = self.committed.try_send(());
    }
}

/// Checkpoints the write-ahead log a while after the writer commits, until `pool` closes.
/// `PASSIVE` waits for nobody: the writer appends to the log meanwhile, and what a reader
/// still needs stays in it for the next checkpoint.
async fn checkpoint_behind(pool: AnyPool, mut commits: tokio::sync::mpsc::Receiver<()>) {
    while commits.recv().await.is_some() {
        if pool.is_closed() {
            return;
        }
        tokio::time::sleep(CHECKPOINT_AFTER).await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(%error, "could not checkpoint the write-ahead log");
        }
    }
}

impl WriterSlot {
    /// Ends the open transaction with `statement` (`COMMIT` or `ROLLBACK`); if that fails it
    /// stays open, for the next writer to roll back.
    async fn end(&mut self, statement: &str) -> Result<(), sqlx::Error> {
        self.connection.execute(statement).await?;
        self.open = false;
        Ok(())
    }

    async fn roll_back_if_open(&mut self) {
        if self.open {
            // SQLite may have ended it already (some errors roll back on their own); then
            // there is nothing to roll back and the error says so.
            let _ = self.connection.execute("ROLLBACK").await;
            self.open = false;
        }
    }
}

impl TxConnection {
    async fn commit(self) -> Result<(), StoreError> {
        match self {
            TxConnection::Pooled(transaction) => transaction.commit().await?,
            TxConnection::Writer(mut guard) => {
                guard.slot.end("COMMIT").await?;
                // Full: a checkpoint is due already.
                let _ = guard.writer.committed.try_send(());
            }
        }
        Ok(())
    }

    async fn rollback(self) -> Result<(), StoreError> {
        match self {
            TxConnection::Pooled(transaction) => transaction.rollback().await?,
            TxConnection::Writer(mut guard) => guard.slot.end("ROLLBACK").await?,
        }
        Ok(())
    }
}

/// An open write transaction; dropped without [`Tx::commit`] it rolls back.
pub struct Tx {
    inner: TxConnection,
    backend: Backend,
    /// Set by every write of an object or a token; [`Tx::commit`] then bumps the generation,
    /// so no writer can forget to.
    changes_access: bool,
    /// Set by every insert a live stream reads (a message, a room change); with
    /// `changes_access`, [`Tx::commit`] then tells the other nodes (PostgreSQL).
    wakes_streams: bool,
    /// This transaction holds the turn for message ids (PostgreSQL): see
    /// [`Tx::take_message_id_turn`].
    holds_message_id_turn: bool,
    /// A statement of this transaction already announced it on [`CHANGES_CHANNEL`]
    /// (PostgreSQL): see [`ANNOUNCE`].
    announced: bool,
}

/// [`CHANGES_CHANNEL`]'s name, for the SQL text that must spell it.
macro_rules! changes_channel {
    () => {
        "perch_changes"
    };
}

/// The PostgreSQL channel on which a commit that live streams care about is announced: a
/// message, a room change, or a change of an object or token (access is judged anew).
pub(crate) const CHANGES_CHANNEL: &str = changes_channel!();

/// [`ANNOUNCE`]'s text, for the SQL that holds it.
macro_rules! announce {
    () => {
        concat!(
            "(SELECT CAST(pg_notify('",
            changes_channel!(),
            "', '') AS TEXT))"
        )
    };
}

/// A scalar subquery that announces the transaction on [`CHANGES_CHANNEL`], for a statement's
/// `RETURNING` list (PostgreSQL): evaluated once, with the first row the statement returns (a
/// statement that returns none announces nothing), and delivered to every listening node
/// when, and only if, the transaction commits, as a `NOTIFY` of its own would be; it saves
/// that statement's round trip.
pub(crate) const ANNOUNCE: &str = announce!();

/// The commit's bump of the generation, announcing the transaction (PostgreSQL).
const BUMP_GENERATION_AND_ANNOUNCE: &str = concat!(
    "UPDATE generation SET value = value + 1 WHERE id = 1 RETURNING ",
    announce!()
);

/// A database URL, kept to open the notification connection, never printed (it may hold a
/// password).
#[derive(Clone)]
struct ConnectUrl(std::sync::Arc<str>);

impl std::fmt::Debug for ConnectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectUrl(..)")
    }
}

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
        // Read before the file is made: a URL refused here leaves nothing behind.
        let (base_url, synchronous) = match backend {
            Backend::Sqlite => sqlite_synchronous(url)?,
            Backend::Postgres => (url.to_owned(), SqliteSynchronous::Normal),
        };
        let created = if backend == Backend::Sqlite {
            create_private_database(url)
        } else {
            None
        };
        let connect_url = if backend == Backend::Sqlite && !base_url.contains("mode=") {
            let separator = if base_url.contains('?') { '&' } else { '?' };
            format!("{base_url}{separator}mode=rwc")
        } else {
            base_url
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
                        connection
                            .execute(sqlite_pragmas(synchronous).as_str())
                            .await?;
                    }
                    Ok(())
                })
            });
        let pool_options = match backend {
            // A SQLite connection is a file handle in this process: nothing on the way can
            // break it, and the ping sqlx sends before handing one out cost a round trip to
            // its worker thread (two context switches) for every statement on the pool.
            Backend::Sqlite => pool_options.max_connections(4).test_before_acquire(false),
            Backend::Postgres => pool_options.max_connections(16),
        };
        let pool = pool_options
            .connect_with(options.clone())
            .await
            .map_err(open_error)?;
        let writer = match backend {
            Backend::Sqlite => Some(
                SqliteWriter::open(&options, synchronous, &pool)
                    .await
                    .map_err(open_error)?,
            ),
            Backend::Postgres => None,
        };
        let store = Store {
            pool,
            writer,
            backend,
            url: ConnectUrl(url.into()),
            created,
        };
        store.migrate().await?;
        store.backfill_name_keys().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection. On SQLite it first moves the write-ahead log into the database
    /// file, so that the next process to open it (a `plan` after an `apply`) reads the file
    /// rather than a large log.
    pub async fn close(&self) {
        // The writer first: it waits for the transaction that holds it, rolls back one left
        // open, and nothing is written after the checkpoint.
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        if self.backend == Backend::Sqlite
            && let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
        {
            tracing::debug!(%error, "could not checkpoint the write-ahead log on close");
        }
        self.pool.close().await;
    }

    async fn close_connections(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut connection = self.pool.acquire().await?;
        // Several nodes may start at once: one migrates while the others wait on this lock.
        if self.backend == Backend::Postgres {
            connection
                .execute(AdvisoryLock::Migrations.lock_sql().as_str())
                .await?;
        }
        let result = self.migrate_locked(&mut connection).await;
        if self.backend == Backend::Postgres {
            connection
                .execute(AdvisoryLock::Migrations.unlock_sql().as_str())
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

    /// Closes the store and removes the SQLite file it created on opening (with its log), for
    /// a command that failed and should leave nothing new behind. A store that opened an
    /// existing database only closes.
    pub async fn close_and_discard_if_new(&self) {
        self.close_connections().await;
        if let Some(path) = &self.created {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
        }
    }

    /// How the connection pool is used: (open, idle, most allowed).
    pub fn pool_status(&self) -> PoolStatus {
        PoolStatus {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    /// A connection that hears every commit live streams care about ([`CHANGES_CHANNEL`]), on
    /// PostgreSQL; `None` on SQLite, where one process writes.
    ///
    /// # Errors
    /// The database refusing the connection or the `LISTEN`.
    pub async fn listen_for_changes(
        &self,
    ) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.url.0)?
            .application_name("perch-listener")
            .disable_statement_logging();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options);
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        Ok(Some(listener))
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Opens a write transaction. Only `service/` can make the [`WriteAccess`] it takes, so
    /// every write of the store goes through the service (ARCHITECTURE.md, invariant 1).
    pub async fn begin(&self, _access: WriteAccess) -> Result<Tx, StoreError> {
        let inner = match &self.writer {
            Some(writer) => writer.begin().await?,
            None => {
                TxConnection::Pooled(self.pool.begin_with(self.backend.begin_statement()).await?)
            }
        };
        Ok(Tx {
            inner,
            backend: self.backend,
            changes_access: false,
            wakes_streams: false,
            holds_message_id_turn: false,
            announced: false,
        })
    }

    /// The generation, how many objects there are and the largest id ever stored, in one
    /// read: see `api::wire::ChangeCounter`.
    pub async fn change_counter(&self) -> Result<(i64, i64, i64), StoreError> {
        let row = sqlx::query(
            // Three subqueries, each answered its own fastest way: together, MAX(id) made
            // SQLite read an index to the end beside the count (16 ms against 3 at 100,000
            // objects).
            "SELECT (SELECT value FROM generation WHERE id = 1), \
             (SELECT COUNT(*) FROM objects), (SELECT COALESCE(MAX(id), 0) FROM objects)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
    }

    /// The configuration generation: it grows with every committed change of an object or a
    /// token.
    pub async fn generation(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}

/// What every SQLite connection sets first. WAL lets readers run beside the writer; NORMAL
/// syncs the WAL at checkpoints rather than every commit: a crash of the process loses
/// nothing; a power cut may lose the last commits, never corrupt. `?synchronous=full` syncs
/// every commit.
fn sqlite_pragmas(synchronous: SqliteSynchronous) -> String {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; \
         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
        synchronous.pragma()
    )
}

/// How often SQLite syncs its write-ahead log to disk: `?synchronous=normal` (the default) or
/// `?synchronous=full` in a SQLite URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SqliteSynchronous {
    /// At checkpoints: a power cut may lose the last commits.
    Normal,
    /// At every commit.
    Full,
}

impl SqliteSynchronous {
    fn pragma(self) -> &'static str {
        match self {
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::Full => "FULL",
        }
    }
}

/// The SQLite URL without Perch's own `synchronous` parameter, and the level it asks for.
fn sqlite_synchronous(url: &str) -> Result<(String, SqliteSynchronous), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), SqliteSynchronous::Normal));
    };
    let mut synchronous = SqliteSynchronous::Normal;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                synchronous = match value.to_ascii_lowercase().as_str() {
                    "normal" => SqliteSynchronous::Normal,
                    "full" => SqliteSynchronous::Full,
                    _ => {
                        return Err(StoreError::Unsupported(format!(
                            "synchronous={value} in the database URL: use synchronous=normal or synchronous=full"
                        )));
                    }
                }
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, synchronous))
}

/// Creates a SQLite database file readable by its owner only (0600), before SQLite creates it
/// with the process's umask; its write-ahead log and shared-memory files take the same mode.
/// An existing file is left as it is; a failure here leaves the creation to SQLite. Returns the
/// file when it created one.
/// The file of a SQLite URL; none for another backend or an in-memory database.
pub fn sqlite_file(url: &str) -> Option<&std::path::Path> {
    if Backend::from_url(url) != Some(Backend::Sqlite) {
        return None;
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(std::path::Path::new(path))
}

fn create_private_database(url: &str) -> Option<std::path::PathBuf> {
    let path = sqlite_file(url)?;
    if path.exists() {
        return None;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Some(path.to_path_buf()),
        Err(error) => {
            tracing::debug!(%error, "could not create the database file beforehand");
            None
        }
    }
}

impl Tx {
    /// Whether this transaction wrote an object or a token: its commit moves the generation.
    pub fn changes_access(&self) -> bool {
        self.changes_access
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        if self.changes_access {
            if self.backend == Backend::Postgres {
                sqlx::query(BUMP_GENERATION_AND_ANNOUNCE)
                    .fetch_one(&mut *self.inner)
                    .await?;
                self.announced = true;
            } else {
                sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
                    .execute(&mut *self.inner)
                    .await?;
            }
        }
        if self.backend == Backend::Postgres
            && (self.changes_access || self.wakes_streams)
            && !self.announced
        {
            // Delivered to every listening node when, and only if, this transaction commits;
            // PostgreSQL folds a transaction's identical notifications into one.
            sqlx::query("SELECT CAST(pg_notify($1, '') AS TEXT)")
                .bind(CHANGES_CHANNEL)
                .execute(&mut *self.inner)
                .await?;
        }
        self.inner.commit().await?;
        Ok(())
    }

    /// Takes the turn for message and compliance-event ids until this transaction ends, once
    /// however many inserts it makes. PostgreSQL hands out ids before commit, so concurrent
    /// inserts could commit out of id order and a live stream reading "after id N" would skip
    /// one; the writers of those ids take turns for the moment of their inserts and commit
    /// instead. SQLite's single writer already does.
    pub(crate) async fn take_message_id_turn(&mut self) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres && !self.holds_message_id_turn {
            sqlx::query(&AdvisoryLock::MessageIds.transaction_lock_sql())
                .fetch_one(&mut *self.inner)
                .await?;
            self.holds_message_id_turn = true;
        }
        Ok(())
    }

    /// Ends the transaction without keeping anything it did (dropping it does the same, later).
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.inner.rollback().await?;
        Ok(())
    }

    /// Marks a point that [`Tx::rollback_to_savepoint`] returns to, so that one step of a
    /// batch can fail without undoing the steps before it.
    pub async fn savepoint(&mut self) -> Result<(), StoreError> {
        sqlx::query("SAVEPOINT step")
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    pub async fn release_savepoint(&mut self) -> Result<(), StoreError> {
        sqlx::query("RELEASE SAVEPOINT step")
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    pub async fn rollback_to_savepoint(&mut self) -> Result<(), StoreError> {
        sqlx::query("ROLLBACK TO SAVEPOINT step")
            .execute(&mut *self.inner)
            .await?;
        // PostgreSQL forgets what the step queued and took: its notification, and a lock
        // taken in it (the turn for ids). Taken or sent again if needed.
        self.announced = false;
        self.holds_message_id_turn = false;
        sqlx::query("RELEASE SAVEPOINT step")
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    /// After rows were stored with their own ids, moves PostgreSQL's id sequences past them
    /// (SQLite does this by itself).
    pub async fn sync_id_sequences(&mut self) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            for table in ["objects", "messages"] {
                let sql = format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))"
                );
                sqlx::query(&sql).execute(&mut *self.inner).await?;
            }
        }
        Ok(())
    }
}

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_on_postgresql_and_anonymous_on_sqlite() {
        let written = [Backend::Postgres, Backend::Sqlite].map(|backend| {
            let mut sql = String::from("VALUES ");
            backend.push_placeholders(&mut sql, 2, 3);
            sql
        });
        expect_test::expect![[r#"
            [
                "VALUES ($1, $2, $3), ($4, $5, $6)",
                "VALUES (?, ?, ?), (?, ?, ?)",
            ]
        "#]]
        .assert_debug_eq(&written);
    }

    #[test]
    fn the_synchronous_parameter_is_perchs_and_leaves_the_rest_to_sqlite() {
        let cases = [
            "sqlite:perch.db",
            "sqlite:perch.db?synchronous=full",
            "sqlite:perch.db?mode=ro&synchronous=FULL&cache=shared",
            "sqlite:perch.db?synchronous=normal",
            "sqlite:perch.db?synchronous=off",
        ];
        let read: Vec<String> = cases
            .iter()
            .map(|url| match sqlite_synchronous(url) {
                Ok((url, level)) => format!("{url} {level:?}"),
                Err(error) => format!("error: {error}"),
            })
            .collect();
        expect_test::expect![[
            "
            sqlite:perch.db Normal
            sqlite:perch.db Full
            sqlite:perch.db?mode=ro&cache=shared Full
            sqlite:perch.db Normal
            error: synchronous=off in the database URL: use synchronous=normal or synchronous=full"
        ]]
        .assert_eq(&read.join("\n"));
    }

    #[tokio::test]
    async fn a_refused_synchronous_value_leaves_no_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("new.db");
        let url = format!("sqlite://{}?synchronous=off", path.display());
        assert!(Store::open(&url).await.is_err());
        assert!(!path.exists(), "a refused URL made {}", path.display());
    }

    /// A `begin` dropped once its `BEGIN IMMEDIATE` is on its way (the request of a client
    /// that went away): SQLite begins all the same, and the next writer rolls that back rather
    /// than fail "within a transaction" (or keep the write lock) for good.
    #[tokio::test]
    async fn a_begin_dropped_on_its_way_leaves_the_writer_usable() {
        use std::future::Future as _;
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}/writer.db", dir.path().display());
        let store = Store::open(&url).await.expect("store");
        let writer = store.writer.clone().expect("a SQLite store has a writer");
        // Another connection holds the write lock, so that the writer's BEGIN waits in SQLite
        // (its busy handler) until the test lets it through, after the begin was dropped.
        let mut holder = AnyConnection::connect(&url)
            .await
            .expect("a second connection");
        holder.execute("BEGIN IMMEDIATE").await.expect("the lock");
        {
            let mut begin = std::pin::pin!(writer.begin());
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            assert!(
                begin.as_mut().poll(&mut context).is_pending(),
                "the first poll sends BEGIN, which waits for the lock"
            );
        }
        holder.execute("COMMIT").await.expect("the lock released");
        let transaction = writer.begin().await.expect("the writer begins again");
        transaction.commit().await.expect("and commits");
        store.close().await;
    }

    #[tokio::test]
    async fn a_full_url_syncs_every_commit() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}/full.db?synchronous=full", dir.path().display());
        let store = Store::open(&url).await.expect("store");
        let row = sqlx::query("PRAGMA synchronous")
            .fetch_one(&store.pool)
            .await
            .expect("pragma");
        // 2 is FULL, 1 NORMAL.
        assert_eq!(row.try_get::<i64, _>(0).expect("level"), 2);
        store.close().await;
    }
}
