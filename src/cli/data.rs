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
    /// Import a file made by `perch data export` (Import-CsPersistentChatData), or with
    /// `--sfb` the zip Skype for Business Server's Export-CsPersistentChatData wrote.
    Import {
        /// The perch-data file.
        #[arg(required_unless_present = "sfb", conflicts_with = "sfb")]
        file: Option<PathBuf>,
        /// The zip of Export-CsPersistentChatData: its users, groups and rooms, as far as its
        /// format is publicly known; what it holds beyond that is listed as not imported.
        #[arg(long, value_name = "FILE.zip")]
        sfb: Option<PathBuf>,
        /// With --sfb: the category the rooms go into (the export names none).
        #[arg(long, requires = "sfb", default_value = "Skype for Business")]
        category: String,
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
    (std::io::stderr().is_terminal() && !super::quiet()).then(|| {
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
            let target = super::reconcile::open_existing_target(&target).await?;
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
            outln!(
                "exported {objects} object(s) and {messages} message(s) to {}",
                out.display()
            );
            Ok(EXIT_OK)
        }
        DataCommand::Import {
            file,
            sfb,
            category,
            replace_existing,
            dry_run,
            target,
        } => {
            let (file, bytes) = match (file, sfb) {
                (_, Some(zip)) => {
                    let bytes = read_sfb_export(&zip, category)?;
                    (zip, bytes)
                }
                (Some(file), None) => {
                    let bytes = std::fs::read(&file)
                        .into_diagnostic()
                        .wrap_err_with(|| format!("cannot read {}", file.display()))?;
                    (file, bytes)
                }
                (None, None) => miette::bail!("name the file to import, or --sfb FILE.zip"),
            };
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
            outln!(
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

/// Reads `Export-CsPersistentChatData`'s zip into a `perch-data` file, saying on stderr what it
/// holds that the known format does not describe (which is not imported).
fn read_sfb_export(zip: &std::path::Path, category: String) -> miette::Result<Vec<u8>> {
    use crate::live::sfb::chat_data;
    let shown = crate::text::terminal_safe(&zip.display().to_string()).into_owned();
    let bytes = std::fs::read(zip)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read {shown}"))?;
    let limits = chat_data::Limits::default();
    let mut not_imported = std::collections::BTreeMap::new();
    let texts = chat_data::read_zip(&bytes, limits, &mut not_imported)
        .map_err(|why| miette::miette!("{shown} {why}"))?;
    let options = chat_data::Options {
        category,
        source: zip
            .file_name()
            .map_or_else(|| shown.clone(), |name| name.to_string_lossy().into_owned()),
    };
    let translation = chat_data::translate(&texts, &options, limits, not_imported)
        .map_err(|why| miette::miette!("{shown}: {why}"))?;
    note!(
        "{shown}: {} room(s), {} group(s){}; rooms are closed and normal, invitations inherited, no add-in (the export does not say); no messages (its known parts hold none)",
        translation.rooms.len(),
        translation.groups.len(),
        translation
            .category
            .as_ref()
            .map(|category| format!(
                ", in the category `{}`",
                crate::text::terminal_safe(&category.name)
            ))
            .unwrap_or_default(),
    );
    if !translation.not_imported.is_empty() {
        errln!("not imported, not in the export's known format:");
        for (what, count) in &translation.not_imported {
            errln!("  {} ({count}x)", crate::text::terminal_safe(what));
        }
    }
    translation
        .perch_data(&crate::clock::now())
        .into_diagnostic()
}
