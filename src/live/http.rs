//! The HTTP target: a `perch serve` over its API, through the one [`Client`].

use reqwest::Method;

use super::{BoxFuture, Target, TargetError, live_from_pages, live_from_state, state_pages};
use crate::api::wire::{
    AppliedRequest, AuditFilter, AuditPage, ChangeCounter, ClearReply, ClearRequest, ExportOptions,
    HoldRequest, ImportReport, LockRequest, MessageCounts, MessageCountsRequest, RemoveReply,
    RemoveRequest, RoomListPage, RoomQuery, ShownObject, StateLayout, StoredRow, TokenCreated,
    TokenInfo, TokenRequest, collection_of, percent_encode,
};
use crate::api::{Body, Client, ClientError, ErrorCode, Live};
use crate::domain::{Hold, Kind};
use crate::plan::{Action, Verb};
use crate::service::APPLY_LOCK;

pub struct HttpTarget {
    client: Client,
}

impl HttpTarget {
    /// # Errors
    /// A base that is not a server URL.
    pub fn new(base: &str, token: &str) -> Result<HttpTarget, TargetError> {
        Ok(HttpTarget {
            client: Client::new(base, token)?,
        })
    }
}

/// The live state from the answer to `GET /v1/state`: its objects read as they arrive when
/// the document is as Perch writes it ([`state_pages`]), the whole document read at its end
/// otherwise.
async fn read_state(mut response: reqwest::Response) -> Result<Live, TargetError> {
    let cut_short = |error: reqwest::Error| {
        TargetError::Unreadable(format!("the state did not arrive whole: {error}"))
    };
    let mut start = Vec::new();
    let opening = loop {
        match state_pages::opening_of(&start) {
            state_pages::Opening::Undecided => match response.chunk().await.map_err(cut_short)? {
                Some(part) => start.extend_from_slice(&part),
                None => break state_pages::Opening::Other,
            },
            decided => break decided,
        }
    };
    let state_pages::Opening::Perch(layout) = opening else {
        while let Some(part) = response.chunk().await.map_err(cut_short)? {
            start.extend_from_slice(&part);
        }
        return live_from_state(&start);
    };
    // Two pages in hand at most: a download faster than the parse waits for it.
    let (pages, mut read) = tokio::sync::mpsc::channel(2);
    let reader = tokio::task::spawn_blocking(move || match layout {
        StateLayout::Objects => live_from_pages::<ShownObject>(|| read.blocking_recv()),
        StateLayout::Rows => live_from_pages::<StoredRow>(|| read.blocking_recv()),
    });
    let split = async {
        let mut splitter = state_pages::Splitter::new(layout);
        let mut page = splitter.push(&start[layout.opening().len()..])?;
        drop(start);
        loop {
            // A reader that stopped has its own error to tell.
            if let Some(page) = page
                && pages.send(page).await.is_err()
            {
                return Ok(());
            }
            match response.chunk().await.map_err(cut_short)? {
                Some(part) => page = splitter.push(&part)?,
                None => break,
            }
        }
        if let Some(page) = splitter.finish()? {
            let _ = pages.send(page).await;
        }
        Ok::<(), TargetError>(())
    };
    let split = split.await;
    drop(pages);
    let read = match reader.await {
        Ok(read) => read,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => {
            return Err(TargetError::Unreadable(
                "the state's reader stopped".to_owned(),
            ));
        }
    };
    // The reader's error comes first: the splitter may only have seen the reader go.
    let live = read?;
    split?;
    Ok(live)
}

/// `/v1/rooms/{room}/{rest}`, the room's name encoded.
fn room_path(room: &str, rest: &str) -> String {
    format!("/v1/rooms/{}/{rest}", percent_encode(room))
}

/// Whether an error is "not found", which removal counts as done.
fn is_not_found(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Rejected {
            code: ErrorCode::NotFound,
            ..
        }
    )
}

impl Target for HttpTarget {
    fn describe(&self) -> String {
        format!("server {}", self.client.base())
    }

    fn live(&self) -> BoxFuture<'_, Result<Live, TargetError>> {
        Box::pin(async move {
            let response = self
                .client
                // Rows read in about half the work of objects as shown; a server that does
                // not know the layout sends objects, which are read as well.
                .send(Method::GET, "/v1/state?layout=rows", Body::NONE, None)
                .await
                .map_err(|error| match TargetError::from(error) {
                    TargetError::Rejected { code, message } => {
                        TargetError::Unreadable(format!("{message} ({code})"))
                    }
                    other => other,
                })?;
            read_state(response).await
        })
    }

    fn change_counter(&self) -> BoxFuture<'_, Result<Option<ChangeCounter>, TargetError>> {
        Box::pin(async move {
            match self
                .client
                .json(Method::GET, "/v1/state/changes", Body::NONE)
                .await
            {
                Ok(counter) => Ok(Some(counter)),
                // A server older than the route: plan without the cache.
                Err(ClientError::Rejected {
                    code: ErrorCode::NotFound | ErrorCode::MethodNotAllowed,
                    ..
                }) => Ok(None),
                Err(error) => Err(error.into()),
            }
        })
    }

    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let marks = if action.forget {
                "managed=false".to_owned()
            } else {
                format!("managed=true&protect={}", action.protect)
            };
            let (method, path) = match (action.kind, action.action) {
                (Kind::ComplianceConfiguration, _) => {
                    (Method::PUT, format!("/v1/compliance?{marks}"))
                }
                (kind, Verb::Create) => {
                    (Method::POST, format!("/v1/{}?{marks}", collection_of(kind)))
                }
                (kind, Verb::Set) => (
                    Method::PUT,
                    format!(
                        "/v1/{}/{}?{marks}",
                        collection_of(kind),
                        percent_encode(action.live_name())
                    ),
                ),
                (kind, Verb::Remove) => (
                    Method::DELETE,
                    format!(
                        "/v1/{}/{}",
                        collection_of(kind),
                        percent_encode(&action.name)
                    ),
                ),
            };
            let body = match (&action.object, action.action) {
                (Some(object), Verb::Create | Verb::Set) => Body::Json(object),
                _ => Body::Empty,
            };
            match self
                .client
                .send(method, &path, body, action.expected_version)
                .await
            {
                Ok(_) => Ok(()),
                Err(error) if action.action == Verb::Remove && is_not_found(&error) => Ok(()),
                Err(error) => Err(error.into()),
            }
        })
    }

    fn lock<'a>(
        &'a self,
        holder: &'a str,
        ttl_seconds: i64,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let request = LockRequest {
                holder: holder.to_owned(),
                ttl_seconds,
            };
            self.client
                .send(
                    Method::POST,
                    &format!("/v1/locks/{APPLY_LOCK}"),
                    Body::Json(&request),
                    None,
                )
                .await?;
            Ok(())
        })
    }

    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let path = format!("/v1/locks/{APPLY_LOCK}?holder={}", percent_encode(holder));
            match self
                .client
                .send(Method::DELETE, &path, Body::NONE, None)
                .await
            {
                Ok(_) => Ok(()),
                Err(error) if is_not_found(&error) => Ok(()),
                Err(error) => Err(error.into()),
            }
        })
    }

    fn clear_room<'a>(
        &'a self,
        room: &'a str,
        request: &'a ClearRequest,
    ) -> BoxFuture<'a, Result<u64, TargetError>> {
        Box::pin(async move {
            let reply: ClearReply = self
                .client
                .json(Method::POST, &room_path(room, "clear"), Body::Json(request))
                .await?;
            Ok(reply.removed)
        })
    }

    fn remove_messages<'a>(
        &'a self,
        room: &'a str,
        request: &'a RemoveRequest,
    ) -> BoxFuture<'a, Result<u64, TargetError>> {
        Box::pin(async move {
            let reply: RemoveReply = self
                .client
                .json(
                    Method::POST,
                    &room_path(room, "messages/remove"),
                    Body::Json(request),
                )
                .await?;
            Ok(reply.touched)
        })
    }

    fn export_data<'a>(
        &'a self,
        options: &'a ExportOptions,
        _progress: &'a mut (dyn FnMut(usize) + Send),
    ) -> BoxFuture<'a, Result<Vec<u8>, TargetError>> {
        Box::pin(async move {
            let path = format!("/v1/data/export?{}", options.to_query());
            Ok(self.client.bytes(Method::GET, &path, Body::NONE).await?)
        })
    }

    fn import_data(
        &self,
        file: Vec<u8>,
        replace_existing: bool,
        dry_run: bool,
    ) -> BoxFuture<'_, Result<ImportReport, TargetError>> {
        Box::pin(async move {
            let path =
                format!("/v1/data/import?replaceExisting={replace_existing}&dryRun={dry_run}");
            Ok(self
                .client
                .json(Method::POST, &path, Body::<()>::Ndjson(file))
                .await?)
        })
    }

    fn audit<'a>(
        &'a self,
        filter: &'a AuditFilter,
    ) -> BoxFuture<'a, Result<AuditPage, TargetError>> {
        Box::pin(async move {
            let path = format!("/v1/audit?{}", filter.to_query());
            Ok(self.client.json(Method::GET, &path, Body::NONE).await?)
        })
    }

    fn holds(&self) -> BoxFuture<'_, Result<Vec<Hold>, TargetError>> {
        Box::pin(async move {
            let reply: HoldList = self
                .client
                .json(Method::GET, "/v1/holds", Body::NONE)
                .await?;
            Ok(reply.items)
        })
    }

    fn place_hold<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<Hold, TargetError>> {
        Box::pin(async move {
            let request = HoldRequest {
                reason: reason.to_owned(),
            };
            Ok(self
                .client
                .json(Method::PUT, &hold_path(kind, name), Body::Json(&request))
                .await?)
        })
    }

    fn break_lock<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, TargetError>> {
        Box::pin(async move {
            let path = format!("/v1/locks/{}?force=true", percent_encode(name));
            match self
                .client
                .json::<BrokenLock, ()>(Method::DELETE, &path, Body::NONE)
                .await
            {
                Ok(broken) => Ok(Some(broken.holder)),
                Err(error) if is_not_found(&error) => Ok(None),
                Err(error) => Err(error.into()),
            }
        })
    }

    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenInfo>, TargetError>> {
        Box::pin(async move {
            let list: TokenList = self
                .client
                .json(Method::GET, "/v1/tokens", Body::NONE)
                .await?;
            Ok(list.items)
        })
    }

    fn rooms<'a>(
        &'a self,
        query: &'a RoomQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<RoomListPage, TargetError>> {
        Box::pin(async move {
            let mut path = format!("/v1/rooms?limit={limit}");
            let filters = query.filter_query();
            if !filters.is_empty() {
                path.push('&');
                path.push_str(&filters);
            }
            if let Some(after) = &query.after {
                path.push_str(&format!("&after={}", percent_encode(after)));
            }
            Ok(self
                .client
                .json(Method::GET, &path, Body::<()>::Empty)
                .await?)
        })
    }

    fn message_counts<'a>(
        &'a self,
        room_ids: &'a [i64],
    ) -> BoxFuture<'a, Result<std::collections::BTreeMap<i64, u64>, TargetError>> {
        Box::pin(async move {
            let mut counts = std::collections::BTreeMap::new();
            for chunk in room_ids.chunks(crate::service::MAX_COUNTED_ROOMS) {
                let request = MessageCountsRequest {
                    room_ids: chunk.to_vec(),
                };
                let answer: MessageCounts = self
                    .client
                    .json(Method::POST, "/v1/messages/counts", Body::Json(&request))
                    .await?;
                counts.extend(answer.counts);
            }
            Ok(counts)
        })
    }

    fn list(
        &self,
        kind: Kind,
    ) -> BoxFuture<'_, Result<Vec<serde_json::Map<String, serde_json::Value>>, TargetError>> {
        Box::pin(async move {
            #[derive(serde::Deserialize)]
            struct Items {
                items: Vec<serde_json::Map<String, serde_json::Value>>,
            }
            let path = format!("/v1/{}", collection_of(kind));
            let items: Items = self
                .client
                .json(Method::GET, &path, Body::<()>::Empty)
                .await?;
            Ok(items.items)
        })
    }

    fn object<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Map<String, serde_json::Value>>, TargetError>>
    {
        Box::pin(async move {
            let path = format!("/v1/{}/{}", collection_of(kind), percent_encode(name));
            match self
                .client
                .json(Method::GET, &path, Body::<()>::Empty)
                .await
            {
                Ok(object) => Ok(Some(object)),
                Err(error) if is_not_found(&error) => Ok(None),
                Err(error) => Err(error.into()),
            }
        })
    }

    fn patch<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
        body: serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>, TargetError>> {
        Box::pin(async move {
            let path = format!("/v1/{}/{}", collection_of(kind), percent_encode(name));
            Ok(self
                .client
                .json(Method::PATCH, &path, Body::Json(&body))
                .await?)
        })
    }

    fn record_applied<'a>(
        &'a self,
        request: &'a AppliedRequest,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            self.client
                .send(Method::PUT, "/v1/applied", Body::Json(request), None)
                .await?;
            Ok(())
        })
    }

    fn create_token<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<TokenCreated, TargetError>> {
        Box::pin(async move {
            Ok(self
                .client
                .json(Method::POST, "/v1/tokens", Body::Json(request))
                .await?)
        })
    }

    fn revoke_token<'a>(
        &'a self,
        token_or_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenInfo>, TargetError>> {
        Box::pin(async move {
            // A token never travels in a URL (access logs keep URLs): its whole hash names it.
            let id = if token_or_id.starts_with("perch_") {
                use sha2::Digest;
                crate::text::hex(&sha2::Sha256::digest(token_or_id.as_bytes()))
            } else {
                token_or_id.to_owned()
            };
            let path = format!("/v1/tokens/{}", percent_encode(&id));
            match self.client.json(Method::DELETE, &path, Body::NONE).await {
                Ok(info) => Ok(Some(info)),
                Err(error) if is_not_found(&error) => Ok(None),
                Err(error) => Err(error.into()),
            }
        })
    }

    fn release_hold<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Hold, TargetError>> {
        Box::pin(async move {
            Ok(self
                .client
                .json(Method::DELETE, &hold_path(kind, name), Body::NONE)
                .await?)
        })
    }
}

/// `DELETE /v1/locks/{name}?force=true`.
#[derive(serde::Deserialize)]
struct BrokenLock {
    holder: String,
}

/// `GET /v1/tokens`.
#[derive(serde::Deserialize)]
struct TokenList {
    items: Vec<TokenInfo>,
}

/// `GET /v1/holds`.
#[derive(serde::Deserialize)]
struct HoldList {
    items: Vec<Hold>,
}

/// `/v1/holds/{rooms|categories}/{name}`.
fn hold_path(kind: Kind, name: &str) -> String {
    format!("/v1/holds/{}/{}", collection_of(kind), percent_encode(name))
}
