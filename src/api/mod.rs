//! What crosses HTTP: one vocabulary of error codes, each with its one status, and the error
//! body every failure is sent as; the object envelope and the request and answer shapes
//! ([`wire`]); and the one client of a server ([`client`]).
//!
//! The README's error table is checked against [`ErrorCode::ALL`] by a test, so a code cannot
//! be emitted without being documented, nor documented under another status.

pub mod client;
pub mod json;
mod live_fields;
pub mod openapi;
pub mod wire;

pub use client::{Body, Client, ClientError};
pub use wire::{Envelope, Live, LiveObject, Marks};

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal => $status:literal,)*) => {
        /// Every error code the API sends, with its HTTP status: one table, one place.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable code, as sent in the body's `code`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status every response with this code has.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }
        }
    };
}

error_codes! {
    /// The body is not JSON, or not a JSON object.
    InvalidJson = "invalid_json" => 400,
    /// The body could not be read.
    InvalidBody = "invalid_body" => 400,
    UnknownField = "unknown_field" => 400,
    MissingField = "missing_field" => 400,
    InvalidField = "invalid_field" => 400,
    InvalidPrincipal = "invalid_principal" => 400,
    InvalidName = "invalid_name" => 400,
    NameTooLong = "name_too_long" => 400,
    DescriptionTooLong = "description_too_long" => 400,
    ListTooLong = "list_too_long" => 400,
    InvalidUrl = "invalid_url" => 400,
    UrlTooLong = "url_too_long" => 400,
    InvalidHeader = "invalid_header" => 400,
    InvalidQuery = "invalid_query" => 400,
    /// A path segment that is not UTF-8 or not what the route takes.
    InvalidPath = "invalid_path" => 400,
    MessageTooLong = "message_too_long" => 400,
    CorruptImport = "corrupt_import" => 400,
    /// The body names another kind than the path.
    KindMismatch = "kind_mismatch" => 400,
    /// Groups are not renamed: principals name them.
    RenameUnsupported = "rename_unsupported" => 400,
    Unauthorized = "unauthorized" => 401,
    Forbidden = "forbidden" => 403,
    /// Also for what the caller may not see.
    NotFound = "not_found" => 404,
    /// The path exists; the method does not (see `Allow`).
    MethodNotAllowed = "method_not_allowed" => 405,
    /// The request's headers or body arrived too slowly.
    RequestTimeout = "request_timeout" => 408,
    AlreadyExists = "already_exists" => 409,
    CategoryNotEmpty = "category_not_empty" => 409,
    AddinInUse = "addin_in_use" => 409,
    GroupInUse = "group_in_use" => 409,
    LockHeld = "lock_held" => 409,
    IdempotencyKeyReused = "idempotency_key_reused" => 409,
    /// A legal hold stands on the room or its category.
    Held = "held" => 409,
    VersionMismatch = "version_mismatch" => 412,
    BodyTooLarge = "body_too_large" => 413,
    UriTooLong = "uri_too_long" => 414,
    UnknownCategory = "unknown_category" => 422,
    UnknownAddin = "unknown_addin" => 422,
    UnknownGroup = "unknown_group" => 422,
    OutsideScope = "outside_scope" => 422,
    UnknownRoom = "unknown_room" => 422,
    /// Over the per-caller rate; `Retry-After` says when to try again.
    TooManyRequests = "too_many_requests" => 429,
    Internal = "internal" => 500,
    /// The database is busy; retry.
    Busy = "busy" => 503,
    /// The health check found the database unreachable.
    Unavailable = "unavailable" => 503,
}

impl ErrorCode {
    /// The code with this text, as a client reads it back.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.as_str() == text)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every error response. `code` is stable; `message` is for people.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Who holds a lock, on `lock_held`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table (`| 400 | `a`, `b` |`) lists exactly the codes, each under its status.
    #[test]
    fn readme_error_table_matches_the_codes() {
        let readme = include_str!("../../README.md");
        let mut documented = Vec::new();
        for line in readme.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let [_, status, codes, _] = cells.as_slice() else {
                continue;
            };
            let Ok(status) = status.parse::<u16>() else {
                continue;
            };
            for code in codes.split('`').skip(1).step_by(2) {
                documented.push((code.to_owned(), status));
            }
        }
        documented.sort();
        let mut actual: Vec<(String, u16)> = ErrorCode::ALL
            .iter()
            .map(|code| (code.as_str().to_owned(), code.status()))
            .collect();
        actual.sort();
        assert_eq!(
            documented, actual,
            "README error table and ErrorCode differ"
        );
    }

    #[test]
    fn codes_are_unique_and_parse_back() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
        }
    }
}
