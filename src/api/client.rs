//! The one HTTP client of a `perch serve`: every CLI command that talks to a server does so
//! through [`crate::live::http::HttpTarget`], which sends through this.

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ErrorBody, ErrorCode};

/// Why a request to a server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not a server URL: give one such as http://127.0.0.1:8470")]
    InvalidUrl(String),
    #[error("cannot reach {base}: {reason}")]
    Unreachable { base: String, reason: String },
    /// The server answered with an error body (or, from something that is not a Perch server,
    /// with a status alone: then `code` is [`ErrorCode::Internal`]).
    #[error("{message} ({code})")]
    Rejected {
        status: u16,
        code: ErrorCode,
        message: String,
        holder: Option<String>,
    },
    #[error("the server's answer cannot be read: {0}")]
    Malformed(String),
}

/// What a request carries.
pub enum Body<'a, T: Serialize + ?Sized> {
    Empty,
    Json(&'a T),
    /// A `perch-data` file.
    Ndjson(Vec<u8>),
}

impl Body<'_, ()> {
    /// No body, with its type settled.
    pub const NONE: Body<'static, ()> = Body::Empty;
}

/// A server's base URL and the bearer token to send it.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// # Errors
    /// A base that is not an `http://` or `https://` URL, or a TLS set-up that fails.
    pub fn new(base: &str, token: &str) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/');
        let has_scheme = ["http://", "https://"].iter().any(|scheme| {
            base.len() > scheme.len() && base[..scheme.len()].eq_ignore_ascii_case(scheme)
        });
        if !has_scheme {
            return Err(ClientError::InvalidUrl(base.to_owned()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("perch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ClientError::Unreachable {
                base: base.to_owned(),
                reason: error.to_string(),
            })?;
        Ok(Client {
            http,
            base: base.to_owned(),
            token: token.to_owned(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; a status that is not a success is the server's error.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] when no answer came, [`ClientError::Rejected`] for an error
    /// status.
    pub async fn send<T: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Body<'_, T>,
        if_match: Option<i64>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .bearer_auth(&self.token);
        if let Some(version) = if_match {
            request = request.header(reqwest::header::IF_MATCH, format!("\"{version}\""));
        }
        request = match body {
            Body::Empty => request,
            Body::Json(value) => request.json(value),
            Body::Ndjson(bytes) => request
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(bytes),
        };
        let response = request
            .send()
            .await
            .map_err(|error| ClientError::Unreachable {
                base: self.base.clone(),
                reason: error.to_string(),
            })?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(rejected(response).await)
        }
    }

    /// Sends a request and reads its JSON answer.
    ///
    /// # Errors
    /// As [`Client::send`], and [`ClientError::Malformed`] for an answer not of type `R`.
    pub async fn json<R: DeserializeOwned, T: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Body<'_, T>,
    ) -> Result<R, ClientError> {
        let response = self.send(method, path_and_query, body, None).await?;
        response
            .json()
            .await
            .map_err(|error| ClientError::Malformed(error.to_string()))
    }

    /// Sends a request and reads its whole answer.
    ///
    /// # Errors
    /// As [`Client::send`], and [`ClientError::Malformed`] for an answer cut short.
    pub async fn bytes<T: Serialize + ?Sized>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Body<'_, T>,
    ) -> Result<Vec<u8>, ClientError> {
        let response = self.send(method, path_and_query, body, None).await?;
        response
            .bytes()
            .await
            // Taken over, not copied, when the body arrived as one buffer.
            .map(Vec::from)
            .map_err(|error| {
                ClientError::Malformed(format!("the answer did not arrive whole: {error}"))
            })
    }
}

async fn rejected(response: reqwest::Response) -> ClientError {
    let status = response.status();
    match response.json::<ErrorBody>().await {
        Ok(body) => {
            let (code, message) = match ErrorCode::parse(&body.code) {
                Some(code) => (code, body.message),
                // A newer server's code: keep its text for the person reading.
                None => (
                    ErrorCode::Internal,
                    format!("{} (server code {})", body.message, body.code),
                ),
            };
            ClientError::Rejected {
                status: status.as_u16(),
                code,
                message,
                holder: body.holder,
            }
        }
        Err(_) => ClientError::Rejected {
            status: status.as_u16(),
            code: ErrorCode::Internal,
            message: format!("the server answered {status} without an error body"),
            holder: None,
        },
    }
}
