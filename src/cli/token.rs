//! `perch token`: create, list and revoke bearer tokens, on the embedded store (`--db`, how
//! the first administrator's token is made) or through a server (`--server`).

use miette::IntoDiagnostic;

use super::EXIT_OK;
use super::reconcile::{TargetArgs, open_target};
use crate::api::wire::TokenRequest;
use crate::text::terminal_safe;

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token and print it once (alone on stdout); only its hash is stored.
    Create {
        /// The user the token acts as, e.g. sip:admin@contoso.com.
        #[arg(long)]
        user: String,
        /// `admin` changes configuration (CsPersistentChatAdministrator); `user` acts through
        /// its room and category roles.
        #[arg(long, value_parser = ["admin", "user"])]
        role: String,
        /// How long it works: 90m, 12h, 30d, 52w (at most ten years). For ever without it.
        #[arg(long, value_name = "LIFETIME")]
        expires_in: Option<String>,
        /// Print the token and its id, user, role and expiry as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List the tokens: id, user, role, created, expires, last used (never the tokens).
    List {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Revoke a token at once: requests with it are refused and live streams opened with it
    /// end, on every node.
    Revoke {
        /// The token, as `token create` printed it, or its id, as `token list` shows it.
        #[arg(value_name = "TOKEN_OR_ID")]
        token_or_id: String,
        #[command(flatten)]
        target: TargetArgs,
    },
}

pub async fn run(command: TokenCommand) -> miette::Result<u8> {
    match command {
        TokenCommand::Create {
            user,
            role,
            expires_in,
            json,
            target,
        } => {
            let target = open_target(&target).await?;
            let request = TokenRequest {
                user,
                role,
                expires_in,
            };
            let created = target.create_token(&request).await;
            target.close().await;
            let created = created.into_diagnostic()?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&created).into_diagnostic()?
                );
            } else {
                // Alone on stdout, so that `$(perch token create ...)` is the token.
                outln!("{}", created.token);
                errln!(
                    "token {} for {} ({}){}; it is shown this once",
                    created.info.id,
                    created.info.user,
                    created.info.role,
                    created
                        .info
                        .expires_at
                        .as_deref()
                        .map_or(String::new(), |at| format!(", expires {at}"))
                );
            }
            Ok(EXIT_OK)
        }
        TokenCommand::List { json, target } => {
            let target = super::reconcile::open_existing_target(&target).await?;
            let tokens = target.tokens().await;
            target.close().await;
            let tokens = tokens.into_diagnostic()?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"items": tokens}))
                        .into_diagnostic()?
                );
                return Ok(EXIT_OK);
            }
            if tokens.is_empty() {
                outln!("No tokens.");
            }
            for token in tokens {
                let line = format!(
                    "{}  {:<5}  {}  created {}  expires {}  last used {}",
                    token.id,
                    token.role,
                    token.user,
                    token.created_at,
                    token.expires_at.as_deref().unwrap_or("never"),
                    token.last_used_at.as_deref().unwrap_or("never"),
                );
                outln!("{}", terminal_safe(&line));
            }
            Ok(EXIT_OK)
        }
        TokenCommand::Revoke {
            token_or_id,
            target,
        } => {
            let target = super::reconcile::open_existing_target(&target).await?;
            let revoked = target.revoke_token(&token_or_id).await;
            let described = target.describe();
            target.close().await;
            match revoked.into_diagnostic()? {
                Some(token) => {
                    outln!("revoked {} ({}, {})", token.id, token.user, token.role);
                    Ok(EXIT_OK)
                }
                None => Err(miette::miette!("no such token on {described}")),
            }
        }
    }
}
