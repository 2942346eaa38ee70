//! The `perch` command line: argument parsing, diagnostics and exit codes.
//!
//! Exit codes, for every command: 0 success; 1 error (invalid input, unreachable target,
//! failed action); 2 "there are changes" where a command says so (`plan --detailed-exitcode`,
//! `drift`).

/// Prints on stdout, like `print!`, but never panics: see [`output`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::stdout(format_args!($($arg)*))
    };
}

/// Prints a line on stdout, like `println!`, but never panics: see [`output`].
macro_rules! outln {
    () => {
        $crate::cli::output::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints on stderr, like `eprint!`, but never panics: see [`output`].
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::cli::output::stderr(format_args!($($arg)*))
    };
}

/// Prints a line on stderr, like `eprintln!`, but never panics: see [`output`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes a note or a progress line on stderr, unless `--quiet` asked for none.
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::cli::quiet() {
            errln!($($arg)*);
        }
    };
}

mod backup;
mod chat;
mod compliance;
mod data;
mod export;
mod migrate;
mod objects;
mod output;
mod plan_cache;
mod policy;
mod reconcile;
mod serve;
mod shell;
mod token;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::domain::Kind;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for any error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code when a command reports changes or drift.
pub const EXIT_CHANGES: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "perch",
    version,
    about = "A persistent chat server, and the reconciler that keeps its configuration in Git",
    long_about = "Perch serves persistent chat (categories, rooms, add-ins, compliance) over an HTTP \
JSON API, and reconciles YAML manifests with a live server.\n\n\
Exit codes: 0 success, 1 error, 2 changes found (plan --detailed-exitcode, drift).",
    propagate_version = true
)]
pub(crate) struct Cli {
    /// Log filter, in tracing's syntax (e.g. `info`, `perch=debug`). Default: `info` for
    /// `serve`, `warn` for the other commands.
    #[arg(long, global = true, env = "PERCH_LOG")]
    log: Option<String>,

    /// How log lines are written on stderr: text for people (the default), json (one object
    /// a line) for log collectors.
    #[arg(long, global = true, env = "PERCH_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,

    /// Print only errors and what the command was asked for: no progress lines, notes or
    /// informational logs.
    #[arg(long, short, global = true, env = "PERCH_QUIET")]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the chat server.
    Serve(serve::ServeFlags),
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Check manifests: JSON Schema, references, scopes, unique names. Exit 0 valid, 1 invalid.
    Validate(reconcile::ValidateArgs),
    /// Show the ordered actions that would make the server match the manifests.
    Plan(reconcile::PlanArgs),
    /// Carry out a plan: from manifests, or saved by `plan --out`.
    Apply(reconcile::ApplyArgs),
    /// Compare the server with the manifests. Exit 0 matching, 2 drifted, 1 error.
    Drift(reconcile::DriftArgs),
    /// Write the live configuration as manifests, to bring a server under Git.
    Export(reconcile::ExportArgs),
    /// Print a JSON Schema: of manifest documents (default), or of the compliance archive's
    /// JSON files.
    Schema {
        #[arg(value_enum, default_value = "manifests")]
        of: reconcile::SchemaOf,
    },
    /// Break a lock whoever holds it (an apply that was killed), naming its holder.
    Unlock(reconcile::UnlockArgs),
    /// Read the audit trail: who changed configuration, tokens, locks and content.
    Audit(compliance::AuditArgs),
    /// Place, release and list legal holds on rooms and categories.
    #[command(subcommand)]
    Hold(compliance::HoldCommand),
    /// Administer rooms' history.
    #[command(subcommand)]
    Room(chat::RoomCommand),
    /// Categories: list them, show one.
    #[command(subcommand)]
    Category(objects::ObjectCommand),
    /// Add-ins: list them, show one.
    #[command(subcommand)]
    Addin(objects::ObjectCommand),
    /// Groups: list them, show one.
    #[command(subcommand)]
    Group(objects::ObjectCommand),
    /// Stop managing an object and keep it (as a `kind: Forget` document does on apply).
    Forget(objects::ForgetArgs),
    /// Remove or replace messages.
    #[command(subcommand)]
    Messages(chat::MessagesCommand),
    /// Export and import chat data (configuration and messages).
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Move a whole server to another database (SQLite to PostgreSQL), verifying counts.
    Migrate(migrate::MigrateArgs),
    /// Write a consistent copy of the whole database (configuration, messages, tokens,
    /// compliance state, audit) while it serves, to a file `perch restore` reads.
    Backup(backup::BackupArgs),
    /// Bring a backup back into an empty database, verifying every count and checksum.
    Restore(backup::RestoreArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(shell::CompletionsArgs),
    /// Print the manual page, or write one per command into a directory.
    Man(shell::ManArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    // Usage errors exit 1 like every other error: 2 means "changes found".
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            // `--help` and `--version` print on stdout: a full disk there is an error too.
            let printed = error.print();
            let unwritten =
                printed.is_err_and(|failure| failure.kind() != std::io::ErrorKind::BrokenPipe);
            return ExitCode::from(if error.use_stderr() || unwritten {
                EXIT_ERROR
            } else {
                EXIT_OK
            });
        }
    };
    // Messages name files, holders and URLs; wrapping them at 80 columns breaks them apart.
    let _ = miette::set_hook(Box::new(|_| {
        let options = miette::MietteHandlerOpts::new().wrap_lines(false);
        let options = if no_color() {
            options.color(false)
        } else {
            options
        };
        Box::new(options.build())
    }));
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    // `serve` may take its logging from its configuration file, so it resolves first.
    let serve_config = match &cli.command {
        Command::Serve(flags) => {
            let log_flags = serve::config::LogFlags {
                log: cli.log.clone(),
                log_format: cli.log_format,
            };
            let sources =
                serve::config::Sources::new(matches.subcommand_matches("serve"), Some(&matches));
            match serve::config::resolve(flags, &log_flags, &sources) {
                Ok(config) => Some(config),
                Err(report) => {
                    errln!("{report:?}");
                    return ExitCode::from(EXIT_ERROR);
                }
            }
        }
        _ => None,
    };
    let quiet_default = if cli.quiet { "error" } else { "warn" };
    let (log, log_format) = match &serve_config {
        Some(config) if cli.quiet && config.log.origin == serve::config::Origin::Default => {
            ("error".to_owned(), config.log_format.value)
        }
        Some(config) => (config.log.value.clone(), config.log_format.value),
        None => (
            cli.log.clone().unwrap_or_else(|| quiet_default.to_owned()),
            cli.log_format.unwrap_or(LogFormat::Text),
        ),
    };
    init_tracing(&log, log_format);
    if let (Command::Serve(flags), Some(config)) = (&cli.command, &serve_config)
        && flags.check_config
    {
        return finish(serve::check(config));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            errln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(_) => match serve_config {
                Some(config) => serve::run(config).await,
                None => Ok(EXIT_ERROR),
            },
            Command::Token(command) => token::run(command).await,
            Command::Validate(args) => reconcile::validate(args),
            Command::Plan(args) => reconcile::plan(args).await,
            Command::Apply(args) => reconcile::apply(args).await,
            Command::Drift(args) => reconcile::drift(args).await,
            Command::Export(args) => reconcile::export(args).await,
            Command::Schema { of } => reconcile::schema(of),
            Command::Audit(args) => compliance::audit(args).await,
            Command::Unlock(args) => reconcile::unlock(args).await,
            Command::Hold(command) => compliance::hold(command).await,
            Command::Room(command) => chat::room(command).await,
            Command::Category(command) => objects::run(Kind::Category, command).await,
            Command::Addin(command) => objects::run(Kind::Addin, command).await,
            Command::Group(command) => objects::run(Kind::Group, command).await,
            Command::Forget(args) => objects::forget(args).await,
            Command::Messages(command) => chat::messages(command).await,
            Command::Data(command) => data::run(command).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Backup(args) => backup::backup(args).await,
            Command::Restore(args) => backup::restore(args).await,
            Command::Completions(args) => shell::completions(args),
            Command::Man(args) => shell::man(args),
        }
    });
    finish(outcome)
}

fn finish(outcome: miette::Result<u8>) -> ExitCode {
    let code = match outcome {
        Ok(code) => code,
        Err(report) => {
            errln!("{report:?}");
            EXIT_ERROR
        }
    };
    if let Some(error) = output::finish() {
        errln!("error: cannot write the output: {error}");
        return ExitCode::from(EXIT_ERROR);
    }
    ExitCode::from(code)
}

/// Set by `--quiet`: progress lines and notes stay unwritten.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the user asked for quiet (`--quiet`): only errors and the output asked for.
pub(crate) fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// The log's shape on stderr.
#[derive(Clone, Copy, Debug, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Its own report of a failed write is an `eprintln!`, which panics on a closed stderr.
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && !no_color())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// Whether the user asked for no colour (https://no-color.org: `NO_COLOR` set and not empty).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

/// The default database, shared by `perch serve` and the embedded target.
pub const DEFAULT_DB: &str = "sqlite://perch.db";
