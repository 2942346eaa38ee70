//! `perch serve`: the HTTP JSON API over the service layer.
//!
//! Invariants: handlers parse, call one service method and render; every decision about
//! who may do what is the service's. Only this module and `live/http.rs` know HTTP.

mod chat;
mod compliance;
mod error;
mod routes;
mod tokens;

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
}

/// The whole API as a router, for tests and for [`serve`].
pub fn app(service: Service) -> Router {
    routes::router().with_state(AppState { service })
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
///
/// # Errors
/// An I/O failure of the listener.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(service).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
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
