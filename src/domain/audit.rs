//! The audit trail's vocabulary: what an administrator, a user or Perch itself did.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One kind of recorded act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// A configuration object was created.
    Create,
    /// A configuration object changed (its fields or its marks).
    Change,
    /// A configuration object was removed.
    Remove,
    /// A room's history was cleared up to a date.
    Clear,
    /// Messages were removed from a room's history.
    RemoveMessages,
    /// Messages were replaced by a text.
    ReplaceMessages,
    /// Messages expired from a room's history (a category's retention).
    Expire,
    /// Chat data was imported.
    Import,
    /// Chat data was exported.
    Export,
    /// The compliance archiver wrote a batch.
    Archive,
    /// A token was created.
    CreateToken,
    /// A token was revoked.
    RevokeToken,
    /// A named lock was taken (the apply lock; the archiver lease when it changes hands).
    Lock,
    /// A named lock was released.
    Unlock,
    /// A legal hold was placed or restated.
    PlaceHold,
    /// A legal hold was released.
    ReleaseHold,
    /// Someone signed in to the web interface (a session opened).
    SignIn,
    /// A web session was signed out.
    SignOut,
    /// `perch apply` recorded the manifests it applied (for the Git view).
    Apply,
}

impl AuditAction {
    pub const ALL: [AuditAction; 19] = [
        AuditAction::Create,
        AuditAction::Change,
        AuditAction::Remove,
        AuditAction::Clear,
        AuditAction::RemoveMessages,
        AuditAction::ReplaceMessages,
        AuditAction::Expire,
        AuditAction::Import,
        AuditAction::Export,
        AuditAction::Archive,
        AuditAction::CreateToken,
        AuditAction::RevokeToken,
        AuditAction::Lock,
        AuditAction::Unlock,
        AuditAction::PlaceHold,
        AuditAction::ReleaseHold,
        AuditAction::SignIn,
        AuditAction::SignOut,
        AuditAction::Apply,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Change => "change",
            AuditAction::Remove => "remove",
            AuditAction::Clear => "clear",
            AuditAction::RemoveMessages => "remove-messages",
            AuditAction::ReplaceMessages => "replace-messages",
            AuditAction::Expire => "expire",
            AuditAction::Import => "import",
            AuditAction::Export => "export",
            AuditAction::Archive => "archive",
            AuditAction::CreateToken => "create-token",
            AuditAction::RevokeToken => "revoke-token",
            AuditAction::Lock => "lock",
            AuditAction::Unlock => "unlock",
            AuditAction::PlaceHold => "place-hold",
            AuditAction::ReleaseHold => "release-hold",
            AuditAction::SignIn => "sign-in",
            AuditAction::SignOut => "sign-out",
            AuditAction::Apply => "apply",
        }
    }

    pub fn parse(text: &str) -> Option<AuditAction> {
        AuditAction::ALL
            .into_iter()
            .find(|action| action.as_str() == text)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields of `after` that differ from `before`, each as `{"before": .., "after": ..}`
/// (a field absent on one side shows as null): what an audit entry of a change records.
pub fn changed_fields(
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> serde_json::Map<String, serde_json::Value> {
    let empty = serde_json::Map::new();
    let before = before.as_object().unwrap_or(&empty);
    let after = after.as_object().unwrap_or(&empty);
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| before.get(*name) != after.get(*name))
        .map(|name| {
            let side = |map: &serde_json::Map<String, serde_json::Value>| {
                map.get(name).cloned().unwrap_or(serde_json::Value::Null)
            };
            (
                name.clone(),
                serde_json::json!({"before": side(before), "after": side(after)}),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_action_reads_back() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                json!(action.as_str())
            );
        }
    }

    #[test]
    fn changed_fields_name_only_what_changed() {
        let before = json!({"name": "a", "description": "old", "members": ["x"], "gone": 1});
        let after = json!({"name": "a", "description": "new", "members": ["x"], "added": true});
        expect_test::expect![[r#"{"added":{"after":true,"before":null},"description":{"after":"new","before":"old"},"gone":{"after":null,"before":1}}"#]]
            .assert_eq(&serde_json::Value::Object(changed_fields(&before, &after)).to_string());
    }
}
