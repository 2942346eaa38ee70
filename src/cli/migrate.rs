//! `perch migrate`: move a whole server from one database to another (SQLite to PostgreSQL).

use miette::{IntoDiagnostic, WrapErr, miette};

use super::EXIT_OK;
use crate::service::{ARCHIVER, Caller, ExportOptions, Service};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The database to copy from, e.g. sqlite://perch.db. It is only read.
    #[arg(long)]
    from: String,
    /// The database to copy into, e.g. postgres://perch@db/perch. It must hold no objects or
    /// messages yet.
    #[arg(long)]
    to: String,
}

pub async fn run(args: MigrateArgs) -> miette::Result<u8> {
    let source = Store::open(&args.from)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open {}", args.from))?;
    let target = Store::open(&args.to)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open {}", args.to))?;
    let outcome = migrate(&source, &target, &args).await;
    source.close().await;
    target.close().await;
    outcome
}

async fn migrate(source: &Store, target: &Store, args: &MigrateArgs) -> miette::Result<u8> {
    let (target_objects, target_messages) = target.counts().await.into_diagnostic()?;
    if target_objects > 0 || target_messages > 0 {
        return Err(miette!(
            "{} already holds {target_objects} object(s) and {target_messages} message(s); migrate into an empty database",
            args.to
        ));
    }
    let operator = Caller::local_operator();
    let source_service = Service::new(source.clone());
    let target_service = Service::new(target.clone());
    let export = source_service
        .export_data(&operator, &ExportOptions::default(), &mut |_| {})
        .await
        .into_diagnostic()?;
    let report = target_service
        .import_data(&operator, &export, false)
        .await
        .into_diagnostic()?;

    // Tokens and the archiver's progress are server data too.
    let mut reading = source.begin().await.into_diagnostic()?;
    let tokens = reading.tokens().await.into_diagnostic()?;
    let checkpoint = reading.checkpoint(ARCHIVER).await.into_diagnostic()?;
    reading.commit().await.into_diagnostic()?;
    let mut writing = target.begin().await.into_diagnostic()?;
    for (hash, user, role, created_at) in &tokens {
        writing
            .insert_token(hash, user, role, created_at)
            .await
            .into_diagnostic()?;
    }
    writing
        .save_checkpoint(ARCHIVER, &checkpoint)
        .await
        .into_diagnostic()?;
    writing.commit().await.into_diagnostic()?;

    let source_counts = source.counts().await.into_diagnostic()?;
    let target_counts = target.counts().await.into_diagnostic()?;
    if source_counts != target_counts {
        return Err(miette!(
            "counts differ after the migration: {} holds {} object(s) and {} message(s), {} holds {} and {}",
            args.from,
            source_counts.0,
            source_counts.1,
            args.to,
            target_counts.0,
            target_counts.1
        ));
    }
    println!(
        "migrated {} object(s), {} message(s) and {} token(s) from {} to {}; counts verified",
        report.objects,
        report.messages,
        tokens.len(),
        args.from,
        args.to
    );
    Ok(EXIT_OK)
}
