//! `perch audit` and `perch hold`: the compliance officer's tools.

use miette::IntoDiagnostic;

use super::EXIT_OK;
use super::reconcile::{TargetArgs, open_existing_target};
use crate::api::wire::AuditFilter;
use crate::domain::Kind;
use crate::domain::audit::AuditAction;
use crate::text::terminal_safe;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only acts on this kind: Category, Room, Addin, Group, ComplianceConfiguration, Token,
    /// Lock, Data, Archive.
    #[arg(long)]
    kind: Option<String>,
    /// Only acts on the object (or lock, or token's user) of this name.
    #[arg(long)]
    name: Option<String>,
    /// Only acts by this actor (sip:user@domain, local:USER, perch:archiver).
    #[arg(long)]
    actor: Option<String>,
    /// Only this kind of act.
    #[arg(long, value_parser = parse_action)]
    action: Option<AuditAction>,
    /// Only acts at or after this date (2026-01-31) or time (2026-01-31T17:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Only acts at or before this date (the whole day) or time.
    #[arg(long)]
    until: Option<String>,
    /// Only acts older than this entry id (the `next` of a previous page).
    #[arg(long)]
    before: Option<i64>,
    /// How many entries, newest first (1 to 1000).
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Print the page as JSON (`{"items": [...], "next": ID}`).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: TargetArgs,
}

fn parse_action(text: &str) -> Result<AuditAction, String> {
    AuditAction::parse(text).ok_or_else(|| {
        let known: Vec<&str> = AuditAction::ALL
            .iter()
            .map(|action| action.as_str())
            .collect();
        format!("expected one of {}", known.join(", "))
    })
}

/// What a hold stands on: `room/NAME` or `category/NAME`.
fn parse_held(text: &str) -> Result<(Kind, String), String> {
    let (kind, name) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not room/NAME or category/NAME"))?;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "room" => Kind::Room,
        "category" => Kind::Category,
        _ => return Err(format!("holds stand on a room or a category, not `{kind}`")),
    };
    if name.is_empty() {
        return Err(format!(
            "`{text}` names no {}",
            kind.as_str().to_lowercase()
        ));
    }
    Ok((kind, name.to_owned()))
}

#[derive(Debug, clap::Subcommand)]
pub enum HoldCommand {
    /// Place (or restate) a legal hold: retention, clearing, removing messages and removing
    /// the room are refused while it stands.
    Place {
        /// room/NAME or category/NAME.
        #[arg(value_parser = parse_held)]
        on: (Kind, String),
        /// Why: a case, a matter, a request.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Release a legal hold.
    Release {
        /// room/NAME or category/NAME.
        #[arg(value_parser = parse_held)]
        on: (Kind, String),
        #[command(flatten)]
        target: TargetArgs,
    },
    /// List the legal holds.
    List {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

pub async fn audit(args: AuditArgs) -> miette::Result<u8> {
    let filter = AuditFilter {
        kind: args.kind,
        name: args.name,
        actor: args.actor,
        action: args.action,
        since: args.since,
        until: args.until,
        before: args.before,
        limit: Some(args.limit),
    };
    let target = open_existing_target(&args.target).await?;
    let outcome = target.audit(&filter).await;
    target.close().await;
    let page = outcome.into_diagnostic()?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&page).into_diagnostic()?);
        return Ok(EXIT_OK);
    }
    if page.items.is_empty() {
        outln!("No audit entries match.");
    }
    for entry in &page.items {
        let on = if entry.name.is_empty() {
            entry.kind.clone()
        } else {
            format!("{} {}", entry.kind, entry.name)
        };
        // Names, actors and details come from requests: print them inert.
        outln!(
            "{:>8}  {}  {:<16} {}  by {}  {}",
            entry.id,
            terminal_safe(&entry.at),
            entry.action,
            terminal_safe(&on),
            terminal_safe(&entry.actor),
            // JSON escapes C0 controls but neither C1 controls nor bidi overrides.
            terminal_safe(&entry.detail.to_string())
        );
    }
    if let Some(next) = page.next {
        outln!("(more: --before {next})");
    }
    Ok(EXIT_OK)
}

pub async fn hold(command: HoldCommand) -> miette::Result<u8> {
    match command {
        HoldCommand::Place {
            on: (kind, name),
            reason,
            target,
        } => {
            let target = open_existing_target(&target).await?;
            let outcome = target.place_hold(kind, &name, &reason).await;
            target.close().await;
            let hold = outcome.into_diagnostic()?;
            outln!(
                "hold placed on {} {}: {}",
                kind.as_str().to_lowercase(),
                terminal_safe(&hold.name),
                terminal_safe(&hold.reason)
            );
        }
        HoldCommand::Release {
            on: (kind, name),
            target,
        } => {
            let target = open_existing_target(&target).await?;
            let outcome = target.release_hold(kind, &name).await;
            target.close().await;
            let hold = outcome.into_diagnostic()?;
            outln!(
                "hold released on {} {} (placed by {} at {})",
                kind.as_str().to_lowercase(),
                terminal_safe(&hold.name),
                terminal_safe(&hold.placed_by),
                terminal_safe(&hold.placed_at)
            );
        }
        HoldCommand::List { json, target } => {
            let target = open_existing_target(&target).await?;
            let outcome = target.holds().await;
            target.close().await;
            let holds = outcome.into_diagnostic()?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"items": holds}))
                        .into_diagnostic()?
                );
            } else if holds.is_empty() {
                outln!("No legal holds.");
            } else {
                for hold in holds {
                    outln!(
                        "{} {}  by {} at {}: {}",
                        hold.kind.as_str().to_lowercase(),
                        hold.name,
                        hold.placed_by,
                        hold.placed_at,
                        hold.reason
                    );
                }
            }
        }
    }
    Ok(EXIT_OK)
}
