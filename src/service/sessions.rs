//! Browser sessions: a token signs in once and becomes a session cookie.
//!
//! The cookie is 32 random bytes; only its SHA-256 is stored, beside the token it came from
//! and the CSRF token its forms carry. A session stands while it has not expired, has not been
//! signed out and its token still works: revoking the token ends every session it opened, on
//! every node, and the live streams those sessions hold.

use serde_json::json;

use super::compliance::record;
use super::tokens::hash_token;
use super::{Caller, Result, Service, ServiceError, WriteAccess, hex};
use crate::clock;
use crate::domain::audit::AuditAction;
use crate::domain::tokens;
use crate::store::SessionRow;

/// How long a session lasts at most; a token that expires sooner ends it sooner.
pub const SESSION_LIFETIME_SECONDS: i64 = 12 * 60 * 60;

/// A session just opened: the cookie to set (shown once, never stored) and when it ends.
#[derive(Debug)]
pub struct OpenedSession {
    pub cookie: String,
    pub expires_at: String,
    /// Seconds from now until `expires_at`, for the cookie's `Max-Age`.
    pub max_age: i64,
}

/// A signed-in browser: who it is and the CSRF token its forms must carry.
#[derive(Clone, Debug)]
pub struct SessionCaller {
    pub caller: Caller,
    pub csrf: String,
}

fn random_hex() -> Result<String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|error| ServiceError::internal(error.to_string()))?;
    Ok(hex(&secret))
}

impl Service {
    /// Signs in with a bearer token: `None` when the token is unknown, revoked or expired.
    pub async fn open_session(&self, token: &str) -> Result<Option<OpenedSession>> {
        let Some(caller) = self.authenticate(token).await? else {
            return Ok(None);
        };
        let token_hash = hash_token(token);
        let Some(token_row) = self.store.token(&token_hash).await? else {
            return Ok(None);
        };
        let now_seconds = clock::unix_seconds();
        let mut expires_at = clock::format_unix(now_seconds + SESSION_LIFETIME_SECONDS);
        if let Some(token_expiry) = token_row.expires_at
            && token_expiry < expires_at
        {
            expires_at = token_expiry;
        }
        let max_age = clock::parse(&expires_at, false)
            .map_or(0, |at| at.unix_timestamp() - now_seconds)
            .max(0);
        let cookie = random_hex()?;
        let row = SessionRow {
            hash: hash_token(&cookie),
            token_hash,
            csrf: random_hex()?,
            created_at: clock::now(),
            expires_at: expires_at.clone(),
        };
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        tx.insert_session(&row).await?;
        record(
            &mut tx,
            &caller,
            AuditAction::SignIn,
            "Session",
            caller.name(),
            json!({"token": tokens::token_id(&row.token_hash), "expiresAt": expires_at}),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(OpenedSession {
            cookie,
            expires_at,
            max_age,
        }))
    }

    /// The caller behind a session cookie: `None` once the session or its token is gone.
    pub async fn session_caller(&self, cookie: &str) -> Result<Option<SessionCaller>> {
        let hash = hash_token(cookie);
        let Some(session) = self.store.session(&hash).await? else {
            return Ok(None);
        };
        if !tokens::is_current(Some(&session.expires_at), &clock::now()) {
            return Ok(None);
        }
        let Some(mut caller) = self.authenticate_hash(&session.token_hash).await? else {
            return Ok(None);
        };
        caller.session_hash = Some(hash);
        Ok(Some(SessionCaller {
            caller,
            csrf: session.csrf,
        }))
    }

    /// Signs a session out on the server: its cookie no longer works anywhere, and live
    /// streams it opened end.
    pub async fn close_session(&self, session: &SessionCaller) -> Result<()> {
        let Some(hash) = &session.caller.session_hash else {
            return Ok(());
        };
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        if tx.delete_session(hash).await? {
            record(
                &mut tx,
                &session.caller,
                AuditAction::SignOut,
                "Session",
                session.caller.name(),
                json!({}),
            )
            .await?;
        }
        tx.commit().await?;
        self.notify_change();
        Ok(())
    }

    /// When the session with this hash ends, `None` once it has (for live streams, which
    /// outlive the request that opened them).
    pub(super) async fn session_expiry(&self, hash: &str) -> Result<Option<String>> {
        Ok(self
            .store
            .session(hash)
            .await?
            .filter(|session| tokens::is_current(Some(&session.expires_at), &clock::now()))
            .map(|session| session.expires_at))
    }
}
