//! `perch token`.

use miette::{Context, IntoDiagnostic};

use super::{DEFAULT_DB, EXIT_OK};
use crate::live::Target;
use crate::live::embedded::EmbeddedTarget;
use crate::service::Role;

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token and print it once; only its hash is stored.
    Create {
        /// Database URL of the server the token is for.
        #[arg(long, env = "PERCH_DB", default_value = DEFAULT_DB)]
        db: String,
        /// The user the token acts as, e.g. sip:admin@contoso.com.
        #[arg(long)]
        user: String,
        /// `admin` changes configuration (CsPersistentChatAdministrator); `user` acts through
        /// its room and category roles.
        #[arg(long, value_parser = ["admin", "user"])]
        role: String,
    },
    /// Revoke a token at once: requests with it are refused and live streams opened with it
    /// end, on every node.
    Revoke {
        /// Database URL of the server the token is for.
        #[arg(long, env = "PERCH_DB", default_value = DEFAULT_DB)]
        db: String,
        /// The token, as `token create` printed it.
        token: String,
    },
}

async fn open(db: &str) -> miette::Result<EmbeddedTarget> {
    EmbeddedTarget::open(db)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open the database {db}"))
}

pub async fn run(command: TokenCommand) -> miette::Result<u8> {
    match command {
        TokenCommand::Create { db, user, role } => {
            let role = Role::parse(&role).unwrap_or(Role::User);
            let target = open(&db).await?;
            let created = target.create_token(&user, role).await;
            target.close().await;
            println!("{}", created.into_diagnostic()?);
            Ok(EXIT_OK)
        }
        TokenCommand::Revoke { db, token } => {
            let target = open(&db).await?;
            let revoked = target.revoke_token(&token).await;
            target.close().await;
            if !revoked.into_diagnostic()? {
                return Err(miette::miette!("no such token in {db}"));
            }
            println!("revoked");
            Ok(EXIT_OK)
        }
    }
}
