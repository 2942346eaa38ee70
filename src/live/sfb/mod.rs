//! A Skype for Business Server 2015 pool as a target: its live state is a snapshot captured on
//! the server (`--sfb-snapshot DIR`), and `apply` writes a PowerShell script of the cmdlets
//! that make the pool match the manifests instead of changing anything itself.
//!
//! Against a snapshot the manifests are the whole Persistent Chat configuration: an object the
//! snapshot has and the manifests do not is removed by the script. Groups are Active Directory's:
//! `--principal-map` translates `group:` and `domain:` principals to distinguished names and
//! back, and each mapped group stands in the live state by its name alone.

pub mod chat_data;
pub mod powershell;
pub mod principals;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value};

use super::{BoxFuture, Target, TargetError};
use crate::api::wire::{
    AppliedRequest, AuditFilter, AuditPage, ClearRequest, ExportOptions, ImportReport,
    RemoveRequest, TokenCreated, TokenInfo, TokenRequest,
};
use crate::api::{Envelope, Live, LiveObject};
use crate::domain::{Hold, Kind, Principal};
use crate::plan::Action;
use principals::PrincipalMap;

/// A snapshot directory, read once, and the script its apply builds.
pub struct SfbTarget {
    dir: PathBuf,
    captured_at: String,
    live: Live,
    context: powershell::Context,
    map: PrincipalMap,
    script: Mutex<Vec<String>>,
}

impl SfbTarget {
    /// Reads the snapshot in `dir`, with the principal map and the pool (needed when the
    /// snapshot names none, or several).
    ///
    /// # Errors
    /// An unreadable snapshot or map, or a pool that cannot be told.
    pub fn open(
        dir: &Path,
        pool: Option<&str>,
        map_file: Option<&Path>,
    ) -> Result<SfbTarget, TargetError> {
        let map = match map_file {
            None => PrincipalMap::default(),
            Some(path) => {
                let text = crate::manifest::source::read(path)
                    .map_err(|why| TargetError::Unreadable(format!("{}: {why}", path.display())))?;
                PrincipalMap::parse(&text)
                    .map_err(|why| TargetError::Unreadable(format!("{}: {why}", path.display())))?
            }
        };
        let read = snapshot::read_dir(dir, &map).map_err(TargetError::Unreadable)?;
        let pool = match (pool, read.pools.len()) {
            (Some(pool), 0) => pool.to_owned(),
            (Some(pool), _) => read
                .pools
                .iter()
                .find(|known| known.eq_ignore_ascii_case(pool))
                .cloned()
                .ok_or_else(|| {
                    TargetError::Unreadable(format!(
                        "--sfb-pool {pool} is not among the snapshot's pools ({})",
                        read.pools.iter().cloned().collect::<Vec<_>>().join(", ")
                    ))
                })?,
            (None, 1) => read.pools.iter().next().cloned().unwrap_or_default(),
            (None, 0) => {
                return Err(TargetError::Unreadable(
                    "the snapshot names no pool; give --sfb-pool FQDN".to_owned(),
                ));
            }
            (None, _) => {
                return Err(TargetError::Unreadable(format!(
                    "the snapshot names several pools ({}); give --sfb-pool FQDN",
                    read.pools.iter().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        };
        // Only the chosen pool's objects: another pool's are not this script's to change.
        let mut live = read.live_for(&pool).map_err(TargetError::Unreadable)?;
        // Each mapped group stands in the live state by its name, unmanaged: the manifests'
        // references to it resolve, no plan removes it, and its members (Active Directory's)
        // are not Perch's to manage.
        for principal in map.principals() {
            if let Principal::Group(name) = principal {
                let mut fields = Map::new();
                fields.insert("name".into(), Value::String(name.clone()));
                live.objects.insert(
                    (Kind::Group, name.clone()),
                    LiveObject {
                        kind: Kind::Group,
                        name: name.clone(),
                        fields: fields.into(),
                        meta: Envelope {
                            version: 1,
                            managed: false,
                            updated_by: "Active Directory".to_owned(),
                            ..Envelope::default()
                        },
                    },
                );
            }
        }
        let captured_at = newest_modification(dir);
        Ok(SfbTarget {
            dir: dir.to_path_buf(),
            captured_at,
            live,
            context: powershell::Context {
                pool,
                compliance_identity: read
                    .compliance_identity
                    .unwrap_or_else(|| "global".to_owned()),
            },
            map,
            script: Mutex::new(Vec::new()),
        })
    }

    /// The script the actions carried out so far add up to, with its header.
    pub fn script(&self, summary: &str) -> String {
        let body = self
            .script
            .lock()
            .map(|lines| lines.join("\n"))
            .unwrap_or_default();
        format!(
            "{}\n{body}\n",
            powershell::header(
                &self.dir.display().to_string(),
                &self.captured_at,
                &self.context.pool,
                summary
            )
        )
    }
}

/// When the snapshot's newest file was written, in UTC.
fn newest_modification(dir: &Path) -> String {
    snapshot::FILES
        .iter()
        .filter_map(|(file, _, _)| {
            std::fs::metadata(dir.join(file))
                .and_then(|m| m.modified())
                .ok()
        })
        .max()
        .map_or_else(
            || "at an unknown time".to_owned(),
            |at| crate::clock::format(at.into()),
        )
}

fn unsupported<T>(what: &str) -> Result<T, TargetError> {
    Err(TargetError::Unsupported(format!(
        "a Skype for Business snapshot cannot {what}; run the cmdlet on the server"
    )))
}

impl Target for SfbTarget {
    fn describe(&self) -> String {
        format!(
            "Skype for Business pool {} (snapshot {})",
            self.context.pool,
            self.dir.display()
        )
    }

    fn live(&self) -> BoxFuture<'_, Result<Live, TargetError>> {
        Box::pin(async move { Ok(self.live.clone()) })
    }

    /// Adds the action's cmdlets to the script; nothing on the server changes.
    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let lines = powershell::lines(action, &self.context, &self.map).map_err(|message| {
                TargetError::Rejected {
                    code: crate::api::ErrorCode::InvalidField,
                    message,
                }
            })?;
            if let Ok(mut script) = self.script.lock() {
                script.extend(lines);
            }
            Ok(())
        })
    }

    fn offline_script(&self, summary: &str) -> Option<String> {
        Some(self.script(summary))
    }

    fn lock<'a>(&'a self, _: &'a str, _: i64) -> BoxFuture<'a, Result<(), TargetError>> {
        // A snapshot is this process's alone.
        Box::pin(async { Ok(()) })
    }

    fn break_lock<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<String>, TargetError>> {
        Box::pin(async { Ok(None) })
    }

    fn unlock<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async { Ok(()) })
    }

    fn clear_room<'a>(
        &'a self,
        _: &'a str,
        _: &'a ClearRequest,
    ) -> BoxFuture<'a, Result<u64, TargetError>> {
        Box::pin(async { unsupported("clear a room") })
    }

    fn remove_messages<'a>(
        &'a self,
        _: &'a str,
        _: &'a RemoveRequest,
    ) -> BoxFuture<'a, Result<u64, TargetError>> {
        Box::pin(async { unsupported("remove messages") })
    }

    fn export_data<'a>(
        &'a self,
        _: &'a ExportOptions,
        _: &'a mut (dyn FnMut(usize) + Send),
    ) -> BoxFuture<'a, Result<Vec<u8>, TargetError>> {
        Box::pin(async { unsupported("export chat data (Export-CsPersistentChatData does)") })
    }

    fn import_data(
        &self,
        _: Vec<u8>,
        _: bool,
        _: bool,
    ) -> BoxFuture<'_, Result<ImportReport, TargetError>> {
        Box::pin(async { unsupported("import chat data") })
    }

    fn audit<'a>(&'a self, _: &'a AuditFilter) -> BoxFuture<'a, Result<AuditPage, TargetError>> {
        Box::pin(async { unsupported("read an audit trail") })
    }

    fn holds(&self) -> BoxFuture<'_, Result<Vec<Hold>, TargetError>> {
        Box::pin(async { unsupported("hold legal holds") })
    }

    fn place_hold<'a>(
        &'a self,
        _: Kind,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Hold, TargetError>> {
        Box::pin(async { unsupported("place a legal hold") })
    }

    fn release_hold<'a>(&'a self, _: Kind, _: &'a str) -> BoxFuture<'a, Result<Hold, TargetError>> {
        Box::pin(async { unsupported("release a legal hold") })
    }

    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenInfo>, TargetError>> {
        Box::pin(async { unsupported("hold Perch tokens") })
    }

    fn create_token<'a>(
        &'a self,
        _: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<TokenCreated, TargetError>> {
        Box::pin(async { unsupported("hold Perch tokens") })
    }

    fn revoke_token<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenInfo>, TargetError>> {
        Box::pin(async { unsupported("hold Perch tokens") })
    }

    fn list(&self, kind: Kind) -> BoxFuture<'_, Result<Vec<Map<String, Value>>, TargetError>> {
        Box::pin(async move {
            Ok(self
                .live
                .objects
                .values()
                .filter(|object| object.kind == kind)
                .map(snapshot_shown)
                .collect())
        })
    }

    fn object<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Map<String, Value>>, TargetError>> {
        Box::pin(async move {
            Ok(self
                .live
                .objects
                .get(&(kind, name.to_owned()))
                .map(snapshot_shown))
        })
    }

    fn patch<'a>(
        &'a self,
        _: Kind,
        _: &'a str,
        _: Map<String, Value>,
    ) -> BoxFuture<'a, Result<Map<String, Value>, TargetError>> {
        Box::pin(async {
            unsupported("change an object directly (change the manifests and apply --out a script)")
        })
    }

    fn rooms<'a>(
        &'a self,
        _: &'a crate::api::wire::RoomQuery,
        _: usize,
    ) -> BoxFuture<'a, Result<crate::api::wire::RoomListPage, TargetError>> {
        Box::pin(async { unsupported("list rooms (Get-CsPersistentChatRoom does)") })
    }

    fn record_applied<'a>(
        &'a self,
        _: &'a AppliedRequest,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        // The script is the record: a pool keeps no Perch state.
        Box::pin(async { Ok(()) })
    }
}

/// A snapshot's object as the other targets show one: its fields and `kind`.
fn snapshot_shown(object: &LiveObject) -> Map<String, Value> {
    let mut fields = object.fields.to_map();
    fields.insert(
        "kind".to_owned(),
        Value::String(object.kind.as_str().to_owned()),
    );
    fields
}
