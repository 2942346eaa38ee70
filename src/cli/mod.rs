//! The `perch` command line: argument parsing, diagnostics and exit codes.
//!
//! Exit codes, for every command: 0 success; 1 error (invalid input, unreachable target,
//! failed action); 2 "there are changes" where a command says so (`plan --detailed-exitcode`,
//! `drift`).

mod chat;
mod compliance;
mod data;
mod export;
mod migrate;
mod objects;
mod policy;
mod reconcile;
mod serve;
mod shell;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

    /// How log lines are written on stderr: text for people, json (one object a line) for
    /// log collectors.
    #[arg(
        long,
        global = true,
        env = "PERCH_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the chat server.
    Serve(serve::ServeArgs),
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
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(shell::CompletionsArgs),
    /// Print the manual page, or write one per command into a directory.
    Man(shell::ManArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    // Usage errors exit 1 like every other error: 2 means "changes found".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
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
    let default_log = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    init_tracing(cli.log.as_deref().unwrap_or(default_log), cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
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
            Command::Completions(args) => shell::completions(args),
            Command::Man(args) => shell::man(args),
        }
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The log's shape on stderr.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
