//! `perch migrate`: move a whole server from one database to another (SQLite to PostgreSQL).

use miette::{IntoDiagnostic, WrapErr, miette};

use super::EXIT_OK;
use crate::service::{Caller, Service};
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
    let operator = Caller::local_operator();
    let report = Service::new(source.clone())
        .migrate_into(&operator, &Service::new(target.clone()))
        .await
        .map_err(|error| miette!("cannot migrate {} to {}: {error}", args.from, args.to))?;
    println!(
        "migrated {} object(s), {} message(s) and {} token(s) from {} to {}; counts verified",
        report.objects, report.messages, report.tokens, args.from, args.to
    );
    Ok(EXIT_OK)
}
