//! `perch room clear` and `perch messages remove`: the administrators' tools on chat history.

use miette::IntoDiagnostic;

use super::EXIT_OK;
use super::reconcile::{TargetArgs, open_target};
use crate::api::wire::{ClearRequest, RemoveRequest};

#[derive(Debug, clap::Subcommand)]
pub enum RoomCommand {
    /// Delete everything a room holds up to a date, inclusive (Clear-CsPersistentChatRoom).
    Clear {
        /// The room to clear.
        #[arg(long)]
        room: String,
        /// Delete messages posted on or before this date (2016-01-31, the whole day) or time
        /// (2016-01-31T17:00:00Z).
        #[arg(long)]
        end_date: String,
        /// Say how many messages would go; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum MessagesCommand {
    /// Remove, or replace with a text, the messages that match (Remove-CsPersistentChatMessage).
    Remove {
        /// The room whose messages to remove.
        #[arg(long)]
        room: String,
        /// Only messages by this author (sip:user@domain).
        #[arg(long)]
        user: Option<String>,
        /// Only messages posted on or after this date or time.
        #[arg(long)]
        start_date: Option<String>,
        /// Only messages posted on or before this date or time.
        #[arg(long)]
        end_date: Option<String>,
        /// Space-separated keywords.
        #[arg(long)]
        filter: Option<String>,
        /// How keywords match: all of them, any of them (or), or the exact phrase.
        #[arg(long = "match", value_parser = ["all", "or", "exact"], default_value = "all")]
        matching: String,
        /// Match keywords case-sensitively.
        #[arg(long)]
        case_sensitive: bool,
        /// Leave this text in place of each match instead of deleting it.
        #[arg(long)]
        replace: Option<String>,
        /// Say how many messages would be touched; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// With no --user, --start-date, --end-date or --filter: yes, every message of the room
        /// (asked on a terminal; needed without one).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

pub async fn room(command: RoomCommand) -> miette::Result<u8> {
    let RoomCommand::Clear {
        room,
        end_date,
        dry_run,
        target,
    } = command;
    let target = open_target(&target).await?;
    let outcome = target
        .clear_room(&room, &ClearRequest { end_date, dry_run })
        .await;
    target.close().await;
    let removed = outcome.into_diagnostic()?;
    let room = crate::text::terminal_safe(&room);
    if dry_run {
        println!(
            "dry run: clearing room {room} would remove {removed} message(s); nothing changed"
        );
    } else {
        println!("cleared room {room}: {removed} message(s) removed");
    }
    Ok(EXIT_OK)
}

pub async fn messages(command: MessagesCommand) -> miette::Result<u8> {
    let MessagesCommand::Remove {
        room,
        user,
        start_date,
        end_date,
        filter,
        matching,
        case_sensitive,
        replace,
        dry_run,
        all,
        target,
    } = command;
    let unfiltered =
        user.is_none() && start_date.is_none() && end_date.is_none() && filter.is_none();
    if unfiltered && !all && !dry_run && !confirm_every_message(&room)? {
        return Ok(super::EXIT_ERROR);
    }
    let verb = if replace.is_some() {
        "replaced"
    } else {
        "removed"
    };
    let request = RemoveRequest {
        user,
        start_date,
        end_date,
        filter,
        matching: Some(matching),
        case_sensitive,
        replace,
        dry_run,
    };
    let target = open_target(&target).await?;
    let outcome = target.remove_messages(&room, &request).await;
    target.close().await;
    let touched = outcome.into_diagnostic()?;
    let room = crate::text::terminal_safe(&room);
    if dry_run {
        println!("dry run: room {room}: {touched} message(s) would be {verb}; nothing changed");
    } else {
        println!("room {room}: {touched} message(s) {verb}");
    }
    Ok(EXIT_OK)
}

/// A removal with no filter takes every message of the room: asked on a terminal, refused
/// without one unless `--all` says so.
fn confirm_every_message(room: &str) -> miette::Result<bool> {
    use std::io::{IsTerminal, Write};
    let room = crate::text::terminal_safe(room);
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: with no --user, --start-date, --end-date or --filter this removes every message of room {room}; pass --all to mean it (or --dry-run to count them)"
        );
        return Ok(false);
    }
    eprint!("Remove every message of room {room}? Only 'yes' is accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).into_diagnostic()?;
    if answer.trim() == "yes" {
        Ok(true)
    } else {
        eprintln!("nothing was removed");
        Ok(false)
    }
}
