//! `perch serve`.

use std::io::Write;
use std::net::SocketAddr;

use miette::{Context, IntoDiagnostic};

use super::{DEFAULT_DB, EXIT_OK};
use crate::service::Service;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port; the address is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// Database URL: sqlite://FILE or postgres://USER@HOST/DB. Migrated on start.
    #[arg(long, env = "PERCH_DB", default_value = DEFAULT_DB)]
    db: String,
    /// Requests per second each caller (a bearer token, or an address without one) may make;
    /// twice as many at once after a quiet spell. Over it: 429 with Retry-After. 0 turns it off.
    #[arg(
        long,
        env = "PERCH_RATE_LIMIT",
        default_value_t = 2000,
        value_name = "PER_SECOND"
    )]
    rate_limit: u32,
    /// On SIGTERM or Ctrl-C: live streams end at once (clients resume by Last-Event-ID),
    /// in-flight requests get this many seconds to finish, then the server exits.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    shutdown_timeout: u64,
    /// How often retention deletes expired messages (categories' `retention`), in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    retention_interval: u64,
}

pub async fn run(args: ServeArgs) -> miette::Result<u8> {
    let store = Store::open(&args.db)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot open the database {}", args.db))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().into_diagnostic()?;
    tracing::info!(%address, db = %args.db, "perch is serving");
    // Tests and scripts read this line to learn the port.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "perch listening on http://{address}");
    let _ = stdout.flush();
    let service = Service::new(store.clone());
    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    let archiver = {
        let service = service.clone();
        let stopped = background_stopped.clone();
        tokio::spawn(async move { service.run_archiver(stopped).await })
    };
    let retention = {
        let service = service.clone();
        let interval = std::time::Duration::from_secs(args.retention_interval);
        tokio::spawn(async move { service.run_retention(interval, background_stopped).await })
    };
    let signalled = {
        let service = service.clone();
        async move {
            crate::server::shutdown_signal().await;
            service.begin_drain();
        }
    };
    let mut drain_started = service.watch_drain();
    let timeout = std::time::Duration::from_secs(args.shutdown_timeout);
    let rate_limit = (args.rate_limit > 0).then(|| crate::server::limits::RateLimit {
        per_second: f64::from(args.rate_limit),
        burst: 2.0 * f64::from(args.rate_limit),
    });
    let serving = crate::server::serve(listener, service.clone(), rate_limit, signalled);
    let served = tokio::select! {
        served = serving => served,
        () = async {
            let _ = drain_started.wait_for(|draining| *draining).await;
            tokio::time::sleep(timeout).await;
        } => {
            tracing::warn!(seconds = args.shutdown_timeout, "requests still open after the shutdown timeout; stopping anyway");
            Ok(())
        }
    };
    let _ = stop_background.send(true);
    let _ = archiver.await;
    let _ = retention.await;
    served.into_diagnostic().wrap_err("the server failed")?;
    store.close().await;
    tracing::info!("stopped; database closed");
    Ok(EXIT_OK)
}
