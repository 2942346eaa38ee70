//! `perch backup` and `perch restore`: a consistent copy of a whole database while it serves,
//! and bringing one back into an empty database, verified.

use std::io::BufReader;
use std::path::PathBuf;

use miette::{IntoDiagnostic, WrapErr, miette};

use super::EXIT_OK;
use crate::live::Target;
use crate::live::embedded::EmbeddedTarget;
use crate::service::{BackupProgress, BackupReport};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The database to copy, e.g. sqlite://perch.db or postgres://perch@db/perch. It is only
    /// read, from one snapshot: a running `perch serve` goes on writing meanwhile.
    #[arg(long, env = "PERCH_DB")]
    db: String,
    /// The backup file to write: it appears only when whole (a temp file, synced, renamed),
    /// readable by its owner only.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A file `perch backup` wrote.
    file: PathBuf,
    /// The database to restore into. It must hold nothing yet (a new SQLite file, or a
    /// PostgreSQL database just created); on any failure it is left as empty as it was.
    #[arg(long, env = "PERCH_DB")]
    db: String,
}

/// Progress every five seconds, to a terminal or a CI log alike.
struct ProgressLine {
    verb: &'static str,
    started: std::time::Instant,
    last: std::time::Instant,
}

impl ProgressLine {
    fn new(verb: &'static str) -> ProgressLine {
        let now = std::time::Instant::now();
        ProgressLine {
            verb,
            started: now,
            last: now,
        }
    }

    fn report(&mut self, progress: BackupProgress<'_>) {
        if self.last.elapsed() < std::time::Duration::from_secs(5) {
            return;
        }
        self.last = std::time::Instant::now();
        note!(
            "{} {} row(s) in {} s (table {}: {})",
            self.verb,
            progress.total_rows,
            self.started.elapsed().as_secs(),
            progress.table,
            progress.table_rows
        );
    }
}

fn summary(report: &BackupReport) -> String {
    format!(
        "{} row(s) in {} table(s): {} object(s), {} message(s), {} token(s), {} compliance event(s), {} audit record(s); schema {}; sha256 {}",
        report.rows,
        report.tables.len(),
        report.rows_of("objects"),
        report.rows_of("messages"),
        report.rows_of("tokens"),
        report.rows_of("compliance_events"),
        report.rows_of("audit"),
        report.schema,
        report.sha256
    )
}

async fn open(url: &str) -> miette::Result<EmbeddedTarget> {
    EmbeddedTarget::open(url)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open {url}"))
}

pub async fn backup(args: BackupArgs) -> miette::Result<u8> {
    // A backup of a database that a mistyped --db brought into being would be empty, and
    // look like success.
    super::reconcile::require_existing_database(&args.db)?;
    let source = open(&args.db).await?;
    let mut out = match crate::atomic_file::Staged::create(&args.out) {
        Ok(out) => out,
        Err(error) => {
            source.close().await;
            return Err(error)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot write {}", args.out.display()));
        }
    };
    let mut progress = ProgressLine::new("backed up");
    let outcome = source
        .backup(&mut out, &mut |step| progress.report(step))
        .await;
    source.close().await;
    let report = outcome.map_err(|error| miette!("cannot back up {}: {error}", args.db))?;
    out.commit()
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", args.out.display()))?;
    outln!(
        "backed up {} to {}: {}",
        args.db,
        args.out.display(),
        summary(&report)
    );
    Ok(EXIT_OK)
}

pub async fn restore(args: RestoreArgs) -> miette::Result<u8> {
    let file = std::fs::File::open(&args.file)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read {}", args.file.display()))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let target = open(&args.db).await?;
    let mut progress = ProgressLine::new("restored");
    let outcome = target
        .restore(&mut input, &mut |step| progress.report(step))
        .await;
    match outcome {
        Ok(report) => {
            target.close().await;
            outln!(
                "restored {} into {}: {}; counts and checksums verified",
                args.file.display(),
                args.db,
                summary(&report)
            );
            Ok(EXIT_OK)
        }
        Err(error) => {
            // A SQLite file this command created holds nothing worth keeping.
            target.close_and_discard().await;
            Err(miette!(
                "cannot restore {} into {}: {error}; nothing was restored",
                args.file.display(),
                args.db
            ))
        }
    }
}
