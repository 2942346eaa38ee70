//! Per-caller rate limits and request-body timeouts: one busy or hostile client cannot take
//! the server from the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::api::ErrorCode;

/// How long a request body may take to arrive (imports get longer: [`IMPORT_BODY_TIMEOUT`]).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an import's body may take to arrive.
pub const IMPORT_BODY_TIMEOUT: Duration = Duration::from_secs(600);

/// Requests per second each caller (a bearer token, or an address without one) may make, and
/// how many it may make at once after a quiet spell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl RateLimit {
    /// The default: far above what people and `perch apply` need, far below what floods.
    pub const DEFAULT: RateLimit = RateLimit {
        per_second: 2000.0,
        burst: 4000.0,
    };
}

/// A token bucket per caller.
#[derive(Debug)]
pub struct RateLimiter {
    limit: Option<RateLimit>,
    buckets: Mutex<HashMap<CallerKey, Bucket>>,
}

/// Whose bucket: an address's, or a bearer token's (by the token's SHA-256, never the token).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CallerKey {
    Address(Option<std::net::IpAddr>),
    Token([u8; 32]),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Callers not heard from for this long are forgotten.
const IDLE: Duration = Duration::from_secs(300);
/// Most callers remembered at once.
const MAX_CALLERS: usize = 100_000;
/// An address's bucket is this many times a token's: several people share an address, and
/// a client that makes up a new token for every request still meets it.
const ADDRESS_SCALE: f64 = 4.0;

impl RateLimiter {
    /// `None` turns limiting off.
    pub fn new(limit: Option<RateLimit>) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `caller`'s bucket, whose rate and burst are the limit's times
    /// `scale`: `Ok`, or how long until one is free.
    pub fn take(&self, caller: CallerKey, scale: f64, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let limit = RateLimit {
            per_second: limit.per_second * scale,
            burst: limit.burst * scale,
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() > MAX_CALLERS {
            buckets.retain(|_, bucket| now.duration_since(bucket.at) < IDLE);
            if buckets.len() > MAX_CALLERS {
                // Every caller busy at once: start afresh rather than grow without bound.
                buckets.clear();
            }
        }
        let bucket = buckets.entry(caller).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * limit.per_second;
        bucket.tokens = (bucket.tokens + refill).min(limit.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / limit.per_second,
            ))
        }
    }
}

/// The address a request came from.
fn address_key(request: &Request) -> CallerKey {
    CallerKey::Address(
        request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip()),
    )
}

/// The bearer token a request carries, however its scheme is spelled, as a key.
fn token_key(request: &Request) -> Option<CallerKey> {
    use sha2::Digest;
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(CallerKey::Token(
        sha2::Sha256::digest(token.trim().as_bytes()).into(),
    ))
}

fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let mut response = ApiError::new(
        ErrorCode::TooManyRequests,
        format!("too many requests from this caller; retry in {seconds} s"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Answers `429` with `Retry-After` to a caller over its rate: each address, and each bearer
/// token (whatever address it comes from).
pub async fn limit_rate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let now = Instant::now();
    if let Err(wait) = state
        .limiter
        .take(address_key(&request), ADDRESS_SCALE, now)
    {
        return too_many(wait);
    }
    if let Some(token) = token_key(&request)
        && let Err(wait) = state.limiter.take(token, 1.0, now)
    {
        return too_many(wait);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CallerKey {
        CallerKey::Token([n; 32])
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(Some(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        }));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take(key(1), 1.0, start).is_ok());
        }
        let wait = limiter.take(key(1), 1.0, start).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another caller has its own bucket.
        assert!(limiter.take(key(2), 1.0, start).is_ok());
        // A tenth of a second later, one more.
        let later = start + Duration::from_millis(100);
        assert!(limiter.take(key(1), 1.0, later).is_ok());
        assert!(limiter.take(key(1), 1.0, later).is_err());
        // A scaled bucket holds more.
        for _ in 0..6 {
            assert!(limiter.take(key(3), 2.0, start).is_ok());
        }
        assert!(limiter.take(key(3), 2.0, start).is_err());
        assert!(RateLimiter::new(None).take(key(1), 1.0, start).is_ok());
    }
}
