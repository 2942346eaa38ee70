//! `GET /metrics`: what an operator graphs and alerts on, in the Prometheus (OpenMetrics) text
//! format.
//!
//! Two kinds of figure: those this module counts as requests pass (requests, their latency,
//! live streams open), kept in one registry for the process; and those read when scraped
//! (messages posted, the archive, the apply lock, the connection pool), from the service.
//! Labels are bounded: the route as the router matched it (never the path a client sent),
//! the method from a fixed list, the status code.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::service::Service;

/// The content type of the OpenMetrics text format, which Prometheus reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request latency buckets, in seconds: half a millisecond to ten seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HolderLabels {
    holder: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The figures counted as requests pass; one per process, shared by every router.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    streams_open: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("perch");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by matched route, method and status",
            requests.clone(),
        );
        let latency = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response's headers",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let streams_open = Gauge::default();
        registry.register(
            "live_streams_open",
            "Live event streams (SSE) open on this node",
            streams_open.clone(),
        );
        registry.register(
            "build",
            "The perch build serving",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics {
            registry,
            requests,
            latency,
            streams_open,
        }
    }
}

/// Counts a live stream open until dropped.
#[derive(Debug)]
pub struct StreamOpen(Gauge);

impl Drop for StreamOpen {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Call when a live stream opens; the stream holds the guard until it ends.
    pub fn stream_opened(&self) -> StreamOpen {
        self.streams_open.inc();
        StreamOpen(self.streams_open.clone())
    }

    pub(super) fn observe(
        &self,
        route: String,
        method: &axum::http::Method,
        status: u16,
        seconds: f64,
    ) {
        let labels = RequestLabels {
            route,
            method: method_label(method),
            status,
        };
        self.latency.get_or_create(&labels).observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    /// The whole exposition: this registry, then what the service says now.
    async fn render(&self, service: &Service) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)?;
        encode_registry(&mut text, &scraped(service).await)?;
        encode_eof(&mut text)?;
        Ok(text)
    }
}

/// A method as a label: one of the standard ones, or `other`, so that a client cannot make a
/// label value per request.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The longest lock holder a label carries: holders are names a caller chose.
const MAX_HOLDER_LABEL: usize = 128;

/// The figures read at scrape time. The shared state (archive, lock) is left out, and
/// `perch_state_read_ok` is 0, when the database does not answer: the rest still reports.
async fn scraped(service: &Service) -> Registry {
    let mut registry = Registry::with_prefix("perch");
    let posted = Counter::<u64>::default();
    posted.inc_by(service.messages_posted_total());
    registry.register(
        "messages_posted",
        "Messages stored through this node since it started",
        posted,
    );
    let draining = Gauge::<i64>::default();
    draining.set(i64::from(service.is_draining()));
    registry.register(
        "draining",
        "1 once this node began shutting down (/readyz answers 503)",
        draining,
    );
    let listening = Gauge::<i64>::default();
    listening.set(i64::from(service.hears_other_nodes()));
    registry.register(
        "hears_other_nodes",
        "1 while this node hears the other nodes' commits (PostgreSQL LISTEN); live streams poll every 500 ms when 0",
        listening,
    );
    let heard = Counter::<u64>::default();
    heard.inc_by(service.notifications_heard());
    registry.register(
        "change_notifications_heard",
        "Notifications of commits (any node's) this node heard over LISTEN",
        heard,
    );
    let hand_outs = Counter::<u64>::default();
    hand_outs.inc_by(service.hub_hand_outs());
    registry.register(
        "hub_hand_outs",
        "Batches of the log this node's hub handed to its live streams",
        hand_outs,
    );
    let looked_at = Counter::<u64>::default();
    looked_at.inc_by(service.hub_streams_looked_at());
    registry.register(
        "hub_streams_looked_at",
        "Live streams this node's hub looked at over those batches: a batch of a room whose lists name its readers looks at theirs alone",
        looked_at,
    );
    let shared = Counter::<u64>::default();
    shared.inc_by(service.posts_judged_on_shared_inputs());
    registry.register(
        "posts_judged_on_shared_inputs",
        "Posts judged on the room inputs this node's live streams share, rather than on their room's groups read again",
        shared,
    );
    let pool = service.store().pool_status();
    let connections = Family::<PoolLabels, Gauge>::default();
    connections
        .get_or_create(&PoolLabels { state: "idle" })
        .set(i64::from(pool.idle));
    connections
        .get_or_create(&PoolLabels { state: "in_use" })
        .set(i64::from(pool.open.saturating_sub(pool.idle)));
    registry.register(
        "db_pool_connections",
        "Database connections this node holds, idle or in use",
        connections,
    );
    let most = Gauge::<i64>::default();
    most.set(i64::from(pool.max));
    registry.register(
        "db_pool_max_connections",
        "The most database connections this node opens",
        most,
    );
    let read_ok = Gauge::<i64>::default();
    registry.register(
        "state_read_ok",
        "1 when this scrape could read the archive's and the apply lock's state",
        read_ok.clone(),
    );
    match service.operational_state().await {
        Ok(state) => {
            read_ok.set(1);
            let archive = &state.archive;
            let enabled = Gauge::<i64>::default();
            enabled.set(i64::from(archive.enabled));
            registry.register(
                "archive_enabled",
                "1 when compliance archiving is on",
                enabled,
            );
            let lag = Gauge::<i64>::default();
            lag.set(archive.lag());
            registry.register(
                "archive_lag_events",
                "Compliance events captured and not yet in an archive file",
                lag,
            );
            let last = Gauge::<i64>::default();
            last.set(
                archive
                    .last_run_at
                    .as_deref()
                    .and_then(|at| crate::clock::parse(at, false))
                    .map_or(0, time::OffsetDateTime::unix_timestamp),
            );
            registry.register_with_unit(
                "archive_last_success_timestamp",
                "When the archiver last wrote a batch (Unix time; 0: never)",
                prometheus_client::registry::Unit::Seconds,
                last,
            );
            let held = Family::<HolderLabels, Gauge>::default();
            let holder = state
                .apply_lock_holder
                .as_deref()
                .map(|holder| crate::text::excerpt(holder, MAX_HOLDER_LABEL));
            held.get_or_create(&HolderLabels {
                holder: holder.clone().unwrap_or_default(),
            })
            .set(i64::from(holder.is_some()));
            registry.register(
                "apply_lock_held",
                "1 while an apply holds the lock, labelled with its holder",
                held,
            );
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: cannot read the archive's and the apply lock's state");
        }
    }
    registry
}

/// `GET /metrics`.
pub async fn serve_metrics(State(state): State<super::AppState>) -> Response {
    render_response(&state.metrics, &state.service).await
}

async fn render_response(metrics: &Metrics, service: &Service) -> Response {
    match metrics.render(service).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The router `--metrics-listen` serves: `/metrics` alone.
pub fn metrics_only(metrics: Arc<Metrics>, service: Service) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            let service = service.clone();
            async move { render_response(&metrics, &service).await }
        }),
    )
}
