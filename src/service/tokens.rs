//! Bearer tokens: only their SHA-256 is stored; an id (its start) names one in lists and
//! revocations; a token may expire; its last use is kept to the minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use super::compliance::record;
use super::{
    Caller, Identity, Result, Role, Service, ServiceError, WriteAccess, hex, require_admin,
};
use crate::api::ErrorCode;
use crate::api::wire::{TokenCreated, TokenInfo};
use crate::clock;
use crate::domain::Principal;
use crate::domain::audit::AuditAction;
use crate::domain::tokens::{self, looks_like_token_id, token_id};
use crate::store::TokenRow;

/// How often one node records a token's use: a write per request would cost every request.
const LAST_USE_EVERY: Duration = Duration::from_secs(60);

/// How long a node gathers the token uses it is to record before it writes them, together.
/// Written in the request that used the token, each cost a write transaction (four round
/// trips on PostgreSQL) before the request was served: the first post by each token waited
/// for it.
const USES_GATHERED_FOR: Duration = Duration::from_secs(1);

/// When this node last recorded each token's use, and the uses it has yet to write.
#[derive(Debug, Default)]
pub(super) struct LastUse {
    seen: Mutex<HashMap<String, Instant>>,
    /// Hashes of tokens used and not yet written, with the newest use's time.
    unwritten: Mutex<(Vec<String>, String)>,
    /// Told of each use added to `unwritten`.
    added: tokio::sync::Notify,
    /// Set once the task that writes them runs.
    writer: std::sync::OnceLock<()>,
    /// Held from taking the unwritten uses to their commit: a listing or a stopping node
    /// that asks for them to be written waits for a write already under way.
    writing: tokio::sync::Mutex<()>,
}

impl LastUse {
    /// Whether the use of `hash` is due to be recorded now (and notes that it is).
    fn due(&self, hash: &str) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        let now = Instant::now();
        match seen.get(hash) {
            Some(at) if now.duration_since(*at) < LAST_USE_EVERY => false,
            _ => {
                seen.insert(hash.to_owned(), now);
                true
            }
        }
    }

    fn take_unwritten(&self) -> (Vec<String>, String) {
        self.unwritten
            .lock()
            .map(|mut unwritten| std::mem::take(&mut *unwritten))
            .unwrap_or_default()
    }
}

/// What a request whose bearer token does not work is told, wherever that is found.
pub const TOKEN_NOT_VALID: &str = "the bearer token is not valid";

/// The most tokens a node remembers for posts; past it, it starts afresh.
const REMEMBERED_TOKENS: usize = 65_536;

/// The tokens this node has read, each with the caller it makes and the generation it was
/// read at: a post by a remembered token skips the read, and the poster confirms the token in
/// the transaction that stores the post ([`PostingCaller`]).
#[derive(Debug, Default)]
pub(super) struct RememberedTokens(Mutex<HashMap<String, RememberedToken>>);

#[derive(Clone, Debug)]
struct RememberedToken {
    caller: Caller,
    expires_at: Option<String>,
    generation: i64,
}

impl RememberedTokens {
    fn remember(&self, hash: &str, token: RememberedToken) {
        let Ok(mut remembered) = self.0.lock() else {
            return;
        };
        if remembered.len() >= REMEMBERED_TOKENS && !remembered.contains_key(hash) {
            remembered.clear();
        }
        remembered.insert(hash.to_owned(), token);
    }

    /// The token, if remembered and not expired at `now`.
    fn recall(&self, hash: &str, now: &str) -> Option<RememberedToken> {
        let remembered = self.0.lock().ok()?;
        let token = remembered.get(hash)?;
        tokens::is_current(token.expires_at.as_deref(), now).then(|| token.clone())
    }

    /// Notes that the token with `hash` was read again, in a transaction, at `generation`.
    pub(super) fn confirmed(&self, hash: &str, generation: i64) {
        if let Ok(mut remembered) = self.0.lock()
            && let Some(token) = remembered.get_mut(hash)
        {
            token.generation = token.generation.max(generation);
        }
    }

    pub(super) fn forget(&self, hash: &str) {
        if let Ok(mut remembered) = self.0.lock() {
            remembered.remove(hash);
        }
    }
}

/// Who posts a message: a caller whose token was read for this request, or one whose token
/// this node remembers from an earlier read ([`Service::authenticate_to_post`]). The poster
/// confirms a remembered token in the transaction that stores the post: when that
/// transaction sees the generation the token was read at, the token is as it was (every
/// write of a token moves the generation); otherwise it reads the group's tokens again, in
/// one statement. A post by a token revoked since is refused (401), as a read of its own
/// would have refused it.
///
/// Only posting takes one: every other call of the service wants a [`Caller`] whose token
/// was read for its request, and nothing turns a remembered one into that.
#[derive(Clone, Debug)]
pub struct PostingCaller {
    pub(super) caller: Caller,
    /// The generation the token was read at, when it was not read for this request.
    pub(super) remembered_at: Option<i64>,
}

impl PostingCaller {
    /// Whether the token was remembered rather than read for this request.
    pub fn remembered(&self) -> bool {
        self.remembered_at.is_some()
    }
}

impl From<Caller> for PostingCaller {
    /// A caller authenticated for this request: nothing to confirm.
    fn from(caller: Caller) -> PostingCaller {
        PostingCaller {
            caller,
            remembered_at: None,
        }
    }
}

/// The largest number of token lookups read together.
const LOOKUPS_PER_READ: usize = 256;

/// One request's wish to know its token.
struct Lookup {
    hash: String,
    reply: tokio::sync::oneshot::Sender<Result<Option<(TokenRow, i64)>>>,
}

/// The node's token lookups, read together by its one looker: the requests that arrive at the
/// same moment cost one read of the database, not one each. Each is read after it was asked,
/// so a token revoked before the request arrived is found revoked, as by a read of its own.
pub(super) struct TokenLookups {
    sender: tokio::sync::mpsc::Sender<Lookup>,
    receiver: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Lookup>>>,
    started: std::sync::Once,
}

impl Default for TokenLookups {
    fn default() -> TokenLookups {
        let (sender, receiver) = tokio::sync::mpsc::channel(4 * LOOKUPS_PER_READ);
        TokenLookups {
            sender,
            receiver: std::sync::Mutex::new(Some(receiver)),
            started: std::sync::Once::new(),
        }
    }
}

impl std::fmt::Debug for TokenLookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenLookups")
    }
}

fn info(row: &TokenRow) -> TokenInfo {
    TokenInfo {
        id: token_id(&row.hash).to_owned(),
        user: row.user.clone(),
        role: row.role.clone(),
        created_at: row.created_at.clone(),
        expires_at: row.expires_at.clone(),
        last_used_at: row.last_used_at.clone(),
    }
}

impl Service {
    /// Resolves a bearer token to its caller: `None` for one unknown, revoked or expired.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Caller>> {
        self.authenticate_hash(&hash_token(token)).await
    }

    /// [`Service::authenticate`] by the token's hash (a session keeps only the hash).
    pub(super) async fn authenticate_hash(&self, hash: &str) -> Result<Option<Caller>> {
        let hash = hash.to_owned();
        let Some((row, generation)) = self.look_up_token(&hash).await? else {
            return Ok(None);
        };
        let now = clock::now();
        if !tokens::is_current(row.expires_at.as_deref(), &now) {
            return Ok(None);
        }
        let role = Role::parse(&row.role).ok_or_else(|| {
            ServiceError::internal(format!("token with unknown role `{}`", row.role))
        })?;
        let principal = Principal::parse(&row.user).map_err(ServiceError::internal)?;
        self.record_use(&hash, &now);
        let caller = Caller {
            name: principal.to_string(),
            identity: match role {
                Role::Admin => Identity::Admin(Some(principal)),
                Role::User => Identity::User(principal),
            },
            token_hash: Some(hash),
            session_hash: None,
        };
        if let Some(hash) = &caller.token_hash {
            self.remembered_tokens.remember(
                hash,
                RememberedToken {
                    caller: caller.clone(),
                    expires_at: row.expires_at,
                    generation,
                },
            );
        }
        Ok(Some(caller))
    }

    /// Resolves a bearer token for a post: from what this node remembers of it when it can
    /// (the poster then confirms it, see [`PostingCaller`]), else as [`Service::authenticate`].
    pub async fn authenticate_to_post(&self, token: &str) -> Result<Option<PostingCaller>> {
        let hash = hash_token(token);
        let now = clock::now();
        if let Some(remembered) = self.remembered_tokens.recall(&hash, &now) {
            self.record_use(&hash, &now);
            return Ok(Some(PostingCaller {
                caller: remembered.caller,
                remembered_at: Some(remembered.generation),
            }));
        }
        Ok(self
            .authenticate_hash(&hash)
            .await?
            .map(PostingCaller::from))
    }

    /// Records a token's use, at most once a minute per node ([`LAST_USE_EVERY`]): written
    /// within [`USES_GATHERED_FOR`] with the others gathered meanwhile, by a task of the
    /// node's, not by the request (see [`Service::write_token_uses`]).
    fn record_use(&self, hash: &str, now: &str) {
        if !self.last_use.due(hash) {
            return;
        }
        if let Ok(mut unwritten) = self.last_use.unwritten.lock() {
            unwritten.0.push(hash.to_owned());
            now.clone_into(&mut unwritten.1);
        }
        self.last_use.added.notify_one();
        self.last_use.writer.get_or_init(|| {
            let service = self.clone();
            tokio::spawn(async move {
                loop {
                    service.last_use.added.notified().await;
                    tokio::time::sleep(USES_GATHERED_FOR).await;
                    service.write_token_uses().await;
                }
            });
        });
    }

    /// Writes the token uses this node gathered and has not written yet, in one transaction;
    /// a listing of tokens and a node that stops write them at once. A failed write is
    /// logged and dropped: the token's next use after [`LAST_USE_EVERY`] records it again.
    pub async fn write_token_uses(&self) {
        let _writing = self.last_use.writing.lock().await;
        let (hashes, at) = self.last_use.take_unwritten();
        if hashes.is_empty() {
            return;
        }
        let written = async {
            let mut tx = self.store.begin(WriteAccess::new()).await?;
            tx.touch_tokens(&hashes, &at).await?;
            tx.commit().await
        };
        if let Err(error) = written.await {
            tracing::warn!(%error, tokens = hashes.len(), "cannot record the tokens' last use");
        }
    }

    /// The token with this hash, read with the lookups of the requests beside this one.
    async fn look_up_token(&self, hash: &str) -> Result<Option<(TokenRow, i64)>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lookup = Lookup {
            hash: hash.to_owned(),
            reply,
        };
        if self.token_lookups.sender.send(lookup).await.is_err() {
            return Err(ServiceError::internal("the node's token looker stopped"));
        }
        self.token_lookups.started.call_once(|| {
            let taken = self
                .token_lookups
                .receiver
                .lock()
                .ok()
                .and_then(|mut receiver| receiver.take());
            if let Some(waiting) = taken {
                tokio::spawn(self.clone().look_up_tokens(waiting));
            }
        });
        answer
            .await
            .unwrap_or_else(|_| Err(ServiceError::internal("the node's token looker stopped")))
    }

    /// The node's looker: reads the lookups waiting at once (as many as [`LOOKUPS_PER_READ`])
    /// in one statement and answers each.
    async fn look_up_tokens(self, mut waiting: tokio::sync::mpsc::Receiver<Lookup>) {
        let mut lookups: Vec<Lookup> = Vec::with_capacity(LOOKUPS_PER_READ);
        while waiting.recv_many(&mut lookups, LOOKUPS_PER_READ).await > 0 {
            let mut hashes: Vec<&str> = lookups.iter().map(|lookup| lookup.hash.as_str()).collect();
            hashes.sort_unstable();
            hashes.dedup();
            let found = self
                .store
                .tokens_by_hash(&hashes)
                .await
                .map_err(ServiceError::from);
            for lookup in lookups.drain(..) {
                let answer = match &found {
                    Ok(rows) => Ok(rows
                        .iter()
                        .find(|(row, _)| row.hash == lookup.hash)
                        .cloned()),
                    Err(error) => Err(super::messages::shared_failure(
                        error,
                        "the token was not read",
                    )),
                };
                let _ = lookup.reply.send(answer);
            }
        }
    }

    /// The expiry of the token with this hash if it still works (`Some(None)`: it never
    /// expires), `None` once it is revoked or expired: for live streams, which outlive the
    /// request that opened them.
    pub(super) async fn token_expiry(&self, hash: &str) -> Result<Option<Option<String>>> {
        Ok(self
            .store
            .token(hash)
            .await?
            .filter(|row| tokens::is_current(row.expires_at.as_deref(), &clock::now()))
            .map(|row| row.expires_at))
    }

    /// Issues a new bearer token that never expires, as the operator of the database.
    ///
    /// # Errors
    /// A principal that is not a single user (`sip:user@domain`).
    pub async fn create_token(&self, user: &str, role: Role) -> Result<String> {
        let created = self
            .issue_token(&Caller::local_operator(), user, role, None)
            .await?;
        Ok(created.token)
    }

    /// Issues a new bearer token, for `lifetime` (`30d`) or for ever; administrators only.
    ///
    /// # Errors
    /// A principal that is not a single user, a lifetime that does not read, a caller who is
    /// not an administrator.
    pub async fn issue_token(
        &self,
        caller: &Caller,
        user: &str,
        role: Role,
        lifetime: Option<&str>,
    ) -> Result<TokenCreated> {
        require_admin(caller, "create tokens")?;
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
        let expires_at = lifetime
            .map(|text| {
                tokens::parse_lifetime(text)
                    .map(|seconds| clock::format_unix(clock::unix_seconds() + seconds))
                    .map_err(|message| {
                        ServiceError::invalid("expiresIn", ErrorCode::InvalidField, message)
                    })
            })
            .transpose()?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|error| ServiceError::internal(error.to_string()))?;
        let token = format!("perch_{}", hex(&secret));
        let row = TokenRow {
            hash: hash_token(&token),
            user: principal.to_string(),
            role: role.as_str().to_owned(),
            created_at: clock::now(),
            expires_at,
            last_used_at: None,
        };
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        tx.insert_token(&row).await?;
        record(
            &mut tx,
            caller,
            AuditAction::CreateToken,
            "Token",
            &row.user,
            json!({"id": token_id(&row.hash), "role": row.role, "expiresAt": row.expires_at}),
        )
        .await?;
        tx.commit().await?;
        Ok(TokenCreated {
            token,
            info: info(&row),
        })
    }

    /// Every token, oldest first; administrators only.
    pub async fn tokens(&self, caller: &Caller) -> Result<Vec<TokenInfo>> {
        require_admin(caller, "list tokens")?;
        // Every use this node has seen is in the list.
        self.write_token_uses().await;
        Ok(self.store.all_tokens().await?.iter().map(info).collect())
    }

    /// Revokes a token at once, on every node: requests with it are refused and live streams
    /// opened with it end. Takes the token itself or its id. Returns what was revoked, `None`
    /// when nothing matched.
    ///
    /// # Errors
    /// An id that matches several tokens; a caller who is not an administrator.
    pub async fn revoke_token(&self, caller: &Caller, token: &str) -> Result<Option<TokenInfo>> {
        require_admin(caller, "revoke tokens")?;
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let hash = if looks_like_token_id(token) {
            let mut matching = tx.tokens_by_prefix(&token.to_ascii_lowercase()).await?;
            if matching.len() > 1 {
                return Err(ServiceError::invalid(
                    "id",
                    ErrorCode::InvalidField,
                    format!(
                        "the id `{token}` matches {} tokens; give more of it",
                        matching.len()
                    ),
                ));
            }
            match matching.pop() {
                Some(row) => row.hash,
                None => return Ok(None),
            }
        } else {
            hash_token(token)
        };
        let Some(row) = tx.tokens_by_prefix(&hash).await?.pop() else {
            return Ok(None);
        };
        tx.delete_token(&hash).await?;
        record(
            &mut tx,
            caller,
            AuditAction::RevokeToken,
            "Token",
            &row.user,
            json!({"id": token_id(&row.hash)}),
        )
        .await?;
        tx.commit().await?;
        self.remembered_tokens.forget(&hash);
        self.notify_change();
        Ok(Some(info(&row)))
    }
}

pub(super) fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(token.as_bytes()))
}
