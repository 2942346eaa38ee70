//! `perch data export` and `perch data import`: moving chat data between servers.

use std::io::IsTerminal;
use std::path::PathBuf;

use miette::{IntoDiagnostic, WrapErr};

use super::EXIT_OK;
use super::reconcile::{TargetArgs, open_target, write_atomically};
use crate::api::wire::{DataEnd, ExportOptions, Level};

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
        /// Check the whole file and say what it would import; write nothing.
        #[arg(long)]
        dry_run: bool,
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
            let options = ExportOptions {
                level: Level::parse(&level).unwrap_or_default(),
                scope,
                since,
                disable_exported,
            };
            let target = open_target(&target).await?;
            let progress = spinner("exporting");
            let bar = progress.clone();
            let mut report = move |lines: usize| {
                if let Some(bar) = &bar {
                    bar.set_message(format!("exporting: {lines} lines"));
                }
            };
            let outcome = target.export_data(&options, &mut report).await;
            target.close().await;
            let bytes = outcome.into_diagnostic()?;
            write_atomically(&out, &bytes)?;
            if let Some(bar) = progress {
                bar.finish_and_clear();
            }
            let end = bytes
                .split(|byte| *byte == b'\n')
                .rfind(|line| !line.is_empty())
                .and_then(|line| serde_json::from_slice::<EndLine>(line).ok());
            let (objects, messages) =
                end.map_or((0, 0), |line| (line.end.objects, line.end.messages));
            println!(
                "exported {objects} object(s) and {messages} message(s) to {}",
                out.display()
            );
            Ok(EXIT_OK)
        }
        DataCommand::Import {
            file,
            replace_existing,
            dry_run,
            target,
        } => {
            let bytes = std::fs::read(&file)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read {}", file.display()))?;
            let target = open_target(&target).await?;
            let progress = spinner("importing");
            let outcome = target.import_data(bytes, replace_existing, dry_run).await;
            if outcome.is_ok() && !dry_run {
                target.close().await;
            } else {
                // A failed import into a database it created leaves no new file behind.
                target.close_and_discard().await;
            }
            let report = outcome.into_diagnostic()?;
            if let Some(bar) = progress {
                bar.finish_and_clear();
            }
            let verb = if dry_run {
                "dry run: would import"
            } else {
                "imported"
            };
            println!(
                "{verb} {} object(s) and {} message(s) from {}{}",
                report.objects,
                report.messages,
                crate::text::terminal_safe(&file.display().to_string()),
                if dry_run { "; nothing changed" } else { "" }
            );
            Ok(EXIT_OK)
        }
    }
}

/// The last line of an export, for the counts it states.
#[derive(serde::Deserialize)]
struct EndLine {
    end: DataEnd,
}
