//! Every table, row by row, for `perch backup` and `perch restore`.
//!
//! The tables come from the database's own catalog, so a table a later migration adds is
//! copied without anyone remembering to. A [`Table`] is only ever made from that catalog:
//! the names a backup file carries are matched against it and never reach SQL themselves.

use sqlx::{Any, AnyConnection, Row};
use tokio_stream::StreamExt;

use super::{Backend, MIGRATIONS, Store, StoreError, Tx};

/// What a column holds. Perch's schema uses only `BIGINT` and `TEXT` (see the module doc of
/// `store`); anything else is refused rather than copied wrongly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Int,
    Text,
}

/// One table as the catalog describes it: its name and its columns, in the catalog's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    name: String,
    columns: Vec<(String, ColumnType)>,
}

impl Table {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn columns(&self) -> &[(String, ColumnType)] {
        &self.columns
    }

    fn select_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(name, kind)| match kind {
                // PostgreSQL's INTEGER columns would decode as 32-bit; one width for all.
                ColumnType::Int => format!("CAST({name} AS BIGINT)"),
                ColumnType::Text => name.clone(),
            })
            .collect();
        format!("SELECT {} FROM {}", columns.join(", "), self.name)
    }
}

/// One stored value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

impl serde::Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Null => serializer.serialize_unit(),
            Cell::Int(value) => serializer.serialize_i64(*value),
            Cell::Text(value) => serializer.serialize_str(value),
        }
    }
}

/// Reads a database's tables in one consistent snapshot: what every other connection
/// committed before it began, and nothing committed after, however long the reading takes.
pub struct Snapshot {
    inner: sqlx::Transaction<'static, Any>,
    backend: Backend,
}

impl Store {
    /// Begins a read-only snapshot. On SQLite (write-ahead log) a deferred transaction sees the
    /// database as of its first read, which [`Snapshot::schema_version`] makes at once; on
    /// PostgreSQL, `REPEATABLE READ` does the same. Writers carry on meanwhile.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        let inner = self.pool.begin_with(begin).await?;
        let mut snapshot = Snapshot {
            inner,
            backend: self.backend,
        };
        snapshot.schema_version().await?;
        Ok(snapshot)
    }

    /// The newest schema version this perch knows.
    pub fn known_schema_version() -> i64 {
        MIGRATIONS.last().map_or(0, |migration| migration.version)
    }
}

impl Snapshot {
    pub async fn schema_version(&mut self) -> Result<i64, StoreError> {
        schema_version(&mut self.inner).await
    }

    pub async fn tables(&mut self) -> Result<Vec<Table>, StoreError> {
        tables(&mut self.inner, self.backend).await
    }

    /// Calls `each` with every row of `table`, streaming: the table is never held in memory.
    pub async fn for_each_row<E: From<StoreError>>(
        &mut self,
        table: &Table,
        each: &mut (dyn FnMut(Vec<Cell>) -> Result<(), E> + Send),
    ) -> Result<(), E> {
        for_each_row(&mut self.inner, table, each).await
    }

    /// Where each table's id sequence stands (0 if it never handed out an id), for the tables
    /// that have one. It is above the largest id when the newest rows were deleted, and a
    /// restored database must not hand those ids out again.
    pub async fn sequences(&mut self, tables: &[Table]) -> Result<Vec<(String, i64)>, StoreError> {
        let mut sequences = Vec::new();
        match self.backend {
            Backend::Sqlite => {
                let rows = sqlx::query("SELECT name, seq FROM sqlite_sequence ORDER BY name")
                    .fetch_all(&mut *self.inner)
                    .await?;
                for row in rows {
                    let name: String = row.try_get(0)?;
                    if tables.iter().any(|table| table.name == name) {
                        sequences.push((name, row.try_get(1)?));
                    }
                }
            }
            Backend::Postgres => {
                for table in tables {
                    if !has_sequence(&mut self.inner, table).await? {
                        continue;
                    }
                    let value: Option<i64> = sqlx::query(
                        "SELECT pg_sequence_last_value(pg_get_serial_sequence($1, 'id')::regclass)",
                    )
                    .bind(&table.name)
                    .fetch_one(&mut *self.inner)
                    .await?
                    .try_get(0)?;
                    sequences.push((table.name.clone(), value.unwrap_or(0)));
                }
            }
        }
        Ok(sequences)
    }

    pub async fn finish(self) -> Result<(), StoreError> {
        self.inner.rollback().await?;
        Ok(())
    }
}

impl Tx {
    pub async fn schema_version(&mut self) -> Result<i64, StoreError> {
        schema_version(&mut self.inner).await
    }

    pub async fn tables(&mut self) -> Result<Vec<Table>, StoreError> {
        tables(&mut self.inner, self.backend).await
    }

    pub async fn row_count(&mut self, table: &Table) -> Result<i64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name);
        Ok(sqlx::query(&sql)
            .fetch_one(&mut *self.inner)
            .await?
            .try_get(0)?)
    }

    pub async fn for_each_row<E: From<StoreError>>(
        &mut self,
        table: &Table,
        each: &mut (dyn FnMut(Vec<Cell>) -> Result<(), E> + Send),
    ) -> Result<(), E> {
        for_each_row(&mut self.inner, table, each).await
    }

    /// The generation as it stands (0 without its row).
    pub async fn generation(&mut self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT value FROM generation WHERE id = 1")
            .fetch_optional(&mut *self.inner)
            .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?.unwrap_or(0))
    }

    /// Raises the generation to `floor` if it is below, and moves it on at commit: a restore
    /// brings back a backup's generation, which may be older than the one this database's
    /// nodes have seen, and a node must never see a generation again with other tokens or
    /// objects behind it (see `PostingCaller`).
    pub async fn raise_generation_to(&mut self, floor: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE generation SET value = CASE WHEN value < $1 THEN $1 ELSE value END WHERE id = 1",
        )
        .bind(floor)
        .execute(&mut *self.inner)
        .await?;
        self.changes_access = true;
        Ok(())
    }

    /// Empties `table`: a fresh database holds a few rows of its own (the generation counter).
    pub async fn delete_all_rows(&mut self, table: &Table) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM {}", table.name);
        sqlx::query(&sql).execute(&mut *self.inner).await?;
        Ok(())
    }

    /// Inserts `rows`, each with a cell per column of `table` in its order, in as few
    /// statements as the parameter limits allow.
    pub async fn insert_rows(
        &mut self,
        table: &Table,
        rows: &[Vec<Cell>],
    ) -> Result<(), StoreError> {
        // SQLite allows 32,766 parameters in a statement, PostgreSQL 65,535.
        let per_statement = (30_000 / table.columns.len().max(1)).clamp(1, 1_000);
        let names: Vec<&str> = table
            .columns
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        for chunk in rows.chunks(per_statement) {
            let mut sql = format!("INSERT INTO {} ({}) VALUES ", table.name, names.join(", "));
            self.backend
                .push_placeholders(&mut sql, chunk.len(), names.len());
            let mut query = sqlx::query(&sql);
            for row in chunk {
                for (cell, (_, kind)) in row.iter().zip(&table.columns) {
                    query = match (cell, kind) {
                        (Cell::Null, ColumnType::Int) => query.bind(None::<i64>),
                        (Cell::Null, ColumnType::Text) => query.bind(None::<String>),
                        (Cell::Int(value), _) => query.bind(*value),
                        (Cell::Text(value), _) => query.bind(value.as_str()),
                    };
                }
            }
            query.execute(&mut *self.inner).await?;
        }
        Ok(())
    }

    /// Moves `table`'s id sequence to `value`, or past its largest id if that is higher.
    pub async fn set_sequence(&mut self, table: &Table, value: i64) -> Result<(), StoreError> {
        let sql = format!("SELECT COALESCE(MAX(id), 0) FROM {}", table.name);
        let largest: i64 = sqlx::query(&sql)
            .fetch_one(&mut *self.inner)
            .await?
            .try_get(0)?;
        let value = value.max(largest);
        match self.backend {
            Backend::Sqlite => {
                let updated = sqlx::query("UPDATE sqlite_sequence SET seq = $1 WHERE name = $2")
                    .bind(value)
                    .bind(&table.name)
                    .execute(&mut *self.inner)
                    .await?;
                if updated.rows_affected() == 0 {
                    sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ($1, $2)")
                        .bind(&table.name)
                        .bind(value)
                        .execute(&mut *self.inner)
                        .await?;
                }
            }
            Backend::Postgres => {
                // A sequence that never handed out an id starts at 1, not yet called.
                sqlx::query("SELECT setval(pg_get_serial_sequence($1, 'id'), $2, $3)")
                    .bind(&table.name)
                    .bind(value.max(1))
                    .bind(value > 0)
                    .fetch_one(&mut *self.inner)
                    .await?;
            }
        }
        Ok(())
    }

    /// Whether `table` hands out ids from a sequence (SQLite: `AUTOINCREMENT`).
    pub async fn has_sequence(&mut self, table: &Table) -> Result<bool, StoreError> {
        match self.backend {
            Backend::Sqlite => {
                let sql: Option<String> =
                    sqlx::query("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1")
                        .bind(&table.name)
                        .fetch_optional(&mut *self.inner)
                        .await?
                        .map(|row| row.try_get(0))
                        .transpose()?;
                Ok(sql.is_some_and(|sql| sql.to_ascii_uppercase().contains("AUTOINCREMENT")))
            }
            Backend::Postgres => has_sequence(&mut self.inner, table).await,
        }
    }
}

async fn schema_version(connection: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(
        sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(connection)
            .await?
            .try_get(0)?,
    )
}

/// Perch's tables, by name, from the catalog; the migrations' own bookkeeping is not data.
async fn tables(
    connection: &mut AnyConnection,
    backend: Backend,
) -> Result<Vec<Table>, StoreError> {
    let (tables_sql, columns_sql) = match backend {
        Backend::Sqlite => (
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY name",
            "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
        ),
        Backend::Postgres => (
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name <> 'schema_migrations' ORDER BY table_name",
            "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        ),
    };
    let names: Vec<String> = sqlx::query(tables_sql)
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        let rows = sqlx::query(columns_sql)
            .bind(&name)
            .fetch_all(&mut *connection)
            .await?;
        let mut columns = Vec::with_capacity(rows.len());
        for row in rows {
            let column: String = row.try_get(0)?;
            let declared: String = row.try_get(1)?;
            let kind = match declared.to_ascii_uppercase().as_str() {
                "INTEGER" | "BIGINT" => ColumnType::Int,
                "TEXT" => ColumnType::Text,
                other => {
                    return Err(StoreError::Unsupported(format!(
                        "column {name}.{column} is of type {other}, which backups do not know"
                    )));
                }
            };
            columns.push((column, kind));
        }
        tables.push(Table { name, columns });
    }
    Ok(tables)
}

async fn has_sequence(connection: &mut AnyConnection, table: &Table) -> Result<bool, StoreError> {
    if !table.columns.iter().any(|(name, _)| name == "id") {
        return Ok(false);
    }
    let sequence: Option<String> =
        sqlx::query("SELECT CAST(pg_get_serial_sequence($1, 'id') AS TEXT)")
            .bind(&table.name)
            .fetch_one(connection)
            .await?
            .try_get(0)?;
    Ok(sequence.is_some())
}

async fn for_each_row<E: From<StoreError>>(
    connection: &mut AnyConnection,
    table: &Table,
    each: &mut (dyn FnMut(Vec<Cell>) -> Result<(), E> + Send),
) -> Result<(), E> {
    let sql = table.select_sql();
    let mut rows = sqlx::query(&sql).fetch(connection);
    while let Some(row) = rows.next().await {
        let row = row.map_err(StoreError::from)?;
        let mut cells = Vec::with_capacity(table.columns.len());
        for (index, (_, kind)) in table.columns.iter().enumerate() {
            let cell = match kind {
                ColumnType::Int => row
                    .try_get::<Option<i64>, _>(index)
                    .map_err(StoreError::from)?
                    .map_or(Cell::Null, Cell::Int),
                ColumnType::Text => row
                    .try_get::<Option<String>, _>(index)
                    .map_err(StoreError::from)?
                    .map_or(Cell::Null, Cell::Text),
            };
            cells.push(cell);
        }
        each(cells)?;
    }
    Ok(())
}
