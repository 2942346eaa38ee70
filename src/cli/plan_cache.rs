//! `perch plan`'s cache: a plan made once is shown again, without reading the manifests or
//! the server, while neither changed.
//!
//! The key is the SHA-256 of everything the plan depends on: this perch's version, the
//! target, the server's change counter (`Target::change_counter`), the manifest files' paths
//! and bytes (`manifest::fingerprint`), the repository's settings and the part asked for.
//! The counter is read **before** the live state: a change that lands between the two reads
//! is stored under the older counter, which the server never reports again, so an entry can
//! never stand for a state other than the one its key names. Likewise the files are hashed
//! before they are read, and again after the plan is made: a plan is stored only if both
//! digests agree.
//!
//! Not cached: a plan made with `--policy` (the policy reads the whole desired state), a plan
//! that removes rooms (it counts their messages, which change without the counter), a target
//! without a counter (a Skype for Business snapshot).

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::api::wire::ChangeCounter;
use crate::plan::Plan;

/// Entries kept per cache directory; the oldest go first.
const KEEP: usize = 32;
/// Larger plans are made again rather than stored (a plan of 100,000 creations).
const MAX_ENTRY_BYTES: usize = 64 << 20;
const FORMAT: &str = "perch-plan-cache 1";

#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    /// Where `plan` keeps the plans it made, to show one again at once while neither the
    /// manifests nor the server changed. Default: $XDG_CACHE_HOME/perch/plans, or
    /// ~/.cache/perch/plans.
    #[arg(long, env = "PERCH_PLAN_CACHE", value_name = "DIR")]
    plan_cache: Option<PathBuf>,
    /// Make the plan afresh, and store nothing.
    #[arg(long, conflicts_with = "plan_cache")]
    no_cache: bool,
}

/// One stored plan, with the notes its making printed.
#[derive(serde::Deserialize)]
struct Entry {
    format: String,
    key: String,
    counter: ChangeCounter,
    plan: Plan,
    notes: Vec<String>,
}

/// [`Entry`] as it is written, borrowing what it stores.
#[derive(serde::Serialize)]
struct EntryRef<'a> {
    format: &'a str,
    key: &'a str,
    counter: &'a ChangeCounter,
    plan: &'a Plan,
    notes: &'a [String],
}

pub struct PlanCache {
    dir: PathBuf,
}

/// What a cached plan is looked up by.
pub struct Key {
    digest: String,
    counter: ChangeCounter,
    fingerprint: String,
}

impl Key {
    /// The key of a plan of `target` at `counter` from manifests with this `fingerprint`;
    /// `more` is whatever else shapes the plan (settings, the part asked for), in words.
    pub fn new(target: &str, counter: ChangeCounter, fingerprint: &str, more: &[&str]) -> Key {
        let mut hash = sha2::Sha256::new();
        for part in [FORMAT, env!("CARGO_PKG_VERSION"), target, fingerprint]
            .into_iter()
            .chain(more.iter().copied())
        {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        for number in [counter.generation, counter.objects, counter.last_id] {
            hash.update(number.to_le_bytes());
        }
        Key {
            digest: crate::text::hex(&hash.finalize()),
            counter,
            fingerprint: fingerprint.to_owned(),
        }
    }

    pub fn counter(&self) -> &ChangeCounter {
        &self.counter
    }

    /// The manifests' fingerprint the key was made with.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl PlanCache {
    /// The cache the flags ask for, or none (`--no-cache`, or no home directory).
    pub fn open(args: &CacheArgs) -> Option<PlanCache> {
        if args.no_cache {
            return None;
        }
        let dir = args.plan_cache.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .filter(|dir| !dir.is_empty())
                        .map(|home| PathBuf::from(home).join(".cache"))
                })?;
            Some(base.join("perch").join("plans"))
        })?;
        Some(PlanCache { dir })
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}.json", key.digest))
    }

    /// The plan stored under `key`, with its notes; nothing for an entry that is missing,
    /// unreadable or not this key's (a cache is never a reason to fail).
    pub fn get(&self, key: &Key) -> Option<(Plan, Vec<String>)> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        if bytes.len() > MAX_ENTRY_BYTES {
            return None;
        }
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        (entry.format == FORMAT && entry.key == key.digest && entry.counter == key.counter)
            .then_some((entry.plan, entry.notes))
    }

    /// Stores `plan` under `key` (owner-only, atomically), keeping the newest entries.
    /// Failing to store is said at debug level and otherwise ignored.
    pub fn put(&self, key: &Key, plan: &Plan, notes: &[String]) {
        let entry = EntryRef {
            format: FORMAT,
            key: &key.digest,
            counter: &key.counter,
            plan,
            notes,
        };
        let stored = serde_json::to_vec(&entry)
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                if bytes.len() > MAX_ENTRY_BYTES {
                    return Ok(());
                }
                create_private_dir(&self.dir).map_err(|error| error.to_string())?;
                crate::atomic_file::write(&self.path(key), &bytes)
                    .map_err(|error| error.to_string())
            });
        if let Err(error) = stored {
            tracing::debug!(%error, dir = %self.dir.display(), "cannot store the plan in the cache");
        }
        self.evict();
    }

    fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut plans: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "json"))
            .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
            .collect();
        if plans.len() <= KEEP {
            return;
        }
        plans.sort();
        for (_, path) in &plans[..plans.len() - KEEP] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Creates the cache directory readable by its owner only: plans name the organisation's
/// rooms and members.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}
