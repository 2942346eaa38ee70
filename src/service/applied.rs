//! What the last `perch apply` applied: its manifests as read, who applied them, when, and
//! from which revision. The panel's Git view compares the server with them.

use serde_json::json;

use super::compliance::record;
use super::{Caller, Result, Service, ServiceError, WriteAccess, require_admin};
use crate::api::ErrorCode;
use crate::api::wire::{Applied, AppliedRequest};
use crate::clock;
use crate::domain::audit::AuditAction;
use crate::store::AppliedRow;

/// The longest revision text kept (a Git object name is 40 or 64 characters; a tag or a
/// description may be longer).
const MAX_REVISION_CHARS: usize = 200;

impl Service {
    /// Records the manifests an apply carried out, replacing the last record; administrators
    /// only.
    pub async fn record_applied(&self, caller: &Caller, request: AppliedRequest) -> Result<()> {
        require_admin(caller, "record an apply")?;
        if request.revision.as_deref().is_some_and(|revision| {
            revision.chars().count() > MAX_REVISION_CHARS || revision.chars().any(char::is_control)
        }) {
            return Err(ServiceError::invalid(
                "revision",
                ErrorCode::InvalidField,
                format!("a revision is one line of at most {MAX_REVISION_CHARS} characters"),
            ));
        }
        let mut paths = std::collections::HashSet::new();
        for (index, file) in request.files.iter().enumerate() {
            if file.path.as_os_str().is_empty() || !paths.insert(&file.path) {
                return Err(ServiceError::invalid(
                    format!("files[{index}].path"),
                    ErrorCode::InvalidField,
                    "every file has a path of its own (none empty, none twice)",
                ));
            }
        }
        let files = serde_json::to_string(&request.files).map_err(ServiceError::internal)?;
        let row = AppliedRow {
            applied_by: caller.name().to_owned(),
            applied_at: clock::now(),
            revision: request.revision.clone(),
            stopped: request.stopped.clone(),
            files,
        };
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        tx.put_applied(&row).await?;
        record(
            &mut tx,
            caller,
            AuditAction::Apply,
            "Manifests",
            "",
            json!({"revision": request.revision, "stopped": request.stopped, "files": request.files.len()}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The last apply's record, `None` before any; administrators only.
    pub async fn applied(&self, caller: &Caller) -> Result<Option<Applied>> {
        require_admin(caller, "read the last apply")?;
        let Some(row) = self.store.applied().await? else {
            return Ok(None);
        };
        let files = serde_json::from_str(&row.files).map_err(|error| {
            ServiceError::internal(format!(
                "the record of the last apply does not read: {error}"
            ))
        })?;
        Ok(Some(Applied {
            applied_by: row.applied_by,
            applied_at: row.applied_at,
            revision: row.revision,
            stopped: row.stopped,
            files,
        }))
    }
}
