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
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Callers not heard from for this long are forgotten.
const IDLE: Duration = Duration::from_secs(300);

impl RateLimiter {
    /// `None` turns limiting off.
    pub fn new(limit: Option<RateLimit>) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `caller`'s bucket: `Ok`, or how long until one is free.
    pub fn take(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() > 100_000 {
            buckets.retain(|_, bucket| now.duration_since(bucket.at) < IDLE);
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
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

/// Who a request counts against: the hash of its bearer token, or its address.
fn caller_key(request: &Request) -> String {
    use sha2::Digest;
    match request.headers().get(header::AUTHORIZATION) {
        Some(value) => {
            let digest = sha2::Sha256::digest(value.as_bytes());
            format!("token:{digest:x}")
        }
        None => request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(
                || "anonymous".to_owned(),
                |info| format!("address:{}", info.0.ip()),
            ),
    }
}

/// Answers `429` with `Retry-After` to a caller over its rate.
pub async fn limit_rate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Err(wait) = state.limiter.take(&caller_key(&request), Instant::now()) {
        let seconds = wait.as_secs().max(1);
        let mut response = ApiError::new(
            ErrorCode::TooManyRequests,
            format!("too many requests from this caller; retry in {seconds} s"),
        )
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(Some(RateLimit {
            per_second: 10.0,
            burst: 3.0,
        }));
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take("a", start).is_ok());
        }
        let wait = limiter.take("a", start).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another caller has its own bucket.
        assert!(limiter.take("b", start).is_ok());
        // A tenth of a second later, one more.
        let later = start + Duration::from_millis(100);
        assert!(limiter.take("a", later).is_ok());
        assert!(limiter.take("a", later).is_err());
        assert!(RateLimiter::new(None).take("a", start).is_ok());
    }
}
