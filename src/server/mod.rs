//! `perch serve`: the HTTP JSON API over the service layer.
//!
//! Invariants: handlers parse, call one service method and render; every decision about
//! who may do what is the service's. Only this module and `live/http.rs` know HTTP.

mod chat;
mod compliance;
mod error;
pub mod limits;
pub mod metrics;
mod request_log;
mod routes;
mod sse;
pub mod tls;
mod tokens;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::service::Service;

pub use error::{ApiError, ErrorBody};

/// Shared by every request.
#[derive(Clone, Debug)]
pub struct AppState {
    pub service: Service,
    pub limiter: Arc<limits::RateLimiter>,
    pub metrics: Arc<metrics::Metrics>,
}

/// How the API is served, beyond the service itself.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Requests per caller (`None`: no limit).
    pub rate_limit: Option<limits::RateLimit>,
    /// Whether `GET /metrics` is a route of the API; off when `--metrics-listen` serves it
    /// on an address of its own.
    pub metrics_route: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            rate_limit: Some(limits::RateLimit::DEFAULT),
            metrics_route: true,
        }
    }
}

/// The whole API as a router, for tests and for [`serve`], with the default rate limit.
pub fn app(service: Service) -> Router {
    app_serving(service, &AppOptions::default(), Arc::default())
}

/// The whole API with a rate limit per caller (`None`: none).
pub fn app_with(service: Service, rate_limit: Option<limits::RateLimit>) -> Router {
    let options = AppOptions {
        rate_limit,
        ..AppOptions::default()
    };
    app_serving(service, &options, Arc::default())
}

/// The whole API, counting into `metrics`.
pub fn app_serving(
    service: Service,
    options: &AppOptions,
    metrics: Arc<metrics::Metrics>,
) -> Router {
    let state = AppState {
        service,
        limiter: Arc::new(limits::RateLimiter::new(options.rate_limit)),
        metrics,
    };
    routes::router(state.clone(), options.metrics_route).with_state(state)
}

/// How long a client may take to send a request's headers, or to finish a TLS handshake: a
/// client that sends them a byte at a time cannot hold a connection open for ever.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How many connections the kernel completes for the server before it accepts them. tokio's
/// default, 1,024, overflowed when 16,000 live streams connected at once (as after a node's
/// restart, and in `cargo bench --bench fanout`): the kernel then drops the SYNs past it, and
/// their clients try again after 1, 3, 7... seconds (one bench run took 209 s to connect).
/// Linux caps it at `net.core.somaxconn` (4,096 by default).
pub const LISTEN_BACKLOG: u32 = 65_535;

/// A listener on `address` with [`LISTEN_BACKLOG`], reusing the address as
/// `TcpListener::bind` does (a restarted node binds while its old connections linger).
///
/// # Errors
/// The address cannot be bound (in use, not this machine's, a privileged port).
pub fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The next connection, sent without Nagle's algorithm: a live stream writes an event at a
/// time, and with it each write waited for the peer's ACK of the one before, which the peer
/// delays (on 2026-12-06 `cargo bench --bench chat`'s post-to-SSE p99 fell from 23-35 ms to
/// 6-7 ms with it off).
async fn accept(listener: &TcpListener) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    let (stream, remote) = listener.accept().await?;
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot turn Nagle's algorithm off");
    }
    Ok((stream, remote))
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for the connections
/// still open (live streams end when the service drains). With `tls`, connections speak
/// HTTPS, HTTP/2 or HTTP/1.1 as the client offers (ALPN); without, HTTP/1.1.
///
/// The loop axum's `serve` has, over hyper's connections with a header read timeout.
///
/// # Errors
/// None today: a failed accept is logged and the loop goes on.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let mut negotiated =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    negotiated
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    negotiated.http2().timer(hyper_util::rt::TokioTimer::new());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = accept(&listener) => match accepted {
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
        // hyper calls this as it reads a request's head, before it reads the socket again
        // (a tower service would only be called when its future is first polled, after that
        // read): what `own_head` frees is free for it.
        let service = hyper::service::service_fn(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo::<SocketAddr>(remote));
                if request.uri().path().ends_with("/events") {
                    own_head(&mut request);
                }
                tower::ServiceExt::oneshot(app.clone(), request.map(axum::body::Body::new))
            },
        );
        match &acceptor {
            None => {
                let connection =
                    http1.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = watched.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let negotiated = negotiated.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await;
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %remote, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection = negotiated
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(error) = watcher.watch(connection).await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
        }
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

/// Copies a live stream's URI and header values out of hyper's read buffer, which it parsed
/// them in place of. While they live there, hyper cannot reuse that buffer, and the read it
/// makes during a response (to notice a client that leaves) allocates another 8 KiB for every
/// stream; with them copied, that read reuses the buffer. A stream holds its connection for
/// hours, and its request for as long as its handler takes. Measured with heaptrack and
/// `cargo bench --bench fanout`: see ARCHITECTURE.md's known debts.
fn own_head<B>(request: &mut axum::http::Request<B>) {
    if let Ok(uri) = axum::http::Uri::try_from(request.uri().to_string()) {
        *request.uri_mut() = uri;
    }
    let shared = std::mem::take(request.headers_mut());
    let headers = request.headers_mut();
    headers.reserve(shared.len());
    for (name, value) in &shared {
        // `from_bytes` copies. It accepts what hyper's parser accepts; were it ever to refuse
        // a value, the request keeps the shared one rather than lose the header.
        let owned = axum::http::HeaderValue::from_bytes(value.as_bytes()).map_or_else(
            |_| value.clone(),
            |mut owned| {
                owned.set_sensitive(value.is_sensitive());
                owned
            },
        );
        headers.append(name.clone(), owned);
    }
}

#[cfg(test)]
mod tests {
    /// What [`super::serve`] accepts writes each event as it comes.
    #[tokio::test]
    async fn accepted_connections_send_without_nagle() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a listener");
        let address = listener.local_addr().expect("its address");
        let (accepted, connected) = tokio::join!(
            super::accept(&listener),
            tokio::net::TcpStream::connect(address)
        );
        connected.expect("connected");
        let (stream, _) = accepted.expect("accepted");
        assert!(stream.nodelay().expect("TCP_NODELAY"));
    }

    /// More connections than tokio's default backlog (1,024) arrive at once, before any is
    /// accepted: the kernel completes every one (with 1,024 the rest wait for an accept
    /// that never comes, and time out).
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_backlog() {
        const BURST: usize = 1_500;
        // Both ends of every connection are this process's: 3,000 files, past a soft limit of
        // 1,024 on some machines.
        // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
        unsafe {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
            }
        }
        let listener =
            super::listen("127.0.0.1:0".parse().expect("an address")).expect("listening");
        let address = listener.local_addr().expect("its address");
        let mut connecting = tokio::task::JoinSet::new();
        for _ in 0..BURST {
            connecting.spawn(tokio::time::timeout(
                std::time::Duration::from_secs(20),
                tokio::net::TcpStream::connect(address),
            ));
        }
        let mut connected = Vec::with_capacity(BURST);
        while let Some(outcome) = connecting.join_next().await {
            if let Ok(Ok(Ok(stream))) = outcome {
                connected.push(stream);
            }
        }
        assert_eq!(
            connected.len(),
            BURST,
            "connections completed without an accept"
        );
        drop(listener);
    }

    /// A live stream's request says the same once its head is copied out of hyper's buffer:
    /// its URI, and every header in order, repeated ones included, sensitive ones still so.
    #[test]
    fn owning_a_request_head_keeps_what_it_says() {
        let mut request = axum::http::Request::builder()
            .uri("/v1/rooms/a%20b/events?maxEvents=3")
            .header("authorization", "Bearer secret")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-for", "10.0.0.2")
            .header("last-event-id", "42")
            .body(())
            .expect("a request");
        if let Some(value) = request.headers_mut().get_mut("authorization") {
            value.set_sensitive(true);
        }
        let (uri, headers) = (request.uri().clone(), request.headers().clone());
        super::own_head(&mut request);
        assert_eq!(request.uri(), &uri);
        assert_eq!(request.headers(), &headers);
        let forwarded: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        assert_eq!(forwarded, ["10.0.0.1", "10.0.0.2"]);
        assert!(request.headers()["authorization"].is_sensitive());
    }
}
