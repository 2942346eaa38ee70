//! `perch migrate`: move a whole server from one database to another (SQLite to PostgreSQL).

use miette::{IntoDiagnostic, WrapErr, miette};

use super::EXIT_OK;
use crate::live::Target;
use crate::live::embedded::EmbeddedTarget;

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

async fn open(url: &str) -> miette::Result<EmbeddedTarget> {
    EmbeddedTarget::open(url)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open {url}"))
}

pub async fn run(args: MigrateArgs) -> miette::Result<u8> {
    // A source that a mistyped --from brought into being would migrate nothing, and verify.
    super::reconcile::require_existing_database(&args.from)?;
    let source = open(&args.from).await?;
    let target = match open(&args.to).await {
        Ok(target) => target,
        Err(error) => {
            source.close().await;
            return Err(error);
        }
    };
    let outcome = source.migrate_into(&target).await;
    source.close().await;
    target.close().await;
    let report =
        outcome.map_err(|error| miette!("cannot migrate {} to {}: {error}", args.from, args.to))?;
    outln!(
        "migrated {} object(s), {} message(s) and {} token(s) from {} to {}; counts verified",
        report.objects,
        report.messages,
        report.tokens,
        args.from,
        args.to
    );
    Ok(EXIT_OK)
}
