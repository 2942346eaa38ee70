//! `perch backup` and `perch restore`: the whole database, copied consistently and checked.
//!
//! # Format
//! A backup is JSON Lines, one record per line, the same on both backends (so a SQLite
//! backup restores into PostgreSQL and back):
//!
//! ```text
//! {"header":{"format":"perch-backup","version":1,"schema":9,"backend":"sqlite",...}}
//! {"table":{"name":"messages","columns":[["id","int"],["body","text"],...]}}
//! [1,"hello",...]                      one line per row, a cell per column
//! {"tableEnd":{"name":"messages","rows":1,"digest":"..."}}
//! ...                                  every table, by name
//! {"sequences":{"messages":1,...}}     where each id sequence stands
//! {"end":{"tables":16,"rows":1234,"sha256":"..."}}
//! ```
//!
//! A table's digest is the lane-wise sum of its rows' SHA-256 (rows in any order give the
//! same digest, so it can be recomputed from the restored table); `sha256` is that of every
//! byte before the `end` line.
//!
//! # Guarantees
//! - **Consistent**: a backup reads one snapshot ([`crate::store::Snapshot`]): every write
//!   committed (every message acknowledged) before it began, nothing committed after, while
//!   the server goes on writing.
//! - **Complete**: every table the catalog lists is copied — configuration, messages, tokens
//!   (their hashes), compliance events and the archiver's progress, holds, the audit trail,
//!   browser sessions — and the id sequences, so that no id is handed out twice.
//! - **Checked before it counts**: a restore verifies each table's row count and digest and
//!   the file's SHA-256 as it reads, then reads back what it wrote and compares again, all
//!   before it commits.
//! - **All or nothing**: a restore is one transaction into a database that holds nothing
//!   yet; any failure (a flipped byte, a cut-off file, a full disk) leaves it empty.
//! - **Bounded**: a line of a backup file is at most [`MAX_LINE_BYTES`]; names in the file
//!   are matched against the catalog and never reach SQL.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};

use sha2::{Digest, Sha256};

use super::{Caller, Result, Service, ServiceError, WriteAccess, require_admin};
use crate::api::ErrorCode;
use crate::store::{Cell, ColumnType, Table};
use crate::text::hex;

pub const FORMAT: &str = "perch-backup";
pub const FORMAT_VERSION: u32 = 1;
/// The longest line a restore reads: far above any row Perch writes (a room of 16,000
/// members is about a megabyte), far below what would exhaust memory.
pub const MAX_LINE_BYTES: usize = 64 << 20;
/// Rows inserted per round trip while restoring.
const RESTORE_BATCH: usize = 2_000;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
enum Record {
    Header(Header),
    Table(TableStart),
    TableEnd(TableEnd),
    Sequences(BTreeMap<String, i64>),
    End(End),
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    /// The schema version of the database it was taken from.
    schema: i64,
    backend: String,
    taken_at: String,
    perch: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TableStart {
    name: String,
    columns: Vec<(String, ColumnType)>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TableEnd {
    name: String,
    rows: u64,
    digest: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    tables: usize,
    rows: u64,
    sha256: String,
}

/// The order-independent digest of a table's rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TableDigest {
    lanes: [u64; 4],
    rows: u64,
}

impl TableDigest {
    fn add(&mut self, row: &[Cell]) {
        // Cells serialise infallibly (null, integers, strings).
        let canonical = serde_json::to_vec(row).unwrap_or_default();
        let hash = Sha256::digest(&canonical);
        for (lane, bytes) in self.lanes.iter_mut().zip(hash.chunks_exact(8)) {
            let mut word = [0; 8];
            word.copy_from_slice(bytes);
            *lane = lane.wrapping_add(u64::from_le_bytes(word));
        }
        self.rows += 1;
    }

    fn hex(&self) -> String {
        let bytes: Vec<u8> = self
            .lanes
            .iter()
            .flat_map(|lane| lane.to_be_bytes())
            .collect();
        hex(&bytes)
    }
}

/// How far a backup or restore has come, for progress lines.
#[derive(Clone, Copy, Debug)]
pub struct BackupProgress<'a> {
    pub table: &'a str,
    pub table_rows: u64,
    pub total_rows: u64,
}

/// What a backup wrote or a restore brought back, verified.
#[derive(Clone, Debug, Default)]
pub struct BackupReport {
    /// Rows per table, by table name.
    pub tables: BTreeMap<String, u64>,
    pub rows: u64,
    pub sha256: String,
    pub schema: i64,
}

impl BackupReport {
    pub fn rows_of(&self, table: &str) -> u64 {
        self.tables.get(table).copied().unwrap_or(0)
    }
}

/// A writer that hashes what passes through it.
struct Hashing<'a> {
    out: &'a mut (dyn Write + Send),
    hash: Sha256,
}

impl Hashing<'_> {
    fn line(&mut self, value: &impl serde::Serialize) -> Result<()> {
        let mut bytes = serde_json::to_vec(value).map_err(|error| {
            ServiceError::internal(format!("cannot encode a backup line: {error}"))
        })?;
        bytes.push(b'\n');
        self.hash.update(&bytes);
        self.out
            .write_all(&bytes)
            .map_err(|error| write_failed(&error))
    }
}

fn write_failed(error: &std::io::Error) -> ServiceError {
    ServiceError::internal(format!("cannot write the backup: {error}"))
}

fn corrupt(line: u64, message: impl std::fmt::Display) -> ServiceError {
    ServiceError::Invalid {
        code: ErrorCode::CorruptImport,
        field: format!("line {line}"),
        message: format!("line {line} of the backup: {message}"),
    }
}

impl Service {
    /// Writes every table of the database to `out`, from one snapshot; administrators only.
    /// See the module documentation for what it guarantees.
    ///
    /// # Errors
    /// The store failing, or `out` refusing a write.
    pub async fn backup(
        &self,
        caller: &Caller,
        out: &mut (dyn Write + Send),
        progress: &mut (dyn FnMut(BackupProgress<'_>) + Send),
    ) -> Result<BackupReport> {
        require_admin(caller, "take a backup")?;
        let mut snapshot = self.store().snapshot().await?;
        let schema = snapshot.schema_version().await?;
        let tables = snapshot.tables().await?;
        let mut out = Hashing {
            out,
            hash: Sha256::new(),
        };
        out.line(&Record::Header(Header {
            format: FORMAT.to_owned(),
            version: FORMAT_VERSION,
            schema,
            backend: format!("{:?}", self.store().backend()).to_lowercase(),
            taken_at: crate::clock::now(),
            perch: env!("CARGO_PKG_VERSION").to_owned(),
        }))?;
        let mut report = BackupReport {
            schema,
            ..BackupReport::default()
        };
        for table in &tables {
            out.line(&Record::Table(TableStart {
                name: table.name().to_owned(),
                columns: table.columns().to_vec(),
            }))?;
            let mut digest = TableDigest::default();
            let total_before = report.rows;
            let mut each = |row: Vec<Cell>| -> Result<()> {
                digest.add(&row);
                out.line(&row)?;
                if digest.rows % 10_000 == 0 {
                    progress(BackupProgress {
                        table: table.name(),
                        table_rows: digest.rows,
                        total_rows: total_before + digest.rows,
                    });
                }
                Ok(())
            };
            snapshot.for_each_row(table, &mut each).await?;
            out.line(&Record::TableEnd(TableEnd {
                name: table.name().to_owned(),
                rows: digest.rows,
                digest: digest.hex(),
            }))?;
            report.rows += digest.rows;
            report.tables.insert(table.name().to_owned(), digest.rows);
        }
        let sequences = snapshot.sequences(&tables).await?;
        snapshot.finish().await?;
        out.line(&Record::Sequences(sequences.into_iter().collect()))?;
        report.sha256 = hex(&out.hash.clone().finalize());
        out.line(&Record::End(End {
            tables: tables.len(),
            rows: report.rows,
            sha256: report.sha256.clone(),
        }))?;
        out.out.flush().map_err(|error| write_failed(&error))?;
        Ok(report)
    }

    /// Brings a backup back into this database, which must hold nothing yet; administrators
    /// only. Nothing is kept unless every count and checksum verifies.
    ///
    /// # Errors
    /// A database that is not empty (`already_exists`), a backup of another schema version, a
    /// file that is not a whole, unaltered backup (`corrupt_import`, naming the line).
    pub async fn restore(
        &self,
        caller: &Caller,
        input: &mut (dyn BufRead + Send),
        progress: &mut (dyn FnMut(BackupProgress<'_>) + Send),
    ) -> Result<BackupReport> {
        require_admin(caller, "restore a backup")?;
        let mut tx = self.store().begin(WriteAccess::new()).await?;
        let generation_before = tx.generation().await?;
        let schema = tx.schema_version().await?;
        let target_tables = tx.tables().await?;
        let mut occupied = Vec::new();
        for table in &target_tables {
            // A new database counts its configuration changes from one row of its own.
            if table.name() == "generation" {
                continue;
            }
            let rows = tx.row_count(table).await?;
            if rows > 0 {
                occupied.push(format!("{} ({rows})", table.name()));
            }
        }
        if !occupied.is_empty() {
            return Err(ServiceError::Conflict {
                code: ErrorCode::AlreadyExists,
                message: format!(
                    "the database already holds rows in {}; restore into an empty database",
                    occupied.join(", ")
                ),
            });
        }

        let mut reader = Lines::new(input);
        let Some((_, Record::Header(header))) = reader.record()? else {
            return Err(corrupt(1, "this is not a perch backup (no header)"));
        };
        if header.format != FORMAT || header.version != FORMAT_VERSION {
            return Err(corrupt(
                1,
                format!(
                    "this is a {} file of version {}; this perch reads {FORMAT} version {FORMAT_VERSION}",
                    header.format, header.version
                ),
            ));
        }
        if header.schema != schema {
            let advice = if header.schema > schema {
                "upgrade perch, then restore"
            } else {
                "restore it with the perch version that took it, then start this one, which migrates it"
            };
            return Err(ServiceError::Invalid {
                code: ErrorCode::InvalidField,
                field: "schema".to_owned(),
                message: format!(
                    "the backup holds schema version {}, this perch's database is at {schema}: {advice}",
                    header.schema
                ),
            });
        }

        let by_name: BTreeMap<&str, &Table> = target_tables
            .iter()
            .map(|table| (table.name(), table))
            .collect();
        let mut restored: BTreeMap<String, (TableDigest, Vec<usize>)> = BTreeMap::new();
        let mut report = BackupReport {
            schema,
            ..BackupReport::default()
        };
        let end = loop {
            let Some((line, record)) = reader.record()? else {
                return Err(corrupt(
                    reader.line_number,
                    "the file ends before its end record: it was cut off",
                ));
            };
            match record {
                Record::Table(start) => {
                    let Some(table) = by_name.get(start.name.as_str()).copied() else {
                        return Err(corrupt(
                            line,
                            format!("no table `{}` in this schema", start.name),
                        ));
                    };
                    if restored.contains_key(table.name()) {
                        return Err(corrupt(
                            line,
                            format!("table `{}` appears twice", start.name),
                        ));
                    }
                    let order = column_order(table, &start.columns)
                        .map_err(|message| corrupt(line, message))?;
                    tx.delete_all_rows(table).await?;
                    let digest = self
                        .restore_table(
                            &mut tx,
                            &mut reader,
                            table,
                            &start.columns,
                            &order,
                            &mut report,
                            progress,
                        )
                        .await?;
                    report.rows += digest.rows;
                    report.tables.insert(table.name().to_owned(), digest.rows);
                    restored.insert(table.name().to_owned(), (digest, order));
                }
                Record::Sequences(sequences) => {
                    for (name, value) in sequences {
                        let Some(table) = by_name.get(name.as_str()).copied() else {
                            return Err(corrupt(
                                line,
                                format!("a sequence for no table: `{name}`"),
                            ));
                        };
                        if tx.has_sequence(table).await? {
                            tx.set_sequence(table, value).await?;
                        }
                    }
                }
                Record::End(end) => break (line, end),
                Record::Header(_) | Record::TableEnd(_) => {
                    return Err(corrupt(line, "a record out of place"));
                }
            }
        };
        let (end_line, end) = end;
        let missing: Vec<&str> = target_tables
            .iter()
            .map(Table::name)
            .filter(|name| !restored.contains_key(*name))
            .collect();
        if !missing.is_empty() {
            return Err(corrupt(
                end_line,
                format!("tables missing from the backup: {}", missing.join(", ")),
            ));
        }
        if end.sha256 != reader.sha256_before_last_line
            || end.rows != report.rows
            || end.tables != restored.len()
        {
            return Err(corrupt(
                end_line,
                "the file's checksum or totals do not match its content: it was altered",
            ));
        }
        if reader.next_line()?.is_some() {
            return Err(corrupt(
                reader.line_number,
                "something follows the end record",
            ));
        }

        // Read back what was written, as the database now holds it.
        for table in &target_tables {
            let (expected, order) = &restored[table.name()];
            let mut digest = TableDigest::default();
            let mut each = |row: Vec<Cell>| -> Result<()> {
                let in_file_order: Vec<Cell> =
                    order.iter().map(|&index| row[index].clone()).collect();
                digest.add(&in_file_order);
                Ok(())
            };
            tx.for_each_row(table, &mut each).await?;
            if digest != *expected {
                return Err(ServiceError::internal(format!(
                    "table {} reads back {} row(s) unlike the {} the backup holds; nothing was restored",
                    table.name(),
                    digest.rows,
                    expected.rows
                )));
            }
        }
        // The restored generation may be older than this database's: it never goes back.
        tx.raise_generation_to(generation_before).await?;
        tx.commit().await?;
        report.sha256 = end.sha256;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn restore_table(
        &self,
        tx: &mut crate::store::Tx,
        reader: &mut Lines<'_>,
        table: &Table,
        file_columns: &[(String, ColumnType)],
        order: &[usize],
        report: &mut BackupReport,
        progress: &mut (dyn FnMut(BackupProgress<'_>) + Send),
    ) -> Result<TableDigest> {
        let mut digest = TableDigest::default();
        let mut batch: Vec<Vec<Cell>> = Vec::with_capacity(RESTORE_BATCH);
        loop {
            let Some(bytes) = reader.next_line()? else {
                return Err(corrupt(
                    reader.line_number,
                    format!("the file ends inside table {}", table.name()),
                ));
            };
            let line = reader.line_number;
            if bytes.first() != Some(&b'[') {
                let record: Record =
                    serde_json::from_slice(&bytes).map_err(|error| corrupt(line, error))?;
                let Record::TableEnd(end) = record else {
                    return Err(corrupt(
                        line,
                        format!("table {} has no end record", table.name()),
                    ));
                };
                if end.name != table.name() || end.rows != digest.rows || end.digest != digest.hex()
                {
                    return Err(corrupt(
                        line,
                        format!(
                            "table {} holds {} row(s) whose digest is {}, but its end record says {} row(s) and {}: the file was altered",
                            table.name(),
                            digest.rows,
                            digest.hex(),
                            end.rows,
                            end.digest
                        ),
                    ));
                }
                tx.insert_rows(table, &batch).await?;
                return Ok(digest);
            }
            let row = parse_row(&bytes, file_columns).map_err(|message| corrupt(line, message))?;
            digest.add(&row);
            // The file's column order may differ from this database's (another backend).
            let mut in_table_order = vec![Cell::Null; row.len()];
            for (file_index, cell) in row.into_iter().enumerate() {
                in_table_order[order[file_index]] = cell;
            }
            batch.push(in_table_order);
            if batch.len() == RESTORE_BATCH {
                tx.insert_rows(table, &batch).await?;
                batch.clear();
            }
            if digest.rows % 10_000 == 0 {
                progress(BackupProgress {
                    table: table.name(),
                    table_rows: digest.rows,
                    total_rows: report.rows + digest.rows,
                });
            }
        }
    }
}

/// For each column of the file, in its order, the index of the same column in `table`; the
/// two must have the same columns of the same types.
fn column_order(
    table: &Table,
    file_columns: &[(String, ColumnType)],
) -> std::result::Result<Vec<usize>, String> {
    let theirs: BTreeSet<&str> = file_columns.iter().map(|(name, _)| name.as_str()).collect();
    let ours: BTreeSet<&str> = table
        .columns()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    if theirs != ours || theirs.len() != file_columns.len() {
        return Err(format!(
            "table {} has the columns {}, this schema's has {}",
            table.name(),
            file_columns
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            table
                .columns()
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    file_columns
        .iter()
        .map(|(name, kind)| {
            let index = table
                .columns()
                .iter()
                .position(|(ours, _)| ours == name)
                .unwrap_or_default();
            if table.columns()[index].1 == *kind {
                Ok(index)
            } else {
                Err(format!(
                    "column {}.{name} is of another type here",
                    table.name()
                ))
            }
        })
        .collect()
}

fn parse_row(
    bytes: &[u8],
    columns: &[(String, ColumnType)],
) -> std::result::Result<Vec<Cell>, String> {
    let values: Vec<serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
    if values.len() != columns.len() {
        return Err(format!(
            "a row of {} cell(s) where the table has {} column(s)",
            values.len(),
            columns.len()
        ));
    }
    values
        .into_iter()
        .zip(columns)
        .map(|(value, (name, kind))| match (value, kind) {
            (serde_json::Value::Null, _) => Ok(Cell::Null),
            (serde_json::Value::Number(number), ColumnType::Int) => number
                .as_i64()
                .map(Cell::Int)
                .ok_or_else(|| format!("column {name}: {number} is not a 64-bit integer")),
            (serde_json::Value::String(text), ColumnType::Text) => Ok(Cell::Text(text)),
            (other, _) => Err(format!("column {name}: {other} is not {kind:?}")),
        })
        .collect()
}

/// Reads a backup line by line, each at most [`MAX_LINE_BYTES`], hashing every byte before
/// the line last read.
struct Lines<'a> {
    input: &'a mut (dyn BufRead + Send),
    line_number: u64,
    hash: Sha256,
    last_line: Vec<u8>,
    sha256_before_last_line: String,
}

impl<'a> Lines<'a> {
    fn new(input: &'a mut (dyn BufRead + Send)) -> Lines<'a> {
        Lines {
            input,
            line_number: 0,
            hash: Sha256::new(),
            last_line: Vec::new(),
            sha256_before_last_line: String::new(),
        }
    }

    fn next_line(&mut self) -> Result<Option<Vec<u8>>> {
        self.hash.update(&self.last_line);
        self.sha256_before_last_line = hex(&self.hash.clone().finalize());
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_LINE_BYTES).unwrap_or(u64::MAX) + 1;
        let read = (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut line)
            .map_err(|error| ServiceError::internal(format!("cannot read the backup: {error}")))?;
        self.last_line.clear();
        if read == 0 {
            return Ok(None);
        }
        self.line_number += 1;
        if line.last() != Some(&b'\n') {
            return Err(if line.len() > MAX_LINE_BYTES {
                corrupt(
                    self.line_number,
                    format!("the line is longer than {MAX_LINE_BYTES} bytes"),
                )
            } else {
                corrupt(self.line_number, "the last line is cut off")
            });
        }
        self.last_line.clone_from(&line);
        line.pop();
        Ok(Some(line))
    }

    fn record(&mut self) -> Result<Option<(u64, Record)>> {
        let Some(line) = self.next_line()? else {
            return Ok(None);
        };
        let record =
            serde_json::from_slice(&line).map_err(|error| corrupt(self.line_number, error))?;
        Ok(Some((self.line_number, record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_digest_ignores_row_order_and_sees_every_cell() {
        let rows = [
            vec![Cell::Int(1), Cell::Text("a".into()), Cell::Null],
            vec![Cell::Int(2), Cell::Text("b".into()), Cell::Int(7)],
        ];
        let mut forward = TableDigest::default();
        for row in &rows {
            forward.add(row);
        }
        let mut backward = TableDigest::default();
        for row in rows.iter().rev() {
            backward.add(row);
        }
        assert_eq!(forward, backward);
        let mut altered = TableDigest::default();
        altered.add(&rows[0]);
        altered.add(&[Cell::Int(2), Cell::Text("c".into()), Cell::Int(7)]);
        assert_ne!(forward.hex(), altered.hex());
        let mut null_for_zero = TableDigest::default();
        null_for_zero.add(&rows[1]);
        null_for_zero.add(&[Cell::Int(1), Cell::Text("a".into()), Cell::Int(0)]);
        assert_ne!(forward.hex(), null_for_zero.hex());
    }

    #[test]
    fn rows_must_match_their_columns() {
        let columns = vec![
            ("id".to_owned(), ColumnType::Int),
            ("body".to_owned(), ColumnType::Text),
        ];
        assert_eq!(
            parse_row(br#"[1,"x"]"#, &columns),
            Ok(vec![Cell::Int(1), Cell::Text("x".into())])
        );
        for (row, problem) in [
            (
                &br"[1]"[..],
                "a row of 1 cell(s) where the table has 2 column(s)",
            ),
            (br#"["1","x"]"#, r#"column id: "1" is not Int"#),
            (br#"[1.5,"x"]"#, "column id: 1.5 is not a 64-bit integer"),
            (br"[1,2]", "column body: 2 is not Text"),
        ] {
            assert_eq!(parse_row(row, &columns), Err(problem.to_owned()));
        }
    }
}
