//! Bearer tokens: only their SHA-256 is stored.

use super::{
    Caller, Identity, Result, Role, Service, ServiceError, WriteAccess, hex, require_admin,
};
use serde_json::json;

use super::compliance::record;
use crate::api::ErrorCode;
use crate::clock;
use crate::domain::Principal;
use crate::domain::audit::AuditAction;

impl Service {
    /// Resolves a bearer token to its caller.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Caller>> {
        let hash = hash_token(token);
        let Some(row) = self.store.token(&hash).await? else {
            return Ok(None);
        };
        let role = Role::parse(&row.role).ok_or_else(|| {
            ServiceError::internal(format!("token with unknown role `{}`", row.role))
        })?;
        let principal = Principal::parse(&row.user).map_err(ServiceError::internal)?;
        Ok(Some(Caller {
            name: principal.to_string(),
            identity: match role {
                Role::Admin => Identity::Admin(Some(principal)),
                Role::User => Identity::User(principal),
            },
            token_hash: Some(hash),
        }))
    }

    /// Issues a new bearer token for a user and stores only its hash.
    ///
    /// # Errors
    /// A principal that is not a single user (`sip:user@domain`).
    pub async fn create_token(&self, user: &str, role: Role) -> Result<String> {
        let principal = Principal::parse(user).map_err(|error| {
            ServiceError::invalid("user", ErrorCode::InvalidPrincipal, error.to_string())
        })?;
        if !matches!(principal, Principal::User(_)) {
            return Err(ServiceError::invalid(
                "user",
                ErrorCode::InvalidPrincipal,
                format!("a token belongs to one user (sip:user@domain), not `{principal}`"),
            ));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|error| ServiceError::internal(error.to_string()))?;
        let token = format!("perch_{}", hex(&secret));
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        tx.insert_token(
            &hash_token(&token),
            &principal.to_string(),
            role.as_str(),
            &clock::now(),
        )
        .await?;
        // Tokens are created on the database's machine, by its operator.
        record(
            &mut tx,
            &Caller::local_operator(),
            AuditAction::CreateToken,
            "Token",
            &principal.to_string(),
            json!({"role": role.as_str()}),
        )
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Revokes a bearer token at once, on every node: requests with it are refused and live
    /// streams opened with it end. Returns whether the token existed.
    pub async fn revoke_token(&self, caller: &Caller, token: &str) -> Result<bool> {
        require_admin(caller, "revoke tokens")?;
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let revoked = tx.delete_token(&hash_token(token)).await?;
        if revoked {
            record(
                &mut tx,
                caller,
                AuditAction::RevokeToken,
                "Token",
                "",
                json!({}),
            )
            .await?;
        }
        tx.commit().await?;
        self.notify_change();
        Ok(revoked)
    }
}

fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(token.as_bytes()))
}
