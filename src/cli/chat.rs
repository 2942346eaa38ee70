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
        #[command(flatten)]
        target: TargetArgs,
    },
}

pub async fn room(command: RoomCommand) -> miette::Result<u8> {
    let RoomCommand::Clear {
        room,
        end_date,
        target,
    } = command;
    let target = open_target(&target).await?;
    let outcome = target.clear_room(&room, &ClearRequest { end_date }).await;
    target.close().await;
    let removed = outcome.into_diagnostic()?;
    println!("cleared room {room}: {removed} message(s) removed");
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
        target,
    } = command;
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
    };
    let target = open_target(&target).await?;
    let outcome = target.remove_messages(&room, &request).await;
    target.close().await;
    let touched = outcome.into_diagnostic()?;
    println!("room {room}: {touched} message(s) {verb}");
    Ok(EXIT_OK)
}
