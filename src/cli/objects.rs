//! The daily commands: `perch category|addin|group list|show`, `perch room show`,
//! `perch room members|managers|presenters add|remove`, and `perch forget`. Each goes through
//! the target the flags name (a server or the embedded store), so the server's rules decide.

use miette::{IntoDiagnostic, miette};
use serde_json::{Map, Value, json};

use super::reconcile::{TargetArgs, open_existing_target};
use super::{EXIT_ERROR, EXIT_OK};
use crate::domain::Kind;
use crate::live::Target;

/// `list` and `show` for a kind.
#[derive(Debug, clap::Subcommand)]
pub enum ObjectCommand {
    /// List every one you may see.
    List {
        /// Print them as one JSON array.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show one, every field.
    Show(ShowArgs),
}

/// Which object `show` shows, and how.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    name: String,
    /// Print it as JSON, as the API shows it.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: TargetArgs,
}

/// Adding to or removing from one of a room's lists.
#[derive(Debug, clap::Subcommand)]
pub enum ListCommand {
    /// Add principals (sip:user@domain, group:NAME, domain:NAME) to the list.
    Add {
        room: String,
        #[arg(required = true, value_name = "PRINCIPAL")]
        principals: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Remove principals from the list.
    Remove {
        room: String,
        #[arg(required = true, value_name = "PRINCIPAL")]
        principals: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// The object to stop managing, as KIND/NAME (Room/eng-news, Category/Engineering).
    #[arg(value_name = "KIND/NAME")]
    object: String,
    #[command(flatten)]
    target: TargetArgs,
}

/// Runs `body` against the target the flags name, closing it whatever happens.
async fn with_target<T>(
    args: &TargetArgs,
    body: impl AsyncFnOnce(&dyn Target) -> miette::Result<T>,
) -> miette::Result<T> {
    let target = open_existing_target(args).await?;
    let outcome = body(target.as_ref()).await;
    target.close().await;
    outcome
}

fn safe(text: &str) -> String {
    crate::text::terminal_safe(text).into_owned()
}

/// One line per object: its name and what tells it apart.
fn list_line(kind: Kind, object: &Map<String, Value>) -> String {
    let text = |field: &str| {
        safe(
            object
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )
    };
    let count = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    match kind {
        Kind::Category => format!(
            "{}  {} allowed, {} denied, {} creator(s)",
            text("name"),
            count("allowedMembers"),
            count("deniedMembers"),
            count("creators")
        ),
        Kind::Addin => format!("{}  {}", text("name"), text("url")),
        Kind::Group => format!("{}  {} member(s)", text("name"), count("members")),
        Kind::Room | Kind::ComplianceConfiguration => text("name"),
    }
}

/// Every field, lists one entry per line.
fn show_text(object: &Map<String, Value>) -> String {
    let mut out = String::new();
    for (field, value) in object {
        match value {
            Value::Array(items) => {
                out.push_str(&format!("{field}: ({})\n", items.len()));
                for item in items {
                    let item = item
                        .as_str()
                        .map_or_else(|| item.to_string(), str::to_owned);
                    out.push_str(&format!("  - {}\n", safe(&item)));
                }
            }
            Value::String(text) => out.push_str(&format!("{field}: {}\n", safe(text))),
            other => out.push_str(&format!("{field}: {other}\n")),
        }
    }
    out
}

/// `perch category|addin|group list|show`, and `perch room show`.
pub async fn run(kind: Kind, command: ObjectCommand) -> miette::Result<u8> {
    match command {
        ObjectCommand::List { json, target } => {
            let objects = with_target(&target, async |target| {
                target.list(kind).await.into_diagnostic()
            })
            .await?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&objects).into_diagnostic()?
                );
            } else {
                for object in &objects {
                    outln!("{}", list_line(kind, object));
                }
                outln!("{} {}(s)", objects.len(), kind.as_str().to_lowercase());
            }
            Ok(EXIT_OK)
        }
        ObjectCommand::Show(args) => show(kind, &args).await,
    }
}

pub async fn show(kind: Kind, args: &ShowArgs) -> miette::Result<u8> {
    let ShowArgs { name, json, target } = args;
    let found = with_target(target, async |target| {
        target.object(kind, name).await.into_diagnostic()
    })
    .await?;
    let Some(object) = found else {
        errln!("error: there is no {kind} \"{}\"", safe(name));
        return Ok(EXIT_ERROR);
    };
    if *json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&object).into_diagnostic()?
        );
    } else {
        out!("{}", show_text(&object));
    }
    Ok(EXIT_OK)
}

/// `perch room members|managers|presenters add|remove ROOM PRINCIPAL...`: one change of the
/// list, in one transaction on the server.
pub async fn change_list(field: &str, command: ListCommand) -> miette::Result<u8> {
    let (room, principals, target, verb, done) = match command {
        ListCommand::Add {
            room,
            principals,
            target,
        } => (room, principals, target, "add", "added to"),
        ListCommand::Remove {
            room,
            principals,
            target,
        } => (room, principals, target, "remove", "removed from"),
    };
    let mut body = Map::new();
    body.insert(field.to_owned(), json!({ verb: principals }));
    let object = with_target(&target, async |target| {
        target
            .patch(Kind::Room, &room, body)
            .await
            .into_diagnostic()
    })
    .await?;
    let count = object
        .get(field)
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    outln!(
        "{} principal(s) {done} the {field} of room {}; it lists {count} now",
        principals.len(),
        safe(&room)
    );
    Ok(EXIT_OK)
}

/// `perch forget KIND/NAME`: ends Perch's management of an object and keeps it, as a
/// `kind: Forget` document does on the next apply.
pub async fn forget(args: ForgetArgs) -> miette::Result<u8> {
    let (kind, name) = args
        .object
        .split_once('/')
        .and_then(|(kind, name)| {
            let kind = Kind::ALL
                .into_iter()
                .filter(|kind| *kind != Kind::ComplianceConfiguration)
                .find(|known| known.as_str().eq_ignore_ascii_case(kind))?;
            (!name.is_empty()).then_some((kind, name))
        })
        .ok_or_else(|| {
            miette!(
                "`{}` is not KIND/NAME (Room/eng-news, Category/Engineering, Addin/Dash, Group/eng)",
                safe(&args.object)
            )
        })?;
    with_target(&args.target, async |target| {
        let live = target.live().await.into_diagnostic()?;
        let Some(current) = live.objects.get(&(kind, name.to_owned())) else {
            errln!(
                "error: there is no {kind} \"{}\" on {}",
                safe(name),
                target.describe()
            );
            return Ok(EXIT_ERROR);
        };
        if !current.meta.managed && !current.meta.protect {
            outln!(
                "{kind} \"{}\" is not managed by perch; nothing to forget",
                safe(name)
            );
            return Ok(EXIT_OK);
        }
        let plan = crate::plan::Plan::of_one(crate::plan::forget(kind, name, current));
        let report = crate::live::apply_plan(target, &plan, |_| {}).await;
        if let Some((action, error)) = report.failed {
            return Err(miette!("{}", safe(&format!("`{action}`: {error}"))));
        }
        outln!(
            "forgot {kind} \"{}\": it stays on {} and perch no longer manages it; remove its manifest, or keep a `kind: Forget` document for it",
            safe(name),
            target.describe()
        );
        Ok(EXIT_OK)
    })
    .await
}
