//! `perch completions SHELL` and `perch man`: generated from the same clap definitions as
//! `--help`, so they can never disagree with it.

use std::path::PathBuf;

use clap::CommandFactory;
use miette::{IntoDiagnostic, WrapErr};

use super::{Cli, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write one page per command (perch.1, perch-plan.1, perch-room-list.1, ...) into this
    /// directory, e.g. /usr/local/share/man/man1; without it, print perch(1).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Prints the completion script for a shell (see the README for where each shell reads it).
#[allow(
    clippy::needless_pass_by_value,
    clippy::unnecessary_wraps,
    reason = "every command takes its arguments and returns a Result alike"
)]
pub fn completions(args: CompletionsArgs) -> miette::Result<u8> {
    let mut command = Cli::command();
    // Written into memory first: `generate` panics when it cannot write.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "perch", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(EXIT_OK)
}

/// Prints perch(1), or writes every command's page into a directory.
#[allow(
    clippy::needless_pass_by_value,
    reason = "every command takes its arguments alike"
)]
pub fn man(args: ManArgs) -> miette::Result<u8> {
    let command = Cli::command();
    match args.out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .into_diagnostic()?;
            out!("{}", String::from_utf8_lossy(&page));
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot write the pages into {}", dir.display()))?;
            let pages = std::fs::read_dir(&dir)
                .into_diagnostic()?
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "1"))
                .count();
            outln!("wrote {pages} manual page(s) into {}", dir.display());
        }
    }
    Ok(EXIT_OK)
}
