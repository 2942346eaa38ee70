//! What a service call can fail with. Each variant maps to one HTTP status and one stable code.

use crate::api::ErrorCode;
use crate::domain::Kind;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A value that is malformed on its own (400).
    #[error("{message}")]
    Invalid {
        code: ErrorCode,
        field: String,
        message: String,
    },
    /// A value that breaks a rule involving other objects (422).
    #[error("{message}")]
    Rule {
        code: ErrorCode,
        field: String,
        message: String,
    },
    #[error("{kind} `{name}` does not exist")]
    NotFound { kind: Kind, name: String },
    /// The caller's bearer token no longer works (401): found revoked or expired where a
    /// write confirmed it (see `PostingCaller`).
    #[error("{message}")]
    Unauthenticated { message: String },
    #[error("the caller may not do this: {message}")]
    Forbidden { message: String },
    /// The object is not at the version the caller expected (412).
    #[error("{kind} `{name}` is at version {actual}, not {expected}: it changed since you read it")]
    VersionMismatch {
        kind: Kind,
        name: String,
        /// The tag the caller sent, as text (it may be no version at all).
        expected: String,
        actual: i64,
    },
    /// The current state forbids the change (409).
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    #[error("the lock is held by {holder} since {since}")]
    LockHeld { holder: String, since: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// The one wire code of this error: the HTTP API and the embedded target both report it.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Invalid { code, .. }
            | ServiceError::Rule { code, .. }
            | ServiceError::Conflict { code, .. } => *code,
            ServiceError::NotFound { .. } => ErrorCode::NotFound,
            ServiceError::Unauthenticated { .. } => ErrorCode::Unauthorized,
            ServiceError::Forbidden { .. } => ErrorCode::Forbidden,
            ServiceError::VersionMismatch { .. } => ErrorCode::VersionMismatch,
            ServiceError::LockHeld { .. } => ErrorCode::LockHeld,
            ServiceError::Store(StoreError::Duplicate { .. }) => ErrorCode::AlreadyExists,
            ServiceError::Store(StoreError::Busy(_)) => ErrorCode::Busy,
            ServiceError::Store(StoreError::UnstorableText(_)) => ErrorCode::InvalidField,
            ServiceError::Store(_) | ServiceError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The field at fault, where one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            ServiceError::Invalid { field, .. } | ServiceError::Rule { field, .. } => {
                Some(field.as_str())
            }
            ServiceError::NotFound { .. } | ServiceError::Store(StoreError::Duplicate { .. }) => {
                Some("name")
            }
            ServiceError::VersionMismatch { .. } => Some("If-Match"),
            _ => None,
        }
    }

    pub fn not_found(kind: Kind, name: &str) -> ServiceError {
        ServiceError::NotFound {
            kind,
            name: name.to_owned(),
        }
    }

    pub fn invalid(field: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            code,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(error: impl std::fmt::Display) -> ServiceError {
        ServiceError::Internal(error.to_string())
    }

    /// Classifies a JSON body error: unknown field, bad principal, missing field or bad value,
    /// with the path of the field at fault.
    pub fn from_json_path(error: serde_path_to_error::Error<serde_json::Error>) -> ServiceError {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = inner.to_string();
        let bare = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        if let Some(rest) = bare.strip_prefix("unknown field `") {
            let name = rest.split('`').next().unwrap_or_default();
            // The path already ends with the unknown field's own name.
            let field = if path == "." || path.is_empty() {
                name.to_owned()
            } else {
                path
            };
            return ServiceError::invalid(field, ErrorCode::UnknownField, bare);
        }
        if let Some(rest) = bare.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or_default().to_owned();
            return ServiceError::invalid(name, ErrorCode::MissingField, bare);
        }
        let code = if bare.starts_with("invalid principal") {
            ErrorCode::InvalidPrincipal
        } else {
            ErrorCode::InvalidField
        };
        let field = if path == "." { String::new() } else { path };
        ServiceError::invalid(field, code, bare)
    }

    /// Prefixes the field path of an `Invalid` error.
    pub fn within(self, prefix: &str) -> ServiceError {
        match self {
            ServiceError::Invalid {
                code,
                field,
                message,
            } => ServiceError::Invalid {
                code,
                field: if field.is_empty() {
                    prefix.to_owned()
                } else {
                    format!("{prefix}{}", field.trim_start_matches('.'))
                },
                message,
            },
            other => other,
        }
    }
}
