//! One log line per request, with a request id that the response carries back as
//! `X-Request-Id`: operators find a client's complaint in the log by it. The line holds the
//! method, the route as the router matched it (never the query string or a body, which hold
//! what users wrote; never a header, which holds tokens), the status and the time taken.
//! The same four go into the request metrics.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use super::metrics::Metrics;

/// The header both ways.
pub const REQUEST_ID: &str = "x-request-id";

/// A request id a client sent is kept when it is short and plain; any other is replaced.
fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// A request id: this process's count of ids, permuted by a key drawn once, so that ids are
/// unique within the process, unlike those of other processes, and do not tell a client how
/// many requests the server has served. (Drawing 8 random bytes per request was a system call
/// on every request.)
fn new_id() -> String {
    static KEY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let key = *KEY.get_or_init(|| {
        let mut bytes = [0_u8; 8];
        // Without randomness the ids are still unique: the key is then the start's time.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos());
            bytes = u64::try_from(nanos % u128::from(u64::MAX))
                .unwrap_or(0)
                .to_be_bytes();
        }
        u64::from_be_bytes(bytes)
    });
    let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:016x}", permute(key ^ count))
}

/// SplitMix64's finaliser: each step (an xor with a shift, a multiplication by an odd number)
/// can be undone, so distinct inputs give distinct ids.
fn permute(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// Logs the request and counts it into the metrics.
pub async fn log_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| acceptable(id))
        .map_or_else(new_id, str::to_owned);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let mut response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    tracing::info!(
        target: "perch::request",
        request_id = %id,
        %method,
        route = %route,
        status,
        ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    metrics.observe(route, &method, status, elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_ids_are_kept() {
        assert!(acceptable("a1-b2_c3.d4"));
        assert!(!acceptable(""));
        assert!(!acceptable(&"x".repeat(65)));
        assert!(!acceptable("a b"));
        assert!(!acceptable("a\nforged line"));
        assert_eq!(new_id().len(), 16);
    }

    #[test]
    fn request_ids_do_not_repeat_nor_count_in_the_open() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "no id twice");
        let numbers: Vec<u64> = ids
            .iter()
            .map(|id| u64::from_str_radix(id, 16).expect("hexadecimal"))
            .collect();
        let ascending = numbers.windows(2).filter(|pair| pair[0] < pair[1]).count();
        // A counter would ascend every time; a permuted one about half the time.
        assert!(
            (3_000..7_000).contains(&ascending),
            "{ascending} of 9,999 steps ascend"
        );
    }
}
