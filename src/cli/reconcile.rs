//! `perch validate | plan | apply | drift | export | schema`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{IntoDiagnostic, WrapErr, miette};
use serde_json::{Value, json};

use super::plan_cache::{CacheArgs, Key, PlanCache};
use super::{DEFAULT_DB, EXIT_CHANGES, EXIT_ERROR, EXIT_OK, policy};
use crate::api::Live;
use crate::live::embedded::EmbeddedTarget;
use crate::live::http::HttpTarget;
use crate::live::sfb::SfbTarget;
use crate::live::{self, Target, TargetError};
use crate::manifest::{self, Desired};
use crate::plan::render;
use crate::plan::{self, Plan};

/// Where the reconciler reads and writes.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// URL of a `perch serve` (e.g. http://127.0.0.1:8470). Without it, the embedded store at
    /// --db is used.
    #[arg(long, env = "PERCH_SERVER")]
    server: Option<String>,
    /// Bearer token for --server (an admin token).
    #[arg(long, env = "PERCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Database of the embedded store, the same one `perch serve --db` opens.
    #[arg(long, env = "PERCH_DB", default_value = DEFAULT_DB)]
    db: String,
    /// A Skype for Business Server 2015 pool, as a snapshot captured on it (the README's
    /// one-liners write categories.json, rooms.json, addins.json and compliance.json here);
    /// `apply` then writes a PowerShell script (--out) instead of changing anything.
    #[arg(long, value_name = "DIR", conflicts_with = "server")]
    sfb_snapshot: Option<PathBuf>,
    /// With --sfb-snapshot: the pool's FQDN, when the snapshot names none or several.
    #[arg(long, value_name = "FQDN", requires = "sfb_snapshot")]
    sfb_pool: Option<String>,
    /// With --sfb-snapshot: a YAML mapping of `group:NAME` and `domain:NAME` principals to the
    /// Active Directory distinguished names the server takes.
    #[arg(long, value_name = "FILE", requires = "sfb_snapshot")]
    principal_map: Option<PathBuf>,
}

impl TargetArgs {
    pub fn token(&self) -> miette::Result<&str> {
        self.token
            .as_deref()
            .ok_or_else(|| miette!("--server needs a token: pass --token or set PERCH_TOKEN"))
    }
}

/// Opens the target the flags name: the server at `--server`, or the embedded store at `--db`.
/// Call [`Target::close`] when done.
/// [`open_target`] for a command that does not bring a database into being: an embedded
/// store whose SQLite file does not exist is an error rather than a new, empty database (a
/// mistyped `--db` would otherwise back up, export or list nothing, and succeed).
pub async fn open_existing_target(args: &TargetArgs) -> miette::Result<Arc<dyn Target>> {
    if args.server.is_none() && args.sfb_snapshot.is_none() {
        require_existing_database(&args.db)?;
    }
    open_target(args).await
}

/// Refuses a SQLite URL whose file does not exist.
pub fn require_existing_database(url: &str) -> miette::Result<()> {
    match EmbeddedTarget::database_file(url) {
        Some(path) if !path.exists() => Err(miette!(
            "no database at {}: this command creates none (check --db or PERCH_DB; `perch apply` or `perch serve` creates one)",
            crate::text::terminal_safe(&path.display().to_string())
        )),
        _ => Ok(()),
    }
}

pub async fn open_target(args: &TargetArgs) -> miette::Result<Arc<dyn Target>> {
    if let Some(dir) = &args.sfb_snapshot {
        let target = SfbTarget::open(dir, args.sfb_pool.as_deref(), args.principal_map.as_deref())
            .map_err(|error| miette!("{}", crate::text::lines_safe(&error.to_string())))?;
        return Ok(Arc::new(target));
    }
    match &args.server {
        Some(server) => {
            let target = HttpTarget::new(server, args.token()?).into_diagnostic()?;
            Ok(Arc::new(target))
        }
        None => Ok(Arc::new(
            EmbeddedTarget::open(&args.db).await.into_diagnostic()?,
        )),
    }
}

/// Which part of the plan to make, and how much of it to print.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PartArgs {
    /// Plan only these objects, and what they need (said on stderr): KIND/NAME, with globs
    /// (`Room/eng-*`, `*/legacy-*`); repeatable.
    #[arg(long = "target", value_name = "KIND/NAME")]
    targets: Vec<String>,
    /// Leave these objects out of the plan: KIND/NAME, with globs; repeatable. Refused when a
    /// planned object needs one.
    #[arg(long = "exclude", value_name = "KIND/NAME")]
    excludes: Vec<String>,
}

impl PartArgs {
    fn selection(&self) -> miette::Result<plan::select::Selection> {
        let parse = |texts: &[String]| -> miette::Result<Vec<plan::select::Pattern>> {
            texts
                .iter()
                .map(|text| {
                    plan::select::Pattern::parse(text)
                        .map_err(|why| miette!("{}", crate::text::terminal_safe(&why)))
                })
                .collect()
        };
        Ok(plan::select::Selection {
            targets: parse(&self.targets)?,
            excludes: parse(&self.excludes)?,
        })
    }
}

/// How much of a plan a terminal or a CI log shows.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DetailArgs {
    /// Print only counts per kind and verb, not each action.
    #[arg(long, conflicts_with = "full")]
    summary: bool,
    /// Print every action in full (by default the first 200 are, and the rest are counted).
    #[arg(long)]
    full: bool,
}

impl DetailArgs {
    fn detail(&self) -> render::Detail {
        if self.summary {
            render::Detail::Counts
        } else if self.full {
            render::Detail::Full
        } else {
            render::Detail::First(render::SHOWN_IN_FULL)
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Manifest files or directories (searched for *.yaml and *.yml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Follow symbolic links that lead outside the given paths (by default only links within
    /// them are read: a link in a pull request could point at a secret).
    #[arg(long)]
    follow_symlinks: bool,
    /// Print the problems as JSON.
    #[arg(long)]
    json: bool,
    /// Accepted like every command's target, so that scripts pass the same flags everywhere;
    /// validation reads no server.
    #[command(flatten)]
    _target: TargetArgs,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Manifest files or directories (searched for *.yaml and *.yml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Follow symbolic links that lead outside the given paths (by default only links within
    /// them are read: a link in a pull request could point at a secret).
    #[arg(long)]
    follow_symlinks: bool,
    #[command(flatten)]
    target: TargetArgs,
    /// Print the plan as versioned JSON (format 1).
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// Print a compact Markdown summary for a pull-request comment.
    #[arg(long)]
    markdown: bool,
    /// Save the plan, with the version of every live object it read, for `apply --plan`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Fail (exit 1) when the plan removes more than N objects (default: `maxRemove` in a
    /// perch.yaml at the manifests' root; no limit without one).
    #[arg(long, value_name = "N")]
    max_remove: Option<u64>,
    #[command(flatten)]
    part: PartArgs,
    #[command(flatten)]
    detail: DetailArgs,
    /// Check the desired state and the plan against the rules of a policy file (see the
    /// README); a `deny` rule broken fails the plan (exit 1), a `warn` rule is printed.
    #[arg(long, value_name = "FILE")]
    policy: Vec<PathBuf>,
    #[command(flatten)]
    cache: CacheArgs,
}

/// The manifests' fingerprint (see `manifest::fingerprint`), made on a thread of its own so
/// that it runs while the target opens: on a cached plan it is most of the time. A plain
/// thread rather than the runtime's blocking pool, which an exit would wait for when the
/// fingerprint is no longer wanted (the target failed to open, or has no change counter).
fn start_fingerprint(args: &PlanArgs) -> tokio::sync::oneshot::Receiver<Option<String>> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let paths = args.paths.clone();
    let options = manifest::LoadOptions {
        follow_symlinks: args.follow_symlinks,
    };
    std::thread::spawn(move || {
        let _ = sender.send(manifest::fingerprint(&paths, options));
    });
    receiver
}

/// The key `plan`'s cache is looked up by, when the target has a change counter and the
/// manifests can be read. The counter is read before the live state: see `plan_cache`.
async fn plan_cache_key(
    args: &PlanArgs,
    target: &dyn Target,
    settings: &manifest::settings::Settings,
    fingerprint: tokio::sync::oneshot::Receiver<Option<String>>,
) -> Option<Key> {
    let counter = match target.change_counter().await {
        Ok(counter) => counter?,
        Err(error) => {
            tracing::debug!(%error, "no change counter: planning without the cache");
            return None;
        }
    };
    let fingerprint = fingerprint.await.ok()??;
    let settings = format!("{settings:?}");
    let part = format!("{:?}", args.part);
    Some(Key::new(
        &target.describe(),
        counter,
        &fingerprint,
        &[&settings, &part],
    ))
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Manifest files or directories; or give --plan.
    #[arg(required_unless_present = "plan", conflicts_with = "plan")]
    paths: Vec<PathBuf>,
    /// Follow symbolic links that lead outside the given paths (by default only links within
    /// them are read: a link in a pull request could point at a secret).
    #[arg(long)]
    follow_symlinks: bool,
    /// Carry out a plan saved by `perch plan --out`; refused if the server changed since.
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
    /// Apply without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Refuse a plan that removes more than N objects (default: `maxRemove` in a perch.yaml
    /// at the manifests' root; no limit without one).
    #[arg(long, value_name = "N")]
    max_remove: Option<u64>,
    /// With --sfb-snapshot: where to write the PowerShell script that makes the pool match.
    #[arg(long, value_name = "FILE.ps1")]
    out: Option<PathBuf>,
    /// The revision the manifests come from (e.g. `$(git rev-parse HEAD)`), recorded with them
    /// on the server for its Git view.
    #[arg(long, value_name = "REV")]
    revision: Option<String>,
    #[command(flatten)]
    part: PartArgs,
    #[command(flatten)]
    detail: DetailArgs,
}

#[derive(Debug, clap::Args)]
pub struct DriftArgs {
    /// Manifest files or directories (searched for *.yaml and *.yml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Follow symbolic links that lead outside the given paths (by default only links within
    /// them are read: a link in a pull request could point at a secret).
    #[arg(long)]
    follow_symlinks: bool,
    #[command(flatten)]
    target: TargetArgs,
    /// Print the drift as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    part: PartArgs,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Directory to write the manifests into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
}

/// The manifests, each file read by the thread that checks it and its text let go once
/// checked (the freed memory then holds the next files' objects, rather than fresh pages).
fn load_manifests(paths: &[PathBuf], options: manifest::LoadOptions) -> Result<Desired, u8> {
    loading(|| manifest::load_with(paths, options), Desired::len)
}

/// The manifests and the files' texts as checked (what `apply` records for the Git view).
fn load_manifests_with_sources(
    paths: &[PathBuf],
    options: manifest::LoadOptions,
) -> Result<(Desired, Vec<manifest::SourceFile>), u8> {
    loading(
        || manifest::load_with_sources(paths, options),
        |(desired, _)| desired.len(),
    )
}

/// Runs a load of the manifests, logging how long it took, or prints its problems.
fn loading<T>(
    load: impl FnOnce() -> Result<T, Vec<manifest::Problem>>,
    objects: impl Fn(&T) -> usize,
) -> Result<T, u8> {
    let started = std::time::Instant::now();
    match load() {
        Ok(loaded) => {
            tracing::debug!(objects = objects(&loaded), elapsed = ?started.elapsed(), "loaded the manifests");
            Ok(loaded)
        }
        Err(problems) => {
            err!("{}", manifest::render_problems(&problems));
            errln!("error: {} problem(s) in the manifests", problems.len());
            Err(EXIT_ERROR)
        }
    }
}

#[allow(
    clippy::needless_pass_by_value,
    clippy::unnecessary_wraps,
    reason = "every command takes its arguments and returns a Result alike"
)]
pub fn validate(args: ValidateArgs) -> miette::Result<u8> {
    let options = manifest::LoadOptions {
        follow_symlinks: args.follow_symlinks,
    };
    match manifest::load_with(&args.paths, options) {
        Ok(desired) => {
            if args.json {
                outln!(
                    "{}",
                    json!({"valid": true, "objects": desired.len(), "problems": []})
                );
            } else {
                outln!("valid: {} object(s)", desired.len());
            }
            leave_for_exit(desired);
            Ok(EXIT_OK)
        }
        Err(problems) => {
            if args.json {
                let items: Vec<Value> = problems
                    .iter()
                    .map(|p| {
                        json!({"file": p.file.display().to_string(), "line": p.position.line,
                               "column": p.position.column, "message": p.message})
                    })
                    .collect();
                outln!("{}", json!({"valid": false, "problems": items}));
            } else {
                out!("{}", manifest::render_problems(&problems));
                outln!("invalid: {} problem(s)", problems.len());
            }
            Ok(EXIT_ERROR)
        }
    }
}

async fn read_live(target: &dyn Target) -> miette::Result<Live> {
    let started = std::time::Instant::now();
    let live = target
        .live()
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the live state of {}", target.describe()))?;
    tracing::debug!(objects = live.objects.len(), elapsed = ?started.elapsed(), "read the live state");
    Ok(live)
}

/// Loads the manifests on other threads while the live state is read: the two take about as
/// long as each other on large configurations.
async fn load_and_read(
    paths: &[PathBuf],
    options: manifest::LoadOptions,
    target: &dyn Target,
) -> miette::Result<Result<(Desired, Live), u8>> {
    let paths = paths.to_vec();
    let loading = tokio::task::spawn_blocking(move || load_manifests(&paths, options));
    let live = read_live(target).await;
    let desired = loading.await.into_diagnostic()?;
    match desired {
        Ok(desired) => Ok(Ok((desired, live?))),
        Err(code) => Ok(Err(code)),
    }
}

/// Big plans hold hundreds of megabytes of small allocations; the process is about to exit,
/// so they are left for the operating system rather than freed one by one.
fn leave_for_exit<T>(value: T) {
    std::mem::forget(value);
}

/// The plan the manifests ask of `live`: with the repository's settings, cut to the part
/// asked for (what was pulled in said on stderr), and the messages its room removals delete
/// counted where the target can count them.
async fn make_plan(
    desired: &Desired,
    live: &Live,
    target: &dyn Target,
    settings: &manifest::settings::Settings,
    part: &PartArgs,
    notes: &mut Vec<String>,
) -> miette::Result<Plan> {
    let selection = part.selection()?;
    let started = std::time::Instant::now();
    let options = plan::PlanOptions {
        ignore_fields: settings.ignore_fields.clone(),
    };
    let whole = plan::plan_with(desired, live, &options).into_diagnostic()?;
    tracing::debug!(actions = whole.actions.len(), elapsed = ?started.elapsed(), "planned");
    let selected = plan::select::select(whole, live, &selection)
        .map_err(|why| miette!("{}", crate::text::terminal_safe(&why)))?;
    for (action, why) in &selected.pulled_in {
        let note = format!("note: also planned, as it is needed: {action}, {why}");
        notes.push(crate::text::terminal_safe(&note).into_owned());
    }
    if !selection.is_everything() {
        notes.push(format!(
            "note: --target/--exclude leave {} action(s) of the whole plan out",
            selected.left_out
        ));
    }
    for line in notes.iter() {
        note!("{line}");
    }
    let mut plan = selected.plan;
    let removed_rooms = plan.removed_room_ids(live);
    if !removed_rooms.is_empty() {
        match target.message_counts(&removed_rooms).await {
            Ok(counts) => plan.count_removed_messages(live, &counts),
            Err(error) => errln!(
                "warning: {} cannot count the messages of the rooms the plan removes: {}",
                target.describe(),
                crate::text::terminal_safe(&error.to_string())
            ),
        }
    }
    Ok(plan)
}

/// The repository's perch.yaml, or the error that names what is wrong with it.
fn read_settings(paths: &[PathBuf]) -> Result<manifest::settings::Settings, u8> {
    manifest::settings::read(paths).map_err(|why| {
        errln!("error: {}", crate::text::terminal_safe(&why));
        EXIT_ERROR
    })
}

pub async fn plan(args: PlanArgs) -> miette::Result<u8> {
    // A policy reads the whole desired state, which a cached plan does not load.
    let cache = if args.policy.is_empty() {
        PlanCache::open(&args.cache)
    } else {
        None
    };
    // A Skype for Business snapshot has no change counter: nothing of it is cached.
    let fingerprint =
        (cache.is_some() && args.target.sfb_snapshot.is_none()).then(|| start_fingerprint(&args));
    let target = open_target(&args.target).await?;
    let outcome = async {
        let settings = match read_settings(&args.paths) {
            Ok(settings) => settings,
            Err(code) => return Ok(code),
        };
        let key = match fingerprint {
            Some(fingerprint) => {
                plan_cache_key(&args, target.as_ref(), &settings, fingerprint).await
            }
            None => None,
        };
        let cached = cache
            .as_ref()
            .zip(key.as_ref())
            .and_then(|(cache, key)| cache.get(key));
        let (plan, policy, kept) = if let Some((plan, notes)) = cached {
            for line in &notes {
                note!("{line}");
            }
            if let Some(key) = &key {
                note!(
                    "note: the plan made before for these files at the server's generation {}: neither changed (--no-cache makes it afresh)",
                    key.counter().generation
                );
            }
            (plan, policy::Report::default(), None)
        } else {
            let (desired, live) = match load_and_read(
                &args.paths,
                manifest::LoadOptions {
                    follow_symlinks: args.follow_symlinks,
                },
                target.as_ref(),
            )
            .await?
            {
                Ok(both) => both,
                Err(code) => return Ok(code),
            };
            let mut notes = Vec::new();
            let plan = make_plan(
                &desired,
                &live,
                target.as_ref(),
                &settings,
                &args.part,
                &mut notes,
            )
            .await?;
            let policy = match policy::check_files(&args.policy, &desired, &plan) {
                Ok(report) => report,
                Err(why) => {
                    errln!("error: {}", crate::text::lines_safe(&why));
                    leave_for_exit((desired, live, plan));
                    return Ok(EXIT_ERROR);
                }
            };
            // Removals count messages, which change without the configuration changing.
            // The files are hashed again: one edited while they were read would otherwise
            // leave this plan under the key of what they held before.
            if let (Some(cache), Some(key)) = (&cache, &key)
                && plan.removed_room_ids(&live).is_empty()
                && start_fingerprint(&args).await.ok().flatten().as_deref()
                    == Some(key.fingerprint())
            {
                cache.put(key, &plan, &notes);
            }
            (plan, policy, Some((desired, live)))
        };
        if let Some(out) = &args.out {
            let text = serde_json::to_string_pretty(&plan).into_diagnostic()?;
            write_atomically(out, text.as_bytes())?;
        }
        let described = target.describe();
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&plan).into_diagnostic()?);
        } else if args.markdown {
            out!("{}", render::markdown(&plan, &described));
        } else {
            out!(
                "{}",
                render::human_with(&plan, &described, args.detail.detail())
            );
        }
        if !policy.violations.is_empty() {
            err!("{}", crate::text::lines_safe(&policy.render()));
        }
        if let Some(out) = &args.out {
            errln!(
                "saved the plan to {}; carry it out with `perch apply --plan {}`",
                out.display(),
                out.display()
            );
        }
        if let Err(refusal) = guard_removals(&plan, args.max_remove, &settings) {
            errln!("{refusal}");
            leave_for_exit((kept, plan));
            return Ok(EXIT_ERROR);
        }
        if policy.denies() {
            errln!(
                "error: the plan breaks {} deny rule(s) of the policy",
                policy.denied()
            );
            leave_for_exit((kept, plan));
            return Ok(EXIT_ERROR);
        }
        let code = if args.detailed_exitcode && plan.has_changes() {
            EXIT_CHANGES
        } else {
            EXIT_OK
        };
        leave_for_exit((kept, plan));
        Ok::<_, miette::Report>(code)
    }
    .await;
    target.close().await;
    outcome
}

fn this_host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map_or_else(|_| "localhost".to_owned(), |h| h.trim().to_owned())
}

/// This process's PID namespace (`pid:[4026531836]`): two containers may share a host name
/// and not see each other's processes.
fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|link| link.to_string_lossy().into_owned())
}

/// How an apply names itself as the lock's holder: `USER@HOST (pid N in NAMESPACE)`.
fn lock_holder() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".to_owned());
    match pid_namespace() {
        Some(namespace) => format!(
            "{user}@{} (pid {} in {namespace})",
            this_host(),
            std::process::id()
        ),
        None => format!("{user}@{} (pid {})", this_host(), std::process::id()),
    }
}

/// The host, pid and PID namespace of a holder named by [`lock_holder`].
fn holder_process(holder: &str) -> Option<(&str, u32, Option<&str>)> {
    let (who, rest) = holder.rsplit_once(" (pid ")?;
    let rest = rest.strip_suffix(')')?;
    let (pid, namespace) = match rest.split_once(" in ") {
        Some((pid, namespace)) => (pid, Some(namespace)),
        None => (rest, None),
    };
    let (_, host) = who.rsplit_once('@')?;
    Some((host, pid.parse().ok()?, namespace))
}

/// Whether a holder is provably dead: an apply on this very host, in this PID namespace,
/// whose process is gone. A holder that does not name its namespace, another host's, or any
/// on a system without `/proc`, proves nothing.
fn holder_is_dead(holder: &str) -> bool {
    let Some((host, pid, Some(namespace))) = holder_process(holder) else {
        return false;
    };
    let proc = Path::new("/proc");
    host == this_host()
        && pid_namespace().as_deref() == Some(namespace)
        && pid != std::process::id()
        && proc.join("self").exists()
        && !proc.join(pid.to_string()).exists()
}

/// Takes the apply lock; a lock held by a provably dead apply on this host is taken over,
/// saying so.
async fn take_apply_lock(target: &dyn Target, holder: &str) -> Result<(), TargetError> {
    match target.lock(holder, LOCK_TTL_SECONDS).await {
        Err(TargetError::LockHeld { holder: old, .. }) if holder_is_dead(&old) => {
            if let Some(broken) = target.break_lock(crate::service::APPLY_LOCK).await? {
                note!(
                    "note: took over the apply lock from {}, whose process is gone",
                    crate::text::terminal_safe(&broken)
                );
            }
            target.lock(holder, LOCK_TTL_SECONDS).await
        }
        other => other,
    }
}

const LOCK_TTL_SECONDS: i64 = 120;

/// Refuses a plan that removes more objects than `--max-remove`, or than `maxRemove` in the
/// manifests' perch.yaml: a deleted directory in a pull request must not empty the server.
fn guard_removals(
    plan: &Plan,
    flag: Option<u64>,
    settings: &manifest::settings::Settings,
) -> Result<(), String> {
    let (limit, source) = match (flag, settings.max_remove) {
        (Some(limit), _) => (limit, "--max-remove".to_owned()),
        (None, Some(limit)) => (
            limit,
            format!(
                "maxRemove in {}",
                settings
                    .from
                    .as_ref()
                    .map(|from| from.display().to_string())
                    .unwrap_or_default()
            ),
        ),
        (None, None) => return Ok(()),
    };
    let removes = plan.summary.remove as u64;
    if removes > limit {
        return Err(format!(
            "error: the plan removes {removes} object(s), more than {limit} ({}); if that is meant, raise the limit",
            crate::text::terminal_safe(&source)
        ));
    }
    Ok(())
}

/// Writes what an offline target (a Skype for Business snapshot) built for the plan to --out.
fn write_script(target: &dyn Target, plan: &Plan, args: &ApplyArgs) -> miette::Result<u8> {
    let (Some(out), Some(script)) = (
        &args.out,
        target.offline_script(&render::summary_line(plan)),
    ) else {
        return Err(miette!("this target builds no script"));
    };
    crate::atomic_file::write(out, script.as_bytes())
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", out.display()))?;
    let cmdlets = script
        .trim_start_matches('\u{feff}')
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('$'))
        .count();
    outln!(
        "Wrote {} ({cmdlets} cmdlet(s)): review it, then run it in the Skype for Business Server Management Shell.",
        out.display()
    );
    Ok(EXIT_OK)
}

/// Records the manifests a finished apply carried out, for the server's Git view. An apply
/// from a saved plan has no manifests to record; a server that cannot record (an older one)
/// is told nothing, and the apply still succeeded.
async fn record_applied(
    target: &dyn Target,
    sources: Option<Vec<manifest::SourceFile>>,
    revision: Option<&str>,
    stopped: Option<String>,
) {
    let Some(files) = sources else {
        return;
    };
    let request = crate::api::wire::AppliedRequest {
        revision: revision.map(str::to_owned),
        stopped,
        files,
    };
    if let Err(error) = target.record_applied(&request).await {
        errln!(
            "warning: the apply is done, but {} did not record its manifests for the Git view: {}",
            target.describe(),
            crate::text::terminal_safe(&error.to_string())
        );
    }
}

pub async fn apply(args: ApplyArgs) -> miette::Result<u8> {
    match (&args.target.sfb_snapshot, &args.out) {
        (Some(_), None) => {
            return Err(miette!(
                "apply to a Skype for Business snapshot writes a PowerShell script: give --out FILE.ps1"
            ));
        }
        (None, Some(_)) => {
            return Err(miette!(
                "--out writes the PowerShell script of an apply to --sfb-snapshot; other targets change at once"
            ));
        }
        _ => {}
    }
    let saved: Option<Plan> = match &args.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read the plan {}", path.display()))?;
            let plan: Plan = serde_json::from_str(&text)
                .into_diagnostic()
                .wrap_err_with(|| format!("{} is not a perch plan", path.display()))?;
            if !(1..=plan::PLAN_FORMAT_VERSION).contains(&plan.format_version) {
                return Err(miette!(
                    "{} is plan format {}; this perch reads formats 1 to {}",
                    path.display(),
                    plan.format_version,
                    plan::PLAN_FORMAT_VERSION
                ));
            }
            Some(plan)
        }
        None => None,
    };
    let desired = match &saved {
        Some(_) => None,
        None => match load_manifests_with_sources(
            &args.paths,
            manifest::LoadOptions {
                follow_symlinks: args.follow_symlinks,
            },
        ) {
            Ok(desired) => Some(desired),
            Err(code) => return Ok(code),
        },
    };
    let target = open_target(&args.target).await?;
    let holder = lock_holder();
    if let Err(error) = take_apply_lock(target.as_ref(), &holder).await {
        target.close().await;
        return Err(match error {
            TargetError::LockHeld { holder, since } => {
                miette!(
                    "another apply is running on {}: the lock is held by {}{}; if it is not running, `perch unlock` breaks the lock",
                    target.describe(),
                    crate::text::terminal_safe(&holder),
                    if since.is_empty() {
                        String::new()
                    } else {
                        format!(" since {since}")
                    }
                )
            }
            other => miette!(
                "cannot take the apply lock on {}: {other}",
                target.describe()
            ),
        });
    }
    // Renew the lock while the apply runs; it lapses on its own if this process dies.
    let renewer = {
        let target = target.clone();
        let holder = holder.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                if let Err(error) = target.lock(&holder, LOCK_TTL_SECONDS).await {
                    tracing::warn!(%error, "cannot renew the apply lock");
                }
            }
        })
    };
    let outcome = apply_locked(target.as_ref(), saved, desired, &args).await;
    renewer.abort();
    if let Err(error) = target.unlock(&holder).await {
        tracing::warn!(%error, "cannot release the apply lock; it lapses in {LOCK_TTL_SECONDS} s");
    }
    target.close().await;
    outcome
}

async fn apply_locked(
    target: &dyn Target,
    saved: Option<Plan>,
    desired: Option<(Desired, Vec<manifest::SourceFile>)>,
    args: &ApplyArgs,
) -> miette::Result<u8> {
    let settings = match read_settings(&args.paths) {
        Ok(settings) => settings,
        Err(code) => return Ok(code),
    };
    let live = read_live(target).await?;
    let (desired, sources) = desired.map_or((None, None), |(desired, sources)| {
        (Some(desired), Some(sources))
    });
    let plan = match (saved, desired) {
        (Some(_), _) if !args.part.targets.is_empty() || !args.part.excludes.is_empty() => {
            return Err(miette!(
                "--target and --exclude choose what `perch plan` plans; a saved plan is carried out whole"
            ));
        }
        (Some(plan), _) => {
            let stale = plan::stale_reads(&plan, &live);
            if !stale.is_empty() {
                errln!("error: the saved plan is stale; the server changed since it was made:");
                for line in &stale {
                    errln!("  {}", crate::text::terminal_safe(line));
                }
                errln!("make a new plan with `perch plan --out`");
                return Ok(EXIT_ERROR);
            }
            plan
        }
        (None, Some(desired)) => {
            make_plan(
                &desired,
                &live,
                target,
                &settings,
                &args.part,
                &mut Vec::new(),
            )
            .await?
        }
        (None, None) => return Err(miette!("nothing to apply")),
    };
    out!(
        "{}",
        render::human_with(&plan, &target.describe(), args.detail.detail())
    );
    if let Err(refusal) = guard_removals(&plan, args.max_remove, &settings) {
        errln!("{refusal}");
        errln!("nothing was changed");
        return Ok(EXIT_ERROR);
    }
    let offline = args.out.is_some();
    if plan.actions.is_empty() {
        record_applied(target, sources, args.revision.as_deref(), None).await;
        if offline {
            return write_script(target, &plan, args);
        }
        return Ok(EXIT_OK);
    }
    // A script changes nothing until someone runs it: no question to ask.
    if plan.has_changes() && !args.yes && !offline {
        if !std::io::stdin().is_terminal() {
            errln!("error: refusing to apply without --yes: there is no terminal to ask on");
            return Ok(EXIT_ERROR);
        }
        err!(
            "\nApply these changes to {}? Only 'yes' is accepted: ",
            target.describe()
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).into_diagnostic()?;
        if answer.trim() != "yes" {
            errln!("apply cancelled; nothing was changed");
            return Ok(EXIT_ERROR);
        }
    }
    let bar = if std::io::stderr().is_terminal() && !super::quiet() {
        let bar = indicatif::ProgressBar::new(plan.actions.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} actions  {elapsed} (eta {eta})",
        ) {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };
    let mut log = ProgressLog::new(plan.actions.len());
    let report = live::apply_plan(target, &plan, |done| {
        if let Some(bar) = &bar {
            bar.set_position(done as u64);
        } else {
            log.done(done);
        }
    })
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match report.failed {
        None if offline => write_script(target, &plan, args),
        None => {
            record_applied(target, sources, args.revision.as_deref(), None).await;
            let forgotten = if plan.summary.forget > 0 {
                format!(", {} forgotten", plan.summary.forget)
            } else {
                String::new()
            };
            outln!(
                "Apply complete: {} created, {} changed, {} removed, {} adopted{forgotten}.",
                plan.summary.create,
                plan.summary.change,
                plan.summary.remove,
                plan.summary.adopt
            );
            Ok(EXIT_OK)
        }
        Some((action, error)) if offline => {
            let failure = format!("error: no script was written: `{action}`: {error}");
            errln!("{}", crate::text::terminal_safe(&failure));
            if let Some(out) = args.out.as_ref().filter(|out| out.exists()) {
                errln!(
                    "note: {} is from an earlier run, not this plan",
                    crate::text::terminal_safe(&out.display().to_string())
                );
            }
            Ok(EXIT_ERROR)
        }
        Some((action, error)) => {
            // What was done is committed: the Git view compares with these manifests, and
            // says that the apply stopped part way.
            let stopped = format!("stopped at `{action}`: {error}");
            record_applied(target, sources, args.revision.as_deref(), Some(stopped)).await;
            let failure = format!("error: apply stopped at `{action}`: {error}");
            errln!("{}", crate::text::terminal_safe(&failure));
            errln!("done ({}):", report.done.len());
            for line in report.done.iter().rev().take(20).rev() {
                errln!("  {}", crate::text::terminal_safe(line));
            }
            if report.done.len() > 20 {
                errln!("  (and {} earlier)", report.done.len() - 20);
            }
            errln!(
                "not done ({}): `{}` and",
                report.not_done.len() + 1,
                crate::text::terminal_safe(&action)
            );
            for line in report.not_done.iter().take(20) {
                errln!("  {}", crate::text::terminal_safe(line));
            }
            if report.not_done.len() > 20 {
                errln!("  (and {} more)", report.not_done.len() - 20);
            }
            errln!("run `perch plan` to see what is left");
            Ok(EXIT_ERROR)
        }
    }
}

/// Progress for logs, where no bar can be drawn: a line every few seconds, so that a CI log
/// shows a long apply moving.
struct ProgressLog {
    total: usize,
    started: std::time::Instant,
    last: std::time::Instant,
}

impl ProgressLog {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    fn new(total: usize) -> ProgressLog {
        let now = std::time::Instant::now();
        ProgressLog {
            total,
            started: now,
            last: now,
        }
    }

    fn done(&mut self, done: usize) {
        if self.last.elapsed() < Self::EVERY || done >= self.total {
            return;
        }
        self.last = std::time::Instant::now();
        note!(
            "applied {done}/{} action(s) in {} s",
            self.total,
            self.started.elapsed().as_secs()
        );
    }
}

pub async fn drift(args: DriftArgs) -> miette::Result<u8> {
    let target = open_existing_target(&args.target).await?;
    let outcome = async {
        let (desired, live) = match load_and_read(
            &args.paths,
            manifest::LoadOptions {
                follow_symlinks: args.follow_symlinks,
            },
            target.as_ref(),
        )
        .await?
        {
            Ok(both) => both,
            Err(code) => return Ok(code),
        };
        let settings = match read_settings(&args.paths) {
            Ok(settings) => settings,
            Err(code) => return Ok(code),
        };
        let plan = make_plan(
            &desired,
            &live,
            target.as_ref(),
            &settings,
            &args.part,
            &mut Vec::new(),
        )
        .await?;
        let drifted: Vec<&plan::Action> = plan
            .actions
            .iter()
            .filter(|action| !action.adopt_only)
            .collect();
        let removals = live::who_removed(target.as_ref(), &drifted).await;
        if args.json {
            let objects: Vec<Value> = drifted
                .iter()
                .map(|action| {
                    let removed = removals.get(&(action.kind, action.name.clone()));
                    json!({
                        "kind": action.kind, "name": action.name, "action": action.action,
                        "reason": action.reason, "changes": action.changes,
                        "updatedBy": action.live_updated_by, "updatedAt": action.live_updated_at,
                        "removedBy": removed.map(|entry| &entry.actor),
                        "removedAt": removed.map(|entry| &entry.at),
                    })
                })
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"drifted": !drifted.is_empty(), "objects": objects})
                )
                .into_diagnostic()?
            );
        } else if drifted.is_empty() {
            outln!(
                "No drift: {} matches the manifests ({} object(s)).",
                target.describe(),
                desired.len()
            );
        } else {
            outln!(
                "Drift on {}: {} object(s) differ from the manifests.\n",
                target.describe(),
                drifted.len()
            );
            for action in &drifted {
                let removed = removals.get(&(action.kind, action.name.clone()));
                let who = match (&action.live_updated_by, &action.live_updated_at, removed) {
                    (Some(by), Some(at), _) => format!("; last changed by {by} at {at}"),
                    (_, _, Some(entry)) => format!(
                        "; removed by {} at {}",
                        crate::text::terminal_safe(&entry.actor),
                        crate::text::terminal_safe(&entry.at)
                    ),
                    _ => String::new(),
                };
                let what = match action.action {
                    plan::Verb::Remove => "on the server but no longer in the manifests".to_owned(),
                    plan::Verb::Create | plan::Verb::Set => action.reason.to_string(),
                };
                let report = format!("  {}: {what}{who}", action.subject());
                outln!("{}", crate::text::terminal_safe(&report));
            }
        }
        Ok::<_, miette::Report>(if drifted.is_empty() {
            EXIT_OK
        } else {
            EXIT_CHANGES
        })
    }
    .await;
    target.close().await;
    outcome
}

pub async fn export(args: ExportArgs) -> miette::Result<u8> {
    let target = open_existing_target(&args.target).await?;
    let outcome = async {
        let live = read_live(target.as_ref()).await?;
        let files = super::export::manifests(&live)?;
        std::fs::create_dir_all(&args.out)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot create {}", args.out.display()))?;
        let schema =
            serde_json::to_string_pretty(&manifest::docs::json_schema()).into_diagnostic()?;
        write_atomically(
            &args.out.join("perch.schema.json"),
            format!("{schema}\n").as_bytes(),
        )?;
        let earlier = super::export::written_before(&args.out);
        let mut total = 0;
        let mut written = std::collections::BTreeSet::new();
        for (name, text, count) in files {
            write_atomically(&args.out.join(&name), text.as_bytes())?;
            written.insert(name);
            total += count;
        }
        // Only once every new file is in place do the earlier export's others go: a plan over
        // the directory never sees an object twice, nor one the server no longer has.
        let mut stale = 0;
        for name in earlier.difference(&written) {
            match std::fs::remove_file(args.out.join(name)) {
                Ok(()) => stale += 1,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(error)
                        .into_diagnostic()
                        .wrap_err_with(|| format!("cannot remove the stale export file {name}"));
                }
            }
        }
        write_atomically(
            &args.out.join(super::export::INDEX_FILE),
            super::export::index_text(&written).as_bytes(),
        )?;
        let stale_note = if stale > 0 {
            format!("; removed {stale} file(s) of an earlier export")
        } else {
            String::new()
        };
        outln!(
            "exported {total} object(s) from {} to {}{stale_note}",
            target.describe(),
            args.out.display()
        );
        Ok::<_, miette::Report>(EXIT_OK)
    }
    .await;
    target.close().await;
    outcome
}

/// Which JSON Schema `perch schema` prints.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SchemaOf {
    /// Manifest documents (`schema/perch.schema.json`).
    Manifests,
    /// The compliance archive's JSON files (`schema/compliance.schema.json`).
    ComplianceArchive,
    /// The HTTP API, as OpenAPI 3.1 (`schema/openapi.json`, also `GET /v1/openapi.json`).
    Openapi,
}

pub fn schema(of: SchemaOf) -> miette::Result<u8> {
    let schema = match of {
        SchemaOf::Manifests => manifest::docs::json_schema(),
        SchemaOf::ComplianceArchive => crate::service::compliance_archive_schema(),
        SchemaOf::Openapi => crate::api::openapi::document(),
    };
    let schema = serde_json::to_string_pretty(&schema).into_diagnostic()?;
    outln!("{schema}");
    Ok(EXIT_OK)
}

/// Writes a file so that readers see the old or the new content, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> miette::Result<()> {
    crate::atomic_file::write(path, bytes)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", path.display()))
}

#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// The lock to break: `apply` (default), or `archiver`.
    #[arg(
        default_value = crate::service::APPLY_LOCK,
        value_parser = clap::builder::PossibleValuesParser::new([
            crate::service::APPLY_LOCK,
            crate::service::ARCHIVER,
        ]),
    )]
    name: String,
    #[command(flatten)]
    target: TargetArgs,
}

/// `perch unlock`: breaks a lock on purpose, whoever holds it, naming the holder it had.
pub async fn unlock(args: UnlockArgs) -> miette::Result<u8> {
    let target = open_existing_target(&args.target).await?;
    let broken = target.break_lock(&args.name).await;
    let described = target.describe();
    target.close().await;
    match broken.into_diagnostic()? {
        Some(holder) => outln!(
            "broke the {} lock on {described}, held by {}",
            args.name,
            crate::text::terminal_safe(&holder)
        ),
        None => outln!("nobody holds the {} lock on {described}", args.name),
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod holder_tests {
    use super::*;

    #[test]
    fn holders_name_their_host_and_process() {
        assert_eq!(
            holder_process("ana@build-7 (pid 42 in pid:[4026531836])"),
            Some(("build-7", 42, Some("pid:[4026531836]")))
        );
        assert_eq!(
            holder_process("ana@build-7 (pid 42)"),
            Some(("build-7", 42, None))
        );
        assert_eq!(holder_process("ci@build-7 (pid 42"), None);
        assert_eq!(holder_process("a lock holder"), None);
        assert!(!holder_is_dead(&lock_holder()), "this process lives");
        let namespace = pid_namespace().expect("Linux names its PID namespaces");
        // Another host's apply, or one in another namespace or naming none, is never proved
        // dead from here.
        assert!(!holder_is_dead(&format!(
            "ana@elsewhere-xyz (pid 999999999 in {namespace})"
        )));
        assert!(!holder_is_dead(&format!(
            "ana@{} (pid 999999999 in pid:[1])",
            this_host()
        )));
        assert!(!holder_is_dead(&format!(
            "ana@{} (pid 999999999)",
            this_host()
        )));
        let dead_here = format!("ana@{} (pid 999999999 in {namespace})", this_host());
        assert!(holder_is_dead(&dead_here));
    }
}
