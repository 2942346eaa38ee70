//! `perch room clear` and `perch messages remove`: the administrators' tools on chat history.

use miette::IntoDiagnostic;

use super::EXIT_OK;
use super::reconcile::{TargetArgs, open_existing_target};
use crate::api::wire::{ClearRequest, RemoveRequest, RoomQuery};

#[derive(Debug, clap::Subcommand)]
pub enum RoomCommand {
    /// List the rooms you may see, filtered as Get-CsPersistentChatRoom filtered.
    List {
        /// Only rooms of this category.
        #[arg(long)]
        category: Option<String>,
        /// Only rooms that list this member (sip:user@domain, group:NAME, domain:NAME).
        #[arg(long)]
        member: Option<String>,
        /// Only rooms that list this manager.
        #[arg(long)]
        manager: Option<String>,
        /// Only rooms that show this add-in.
        #[arg(long)]
        addin: Option<String>,
        /// open, closed or secret.
        #[arg(long)]
        privacy: Option<String>,
        /// normal or auditorium.
        #[arg(long = "type")]
        room_type: Option<String>,
        /// true or false.
        #[arg(long)]
        disabled: Option<String>,
        /// Text in the name or the description.
        #[arg(long)]
        filter: Option<String>,
        /// Print the rooms as one JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show one room, every field (Get-CsPersistentChatRoom -Identity).
    Show(super::objects::ShowArgs),
    /// Add or remove members of a room.
    #[command(subcommand)]
    Members(super::objects::ListCommand),
    /// Add or remove managers of a room.
    #[command(subcommand)]
    Managers(super::objects::ListCommand),
    /// Add or remove presenters of an auditorium room.
    #[command(subcommand)]
    Presenters(super::objects::ListCommand),
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
    let (room, end_date, dry_run, target) = match command {
        RoomCommand::Clear {
            room,
            end_date,
            dry_run,
            target,
        } => (room, end_date, dry_run, target),
        RoomCommand::List {
            category,
            member,
            manager,
            addin,
            privacy,
            room_type,
            disabled,
            filter,
            json,
            target,
        } => {
            let query = RoomQuery {
                category,
                addin,
                member,
                manager,
                privacy,
                room_type,
                disabled,
                q: filter,
                after: None,
            };
            return list_rooms(query, json, &target).await;
        }
        RoomCommand::Show(args) => {
            return super::objects::show(crate::domain::Kind::Room, &args).await;
        }
        RoomCommand::Members(command) => {
            return super::objects::change_list("members", command).await;
        }
        RoomCommand::Managers(command) => {
            return super::objects::change_list("managers", command).await;
        }
        RoomCommand::Presenters(command) => {
            return super::objects::change_list("presenters", command).await;
        }
    };
    let target = open_existing_target(&target).await?;
    let outcome = target
        .clear_room(&room, &ClearRequest { end_date, dry_run })
        .await;
    target.close().await;
    let removed = outcome.into_diagnostic()?;
    let room = crate::text::terminal_safe(&room);
    if dry_run {
        outln!("dry run: clearing room {room} would remove {removed} message(s); nothing changed");
    } else {
        outln!("cleared room {room}: {removed} message(s) removed");
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
    let target = open_existing_target(&target).await?;
    let outcome = target.remove_messages(&room, &request).await;
    target.close().await;
    let touched = outcome.into_diagnostic()?;
    let room = crate::text::terminal_safe(&room);
    if dry_run {
        outln!("dry run: room {room}: {touched} message(s) would be {verb}; nothing changed");
    } else {
        outln!("room {room}: {touched} message(s) {verb}");
    }
    Ok(EXIT_OK)
}

/// Every room that matches, page after page, as a table or one JSON array.
async fn list_rooms(mut query: RoomQuery, json: bool, target: &TargetArgs) -> miette::Result<u8> {
    let target = open_existing_target(target).await?;
    let mut rooms = Vec::new();
    let outcome = loop {
        match target.rooms(&query, 500).await {
            Ok(page) => {
                rooms.extend(page.items);
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break Ok(()),
                }
            }
            Err(error) => break Err(error),
        }
    };
    target.close().await;
    outcome.into_diagnostic()?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&rooms).into_diagnostic()?
        );
        return Ok(EXIT_OK);
    }
    let text = |room: &serde_json::Value, field: &str| -> String {
        crate::text::terminal_safe(room[field].as_str().unwrap_or_default()).into_owned()
    };
    for room in &rooms {
        let members = room["members"].as_array().map_or(0, Vec::len);
        outln!(
            "{}  category {}  {} {}{}  {members} member(s)",
            text(room, "name"),
            text(room, "category"),
            text(room, "privacy"),
            text(room, "type"),
            if room["disabled"] == serde_json::Value::Bool(true) {
                "  disabled"
            } else {
                ""
            }
        );
    }
    outln!("{} room(s)", rooms.len());
    Ok(EXIT_OK)
}

/// A removal with no filter takes every message of the room: asked on a terminal, refused
/// without one unless `--all` says so.
fn confirm_every_message(room: &str) -> miette::Result<bool> {
    use std::io::{IsTerminal, Write};
    let room = crate::text::terminal_safe(room);
    if !std::io::stdin().is_terminal() {
        errln!(
            "error: with no --user, --start-date, --end-date or --filter this removes every message of room {room}; pass --all to mean it (or --dry-run to count them)"
        );
        return Ok(false);
    }
    err!("Remove every message of room {room}? Only 'yes' is accepted: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).into_diagnostic()?;
    if answer.trim() == "yes" {
        Ok(true)
    } else {
        errln!("nothing was removed");
        Ok(false)
    }
}
