//! `perch serve`.

pub mod config;

use std::io::Write;
use std::sync::Arc;

use miette::{Context, IntoDiagnostic};

use super::EXIT_OK;
use crate::server::{AppOptions, metrics::Metrics};
use crate::service::Service;
use crate::store::Store;

pub use config::{ServeConfig, ServeFlags};

/// `--check-config`: the options resolved, and the TLS files loaded, without opening the
/// database or listening.
pub fn check(config: &ServeConfig) -> miette::Result<u8> {
    if let Some(tls) = &config.tls {
        crate::server::tls::server_config(&tls.value.cert, &tls.value.key).into_diagnostic()?;
    }
    out!("{}", config.describe());
    outln!("the configuration is valid");
    Ok(EXIT_OK)
}

pub async fn run(config: ServeConfig) -> miette::Result<u8> {
    let tls = match &config.tls {
        Some(tls) => Some(
            crate::server::tls::server_config(&tls.value.cert, &tls.value.key).into_diagnostic()?,
        ),
        None => None,
    };
    let db = &config.db.value;
    let shown_db = config::redact_password(db);
    let store = Store::open(db)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open the database {shown_db}"))?;
    let listen = config.listen.value;
    let listener = crate::server::listen(listen)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr().into_diagnostic()?;
    let metrics_listener = match config.metrics_listen.as_ref().map(|metrics| metrics.value) {
        Some(metrics_address) => Some(
            tokio::net::TcpListener::bind(metrics_address)
                .await
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot listen on {metrics_address} for metrics"))?,
        ),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%address, db = %shown_db, tls = tls.is_some(), "perch is serving");
    // Tests and scripts read these lines to learn the ports.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "perch listening on {scheme}://{address}");
    if let Some(metrics_listener) = &metrics_listener
        && let Ok(metrics_address) = metrics_listener.local_addr()
    {
        let _ = writeln!(stdout, "perch metrics on http://{metrics_address}/metrics");
    }
    let _ = stdout.flush();
    let service = Service::new(store.clone());
    // Before the first request is served: a post on another node then wakes this node's
    // streams at once rather than at their next poll.
    if let Err(error) = service.listen_to_other_nodes().await {
        tracing::warn!(%error, "cannot hear the other nodes' commits; live streams poll every 500 ms instead");
    }
    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    let archiver = {
        let service = service.clone();
        let stopped = background_stopped.clone();
        tokio::spawn(async move { service.run_archiver(stopped).await })
    };
    let retention = {
        let service = service.clone();
        let interval = std::time::Duration::from_secs(config.retention_interval.value);
        let stopped = background_stopped.clone();
        tokio::spawn(async move { service.run_retention(interval, stopped).await })
    };
    let signalled = {
        let service = service.clone();
        async move {
            crate::server::shutdown_signal().await;
            service.begin_drain();
        }
    };
    let mut drain_started = service.watch_drain();
    let timeout = std::time::Duration::from_secs(config.shutdown_timeout.value);
    let rate = config.rate_limit.value;
    let options = AppOptions {
        rate_limit: (rate > 0).then(|| crate::server::limits::RateLimit {
            per_second: f64::from(rate),
            burst: 2.0 * f64::from(rate),
        }),
        metrics_route: metrics_listener.is_none(),
    };
    let metrics = Arc::new(Metrics::default());
    let metrics_server = metrics_listener.map(|metrics_listener| {
        let app = crate::server::metrics::metrics_only(metrics.clone(), service.clone());
        let mut stopped = background_stopped.clone();
        tokio::spawn(crate::server::serve(
            metrics_listener,
            app,
            None,
            async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            },
        ))
    });
    let app = crate::server::app_serving(service.clone(), &options, metrics);
    let serving = crate::server::serve(listener, app, tls, signalled);
    let served = tokio::select! {
        served = serving => served,
        () = async {
            let _ = drain_started.wait_for(|draining| *draining).await;
            tokio::time::sleep(timeout).await;
        } => {
            tracing::warn!(seconds = config.shutdown_timeout.value, "requests still open after the shutdown timeout; stopping anyway");
            Ok(())
        }
    };
    let _ = stop_background.send(true);
    let _ = archiver.await;
    let _ = retention.await;
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    // The uses of tokens gathered in the last second, before the database closes.
    service.write_token_uses().await;
    served.into_diagnostic().wrap_err("the server failed")?;
    store.close().await;
    tracing::info!("stopped; database closed");
    Ok(EXIT_OK)
}
