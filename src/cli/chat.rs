//! `perch room clear` and `perch messages remove`: the administrators' tools on chat history.

use miette::{IntoDiagnostic, miette};
use serde_json::{Value, json};

use super::EXIT_OK;
use super::reconcile::TargetArgs;
use crate::service::{Caller, RemoveFilter, Service};
use crate::store::Store;

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

/// Sends an admin chat request to a server, or runs it on the embedded store.
enum ChatTarget {
    Http {
        client: reqwest::Client,
        base: String,
        token: String,
    },
    Embedded {
        service: Service,
        store: Store,
    },
}

impl ChatTarget {
    async fn open(args: &TargetArgs) -> miette::Result<ChatTarget> {
        match args.server() {
            Some(server) => Ok(ChatTarget::Http {
                client: reqwest::Client::new(),
                base: server.trim_end_matches('/').to_owned(),
                token: args.token()?.to_owned(),
            }),
            None => {
                let store = Store::open(args.db()).await.into_diagnostic()?;
                Ok(ChatTarget::Embedded {
                    service: Service::new(store.clone()),
                    store,
                })
            }
        }
    }

    async fn post(&self, path: &str, body: Value) -> miette::Result<Value> {
        let ChatTarget::Http {
            client,
            base,
            token,
        } = self
        else {
            return Err(miette!("not a server target"));
        };
        let response = client
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|error| miette!("cannot reach {base}: {error}"))?;
        let status = response.status();
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(reply)
        } else {
            Err(miette!(
                "{} ({})",
                reply["message"].as_str().unwrap_or("the server refused"),
                reply["code"].as_str().unwrap_or_default()
            ))
        }
    }

    async fn close(self) {
        if let ChatTarget::Embedded { store, .. } = self {
            store.close().await;
        }
    }
}

fn segment(name: &str) -> String {
    crate::server::percent_encode(name)
}

pub async fn room(command: RoomCommand) -> miette::Result<u8> {
    let RoomCommand::Clear {
        room,
        end_date,
        target,
    } = command;
    let chat = ChatTarget::open(&target).await?;
    let outcome = match &chat {
        ChatTarget::Embedded { service, .. } => service
            .clear_room(&Caller::local_operator(), &room, &end_date)
            .await
            .into_diagnostic(),
        ChatTarget::Http { .. } => chat
            .post(
                &format!("/v1/rooms/{}/clear", segment(&room)),
                json!({"endDate": end_date}),
            )
            .await
            .map(|reply| reply["removed"].as_u64().unwrap_or_default()),
    };
    chat.close().await;
    let removed = outcome?;
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
    let chat = ChatTarget::open(&target).await?;
    let replacing = replace.is_some();
    let outcome = match &chat {
        ChatTarget::Embedded { service, .. } => {
            let matching = crate::server::parse_match(Some(&matching))
                .map_err(|error| miette!("{}", error.body.message))?;
            let filter = RemoveFilter {
                author: user,
                start: start_date,
                end: end_date,
                words: filter,
                matching,
                case_sensitive,
                replacement: replace,
            };
            service
                .remove_messages(&Caller::local_operator(), &room, filter)
                .await
                .into_diagnostic()
        }
        ChatTarget::Http { .. } => {
            let body = json!({
                "user": user, "startDate": start_date, "endDate": end_date, "filter": filter,
                "match": matching, "caseSensitive": case_sensitive, "replace": replace,
            });
            chat.post(
                &format!("/v1/rooms/{}/messages/remove", segment(&room)),
                body,
            )
            .await
            .map(|reply| reply["touched"].as_u64().unwrap_or_default())
        }
    };
    chat.close().await;
    let touched = outcome?;
    let verb = if replacing { "replaced" } else { "removed" };
    println!("room {room}: {touched} message(s) {verb}");
    Ok(EXIT_OK)
}
