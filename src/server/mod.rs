//! `perch serve`: the HTTP JSON API over the service layer.
//!
//! Invariants: handlers parse, call one service method and render; every decision about
//! who may do what is the service's. Only this module and `live/http.rs` know HTTP.

mod chat;
mod compliance;
mod error;
pub mod limits;
mod request_log;
mod routes;
mod tokens;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

use crate::service::Service;

pub use error::{ApiError, ErrorBody};

/// Shared by every request.
#[derive(Clone, Debug)]
pub struct AppState {
    pub service: Service,
    pub limiter: std::sync::Arc<limits::RateLimiter>,
}

/// The whole API as a router, for tests and for [`serve`], with the default rate limit.
pub fn app(service: Service) -> Router {
    app_with(service, Some(limits::RateLimit::DEFAULT))
}

/// The whole API with a rate limit per caller (`None`: none).
pub fn app_with(service: Service, rate_limit: Option<limits::RateLimit>) -> Router {
    let state = AppState {
        service,
        limiter: std::sync::Arc::new(limits::RateLimiter::new(rate_limit)),
    };
    routes::router(state.clone()).with_state(state)
}

/// How long a client may take to send a request's headers: a client that sends them a byte
/// at a time cannot hold a connection open for ever.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves until `shutdown` completes, then waits for the connections still open (live
/// streams end when the service drains).
///
/// The loop axum's `serve` has, over hyper's HTTP/1 connection with a header read timeout.
///
/// # Errors
/// None today: a failed accept is logged and the loop goes on.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    rate_limit: Option<limits::RateLimit>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app_with(service, rate_limit);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, a reset before accept: the next one may work.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let per_request = tower::service_fn(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo::<SocketAddr>(remote));
                tower::ServiceExt::oneshot(app.clone(), request.map(axum::body::Body::new))
            },
        );
        let connection = builder.serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(per_request),
        );
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = watched.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
