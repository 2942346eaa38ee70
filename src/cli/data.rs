//! `perch data export` and `perch data import`: moving chat data between servers.

use std::io::IsTerminal;
use std::path::PathBuf;

use miette::{IntoDiagnostic, WrapErr, miette};

use super::EXIT_OK;
use super::reconcile::{TargetArgs, write_atomically};
use crate::service::{Caller, ExportOptions, ImportReport, Level, Service};
use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Export configuration and messages to a file (Export-CsPersistentChatData).
    Export {
        /// What to export: all (configuration and messages), user (groups), category,
        /// room-directory (categories and rooms), content (messages).
        #[arg(long, default_value = "all", value_parser = ["all", "user", "category", "room-directory", "content"])]
        level: String,
        /// Only these categories and their rooms (repeatable).
        #[arg(long, num_args = 1..)]
        scope: Vec<String>,
        /// Only messages posted on or after this date or time.
        #[arg(long)]
        since: Option<String>,
        /// Disable the exported rooms afterwards.
        #[arg(long)]
        disable_exported: bool,
        /// The file to write (atomically: a temp file, then a rename).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Import a file made by `perch data export` (Import-CsPersistentChatData).
    Import {
        file: PathBuf,
        /// Replace objects and messages already present instead of refusing.
        #[arg(long)]
        replace_existing: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

fn spinner(message: &str) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    })
}

fn http_error(status: reqwest::StatusCode, body: &serde_json::Value) -> miette::Report {
    miette!(
        "{} ({})",
        body["message"]
            .as_str()
            .unwrap_or(&format!("the server answered {status}")),
        body["code"].as_str().unwrap_or_default()
    )
}

pub async fn run(command: DataCommand) -> miette::Result<u8> {
    match command {
        DataCommand::Export {
            level,
            scope,
            since,
            disable_exported,
            out,
            target,
        } => {
            let level = Level::parse(&level).unwrap_or_default();
            let progress = spinner("exporting");
            let bytes = match target.server() {
                Some(server) => {
                    let mut query: Vec<(String, String)> = vec![
                        (
                            "level".into(),
                            serde_json::to_value(level)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                        ),
                        ("disableExported".into(), disable_exported.to_string()),
                    ];
                    query.extend(scope.iter().map(|s| ("scope".to_owned(), s.clone())));
                    if let Some(since) = &since {
                        query.push(("since".into(), since.clone()));
                    }
                    let query: Vec<String> = query
                        .iter()
                        .map(|(k, v)| format!("{k}={}", crate::server::percent_encode(v)))
                        .collect();
                    let response = reqwest::Client::new()
                        .get(format!(
                            "{}/v1/data/export?{}",
                            server.trim_end_matches('/'),
                            query.join("&")
                        ))
                        .bearer_auth(target.token()?)
                        .send()
                        .await
                        .map_err(|error| miette!("cannot reach {server}: {error}"))?;
                    let status = response.status();
                    if !status.is_success() {
                        let body = response.json().await.unwrap_or_default();
                        return Err(http_error(status, &body));
                    }
                    response.bytes().await.into_diagnostic()?.to_vec()
                }
                None => {
                    let store = Store::open(target.db()).await.into_diagnostic()?;
                    let service = Service::new(store.clone());
                    let options = ExportOptions {
                        level,
                        scope,
                        since,
                        disable_exported,
                    };
                    let bar = progress.clone();
                    let mut report = move |lines: usize| {
                        if let Some(bar) = &bar {
                            bar.set_message(format!("exporting: {lines} lines"));
                        }
                    };
                    let result = service
                        .export_data(&Caller::local_operator(), &options, &mut report)
                        .await;
                    store.close().await;
                    result.into_diagnostic()?
                }
            };
            write_atomically(&out, &bytes)?;
            if let Some(bar) = progress {
                bar.finish_and_clear();
            }
            let end = String::from_utf8_lossy(&bytes)
                .lines()
                .last()
                .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok());
            let counts = end.map(|end| {
                (
                    end["end"]["objects"].as_u64().unwrap_or(0),
                    end["end"]["messages"].as_u64().unwrap_or(0),
                )
            });
            let (objects, messages) = counts.unwrap_or_default();
            println!(
                "exported {objects} object(s) and {messages} message(s) to {}",
                out.display()
            );
            Ok(EXIT_OK)
        }
        DataCommand::Import {
            file,
            replace_existing,
            target,
        } => {
            let bytes = std::fs::read(&file)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read {}", file.display()))?;
            let progress = spinner("importing");
            let report: ImportReport = match target.server() {
                Some(server) => {
                    let response = reqwest::Client::new()
                        .post(format!(
                            "{}/v1/data/import?replaceExisting={replace_existing}",
                            server.trim_end_matches('/')
                        ))
                        .bearer_auth(target.token()?)
                        .header("content-type", "application/x-ndjson")
                        .body(bytes)
                        .send()
                        .await
                        .map_err(|error| miette!("cannot reach {server}: {error}"))?;
                    let status = response.status();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    if !status.is_success() {
                        return Err(http_error(status, &body));
                    }
                    serde_json::from_value(body).into_diagnostic()?
                }
                None => {
                    let store = Store::open(target.db()).await.into_diagnostic()?;
                    let service = Service::new(store.clone());
                    let result = service
                        .import_data(&Caller::local_operator(), &bytes, replace_existing)
                        .await;
                    store.close().await;
                    result.into_diagnostic()?
                }
            };
            if let Some(bar) = progress {
                bar.finish_and_clear();
            }
            println!(
                "imported {} object(s) and {} message(s) from {}",
                report.objects,
                report.messages,
                file.display()
            );
            Ok(EXIT_OK)
        }
    }
}
