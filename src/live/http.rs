//! The HTTP target: a `perch serve` over its API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{BoxFuture, Target, TargetError, live_from_state};
use crate::domain::Kind;
use crate::plan::{Action, Live, Verb};
use crate::server::ErrorBody;
use crate::service::APPLY_LOCK;

pub struct HttpTarget {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl HttpTarget {
    pub fn new(base: &str, token: &str) -> Result<HttpTarget, TargetError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("perch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| TargetError::Unreachable(error.to_string()))?;
        Ok(HttpTarget {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<i64>,
    ) -> Result<reqwest::Response, TargetError> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(version) = if_match {
            request = request.header("If-Match", format!("\"{version}\""));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
            .send()
            .await
            .map_err(|error| TargetError::Unreachable(format!("{}: {error}", self.base)))
    }
}

async fn rejected(response: reqwest::Response) -> TargetError {
    let status = response.status();
    match response.json::<ErrorBody>().await {
        Ok(body) if body.code == "lock_held" => TargetError::LockHeld {
            holder: body.holder.unwrap_or_default(),
            since: String::new(),
        },
        Ok(body) => TargetError::Rejected {
            code: body.code,
            message: body.message,
        },
        Err(_) => TargetError::Rejected {
            code: status.as_u16().to_string(),
            message: format!("the server answered {status}"),
        },
    }
}

fn collection(kind: Kind) -> &'static str {
    crate::server::collection_of(kind)
}

fn segment(name: &str) -> String {
    crate::server::percent_encode(name)
}

impl Target for HttpTarget {
    fn describe(&self) -> String {
        format!("server {}", self.base)
    }

    fn live(&self) -> BoxFuture<'_, Result<Live, TargetError>> {
        Box::pin(async move {
            let response = self.send(Method::GET, "/v1/state", None, None).await?;
            if !response.status().is_success() {
                return Err(match rejected(response).await {
                    TargetError::Rejected { code, message } => {
                        TargetError::Unreadable(format!("{message} ({code})"))
                    }
                    other => other,
                });
            }
            let body = response.bytes().await.map_err(|error| {
                TargetError::Unreadable(format!("the state did not arrive whole: {error}"))
            })?;
            live_from_state(&body)
        })
    }

    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let marks = format!("managed=true&protect={}", action.protect);
            let body = action.object.clone().map(Value::Object);
            let (method, path) = match (action.kind, action.action) {
                (Kind::ComplianceConfiguration, _) => {
                    (Method::PUT, format!("/v1/compliance?{marks}"))
                }
                (kind, Verb::Create) => (Method::POST, format!("/v1/{}?{marks}", collection(kind))),
                (kind, Verb::Set) => (
                    Method::PUT,
                    format!("/v1/{}/{}?{marks}", collection(kind), segment(&action.name)),
                ),
                (kind, Verb::Remove) => (
                    Method::DELETE,
                    format!("/v1/{}/{}", collection(kind), segment(&action.name)),
                ),
            };
            let body = if action.action == Verb::Remove {
                None
            } else {
                body
            };
            let response = self
                .send(method, &path, body.as_ref(), action.expected_version)
                .await?;
            if response.status().is_success()
                || (action.action == Verb::Remove && response.status() == StatusCode::NOT_FOUND)
            {
                return Ok(());
            }
            Err(rejected(response).await)
        })
    }

    fn lock<'a>(
        &'a self,
        holder: &'a str,
        ttl_seconds: i64,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let body = json!({"holder": holder, "ttlSeconds": ttl_seconds});
            let response = self
                .send(
                    Method::POST,
                    &format!("/v1/locks/{APPLY_LOCK}"),
                    Some(&body),
                    None,
                )
                .await?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(rejected(response).await)
            }
        })
    }

    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let path = format!("/v1/locks/{APPLY_LOCK}?holder={}", segment(holder));
            let response = self.send(Method::DELETE, &path, None, None).await?;
            if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
                Ok(())
            } else {
                Err(rejected(response).await)
            }
        })
    }
}
