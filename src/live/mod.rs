//! Where the live state is: the seam between the reconciler and a server, one trait, two
//! implementations. (Named `live`, not `target`, which is Cargo's build folder.)
//!
//! - [`http::HttpTarget`]: a `perch serve` over its HTTP API.
//! - [`embedded::EmbeddedTarget`]: the service layer in process, over the same database file
//!   `perch serve` would open.
//!
//! # Guarantees
//! Executing an action is idempotent where it can be: removing an object already gone counts
//! as done. Every create and set marks the object as managed by Perch.

pub mod embedded;
pub mod http;

use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

use crate::domain::Kind;
use crate::plan::{Action, Live, LiveObject, PLAN_FORMAT_VERSION, Plan};
use crate::service::Meta;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a target call failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("another apply holds the lock: {holder} since {since}")]
    LockHeld { holder: String, since: String },
    /// The server refused an action: a rule, a stale version, a missing right.
    #[error("{message} ({code})")]
    Rejected { code: String, message: String },
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    #[error("the server's live state cannot be read: {0}")]
    Unreadable(String),
}

/// A server the reconciler can read and change.
pub trait Target: Send + Sync {
    /// Where this target is, for messages.
    fn describe(&self) -> String;

    /// Reads every configuration object.
    fn live(&self) -> BoxFuture<'_, Result<Live, TargetError>>;

    /// Carries out one action, atomically, checking the version it was planned against.
    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<(), TargetError>>;

    /// Carries out actions in order, stopping at the first failure; `progress` hears how many
    /// are done. Implementations may group actions into transactions, each action still atomic.
    fn execute_all<'a>(
        &'a self,
        actions: &'a [Action],
        progress: &'a mut (dyn FnMut(usize) + Send),
    ) -> BoxFuture<'a, ApplyReport> {
        Box::pin(async move {
            let mut report = ApplyReport::default();
            let mut remaining = actions.iter();
            for action in remaining.by_ref() {
                match self.execute(action).await {
                    Ok(()) => {
                        report.done.push(describe(action));
                        progress(report.done.len());
                    }
                    Err(error) => {
                        report.failed = Some((describe(action), error));
                        break;
                    }
                }
            }
            report.not_done = remaining.map(describe).collect();
            report
        })
    }

    /// Takes (or renews) the apply lock for `holder` for `ttl_seconds`.
    fn lock<'a>(
        &'a self,
        holder: &'a str,
        ttl_seconds: i64,
    ) -> BoxFuture<'a, Result<(), TargetError>>;

    /// Releases the apply lock if `holder` has it.
    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), TargetError>>;
}

/// The document of `GET /v1/state`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StateWire {
    pub format_version: u32,
    pub objects: Vec<Map<String, Value>>,
}

/// Builds the live state from `GET /v1/state` (both targets read this document).
pub(crate) fn live_from_state(json: &[u8]) -> Result<Live, TargetError> {
    let wire: StateWire = serde_json::from_slice(json).map_err(|error| {
        TargetError::Unreadable(format!("the state is not the JSON expected: {error}"))
    })?;
    if wire.format_version != 1 {
        return Err(TargetError::Unreadable(format!(
            "the server sends state format {}; this perch reads format 1",
            wire.format_version
        )));
    }
    live_from_objects(wire.objects)
}

/// Builds the live state from pages that are JSON arrays of objects (the embedded target's
/// read, which skips joining them into one document).
pub(crate) fn live_from_pages(pages: &[String]) -> Result<Live, TargetError> {
    let mut objects = Vec::new();
    for page in pages {
        let mut page_objects: Vec<Map<String, Value>> =
            serde_json::from_str(page).map_err(|error| {
                TargetError::Unreadable(format!(
                    "the stored state is not the JSON expected: {error}"
                ))
            })?;
        objects.append(&mut page_objects);
    }
    live_from_objects(objects)
}

fn live_from_objects(objects: Vec<Map<String, Value>>) -> Result<Live, TargetError> {
    let mut live = Live::default();
    for mut fields in objects {
        let kind = fields
            .remove("kind")
            .and_then(|kind| kind.as_str().and_then(Kind::parse))
            .ok_or_else(|| TargetError::Unreadable("an object without a known kind".to_owned()))?;
        let object = live_object(kind, fields)?;
        if kind == Kind::ComplianceConfiguration {
            live.compliance = Some(object);
        } else {
            live.objects.insert((kind, object.name.clone()), object);
        }
    }
    if live.compliance.is_none() {
        // Never set: the defaults, at version 0.
        let defaults = serde_json::to_value(crate::domain::ComplianceConfiguration::default())
            .ok()
            .and_then(|value| value.as_object().cloned())
            .unwrap_or_default();
        live.compliance = Some(LiveObject {
            kind: Kind::ComplianceConfiguration,
            name: crate::plan::COMPLIANCE_NAME.to_owned(),
            fields: defaults,
            meta: Meta::default(),
        });
    }
    Ok(live)
}

/// Splits the bookkeeping fields off an object as the API sends it.
fn live_object(kind: Kind, mut fields: Map<String, Value>) -> Result<LiveObject, TargetError> {
    let mut take = |name: &str| fields.remove(name);
    let text = |value: Option<Value>| match value {
        Some(Value::String(text)) => text,
        _ => String::new(),
    };
    let meta = Meta {
        id: take("id").and_then(|v| v.as_i64()).unwrap_or_default(),
        version: take("version")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| TargetError::Unreadable(format!("a {kind} has no version")))?,
        managed: take("managed").and_then(|v| v.as_bool()).unwrap_or(false),
        protect: take("protect").and_then(|v| v.as_bool()).unwrap_or(false),
        created_at: text(take("createdAt")),
        updated_by: text(take("updatedBy")),
        updated_at: text(take("updatedAt")),
    };
    let name = match kind {
        Kind::ComplianceConfiguration => crate::plan::COMPLIANCE_NAME.to_owned(),
        _ => fields
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| TargetError::Unreadable(format!("a {kind} has no name")))?
            .to_owned(),
    };
    Ok(LiveObject {
        kind,
        name,
        fields,
        meta,
    })
}

/// What an apply did before it stopped.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub done: Vec<String>,
    /// The action that failed, and why.
    pub failed: Option<(String, TargetError)>,
    pub not_done: Vec<String>,
}

/// Describes an action in one line: `create Room "eng-news"`.
pub fn describe(action: &Action) -> String {
    let verb = match (action.action, action.adopt_only) {
        (_, true) => "adopt",
        (crate::plan::Verb::Create, _) => "create",
        (crate::plan::Verb::Set, _) => "set",
        (crate::plan::Verb::Remove, _) => "remove",
    };
    if action.kind == Kind::ComplianceConfiguration {
        format!("{verb} ComplianceConfiguration")
    } else {
        format!("{verb} {} \"{}\"", action.kind, action.name)
    }
}

/// Carries out a plan's actions in order, stopping at the first failure.
///
/// `progress` is called with the number of actions done so far.
pub async fn apply_plan(
    target: &dyn Target,
    plan: &Plan,
    mut progress: impl FnMut(usize) + Send,
) -> ApplyReport {
    debug_assert_eq!(plan.format_version, PLAN_FORMAT_VERSION);
    target.execute_all(&plan.actions, &mut progress).await
}
