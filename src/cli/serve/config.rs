//! `perch serve`'s options, resolved from three places: a flag or its `PERCH_*` variable,
//! then the `--config` file, then the default.
//!
//! The file is TOML; every key is a flag's name without its dashes (`rate-limit = 500`), and
//! a key that no flag has is an error, so a typo never silently leaves a default in place.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use miette::miette;

use crate::cli::{DEFAULT_DB, LogFormat};

/// The flags, as clap parsed them: `None` where neither the flag nor its variable was given.
#[derive(Debug, Default, clap::Args)]
pub struct ServeFlags {
    /// Read options from this TOML file (keys are the flags' names: `listen`, `db`,
    /// `rate-limit`, ...). Flags and PERCH_* variables override it.
    #[arg(long, env = "PERCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Resolve and check the options (the file, TLS certificate and key, addresses), print
    /// each with where it came from, and exit: 0 valid, 1 not. Opens no database.
    #[arg(long)]
    pub check_config: bool,
    /// Address to listen on [default: 127.0.0.1:8470]. Port 0 picks a free port; the address
    /// is printed on stdout.
    #[arg(long, env = "PERCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Database URL: sqlite://FILE or postgres://USER@HOST/DB [default: sqlite://perch.db].
    /// Migrated on start.
    #[arg(long, env = "PERCH_DB")]
    pub db: Option<String>,
    /// Requests per second each caller (a bearer token, or an address without one) may make
    /// [default: 2000]; twice as many at once after a quiet spell. Over it: 429 with
    /// Retry-After. 0 turns it off.
    #[arg(long, env = "PERCH_RATE_LIMIT", value_name = "PER_SECOND")]
    pub rate_limit: Option<u32>,
    /// On SIGTERM or Ctrl-C: /readyz answers 503, live streams end at once (clients resume by
    /// Last-Event-ID), in-flight requests get this many seconds to finish [default: 10], then
    /// the server exits.
    #[arg(long, env = "PERCH_SHUTDOWN_TIMEOUT", value_name = "SECONDS")]
    pub shutdown_timeout: Option<u64>,
    /// How often retention deletes expired messages (categories' `retention`), in seconds
    /// [default: 3600].
    #[arg(long, env = "PERCH_RETENTION_INTERVAL", value_name = "SECONDS")]
    pub retention_interval: Option<u64>,
    /// Serve HTTPS (and HTTP/2) with this PEM certificate chain; needs --tls-key.
    #[arg(long, env = "PERCH_TLS_CERT", value_name = "PEM_FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "PERCH_TLS_KEY", value_name = "PEM_FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve GET /metrics (Prometheus) on this address only, apart from the API; without it
    /// /metrics is served on --listen.
    #[arg(long, env = "PERCH_METRICS_LISTEN", value_name = "ADDRESS")]
    pub metrics_listen: Option<SocketAddr>,
}

/// What the `--config` file may hold.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ConfigFile {
    listen: Option<SocketAddr>,
    db: Option<String>,
    rate_limit: Option<u32>,
    shutdown_timeout: Option<u64>,
    retention_interval: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    log: Option<String>,
    log_format: Option<LogFormat>,
}

/// Where an option's value came from, as `--check-config` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Variable(&'static str),
    File,
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("flag"),
            Origin::Variable(name) => f.write_str(name),
            Origin::File => f.write_str("config file"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// One resolved option and where it came from.
#[derive(Clone, Debug)]
pub struct Resolved<T> {
    pub value: T,
    pub origin: Origin,
}

/// Every option of `perch serve`, resolved.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub file: Option<PathBuf>,
    pub listen: Resolved<SocketAddr>,
    pub db: Resolved<String>,
    pub rate_limit: Resolved<u32>,
    pub shutdown_timeout: Resolved<u64>,
    pub retention_interval: Resolved<u64>,
    pub tls: Option<Resolved<TlsFiles>>,
    pub metrics_listen: Option<Resolved<SocketAddr>>,
    pub log: Resolved<String>,
    pub log_format: Resolved<LogFormat>,
}

/// The certificate chain and key files TLS serves with.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The largest configuration file read: a few dozen lines are expected.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// How clap learned one argument: a flag, its variable, or neither.
pub struct Sources<'a> {
    matches: Option<&'a clap::ArgMatches>,
    top: Option<&'a clap::ArgMatches>,
}

impl<'a> Sources<'a> {
    /// `serve` is the subcommand's matches; `top` the whole command line's (global flags).
    pub fn new(serve: Option<&'a clap::ArgMatches>, top: Option<&'a clap::ArgMatches>) -> Self {
        Sources {
            matches: serve,
            top,
        }
    }

    fn origin(&self, id: &str, variable: &'static str) -> Origin {
        let source = self
            .matches
            .and_then(|matches| matches.value_source(id))
            .or_else(|| self.top.and_then(|top| top.value_source(id)));
        match source {
            Some(ValueSource::EnvVariable) => Origin::Variable(variable),
            _ => Origin::Flag,
        }
    }
}

/// The global logging flags, which `serve` can also take from its file.
#[derive(Clone, Debug, Default)]
pub struct LogFlags {
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
}

/// Resolves every option: flag or variable, then file, then default.
///
/// # Errors
/// An unreadable or invalid file (named with its line and column), or options that do not go
/// together.
pub fn resolve(
    flags: &ServeFlags,
    log_flags: &LogFlags,
    sources: &Sources<'_>,
) -> miette::Result<ServeConfig> {
    let file = match &flags.config {
        Some(path) => read_file(path)?,
        None => ConfigFile::default(),
    };
    let pick = |id: &str, variable: &'static str, given: bool, in_file: bool| {
        if given {
            sources.origin(id, variable)
        } else if in_file {
            Origin::File
        } else {
            Origin::Default
        }
    };
    macro_rules! option {
        ($field:ident, $variable:literal, $default:expr) => {{
            let origin = pick(
                stringify!($field),
                $variable,
                flags.$field.is_some(),
                file.$field.is_some(),
            );
            Resolved {
                value: flags
                    .$field
                    .clone()
                    .or_else(|| file.$field.clone())
                    .unwrap_or_else(|| $default),
                origin,
            }
        }};
    }
    let listen = option!(
        listen,
        "PERCH_LISTEN",
        SocketAddr::from(([127, 0, 0, 1], 8470))
    );
    let db = option!(db, "PERCH_DB", DEFAULT_DB.to_owned());
    let rate_limit = option!(rate_limit, "PERCH_RATE_LIMIT", 2000);
    let shutdown_timeout = option!(shutdown_timeout, "PERCH_SHUTDOWN_TIMEOUT", 10);
    let retention_interval = option!(retention_interval, "PERCH_RETENTION_INTERVAL", 3600);
    let tls_cert = optional(
        flags.tls_cert.clone(),
        file.tls_cert.clone(),
        pick("tls_cert", "PERCH_TLS_CERT", flags.tls_cert.is_some(), true),
    );
    let tls_key = optional(
        flags.tls_key.clone(),
        file.tls_key.clone(),
        pick("tls_key", "PERCH_TLS_KEY", flags.tls_key.is_some(), true),
    );
    let metrics_listen = optional(
        flags.metrics_listen,
        file.metrics_listen,
        pick(
            "metrics_listen",
            "PERCH_METRICS_LISTEN",
            flags.metrics_listen.is_some(),
            true,
        ),
    );
    let log = Resolved {
        origin: pick(
            "log",
            "PERCH_LOG",
            log_flags.log.is_some(),
            file.log.is_some(),
        ),
        value: log_flags
            .log
            .clone()
            .or(file.log)
            .unwrap_or_else(|| "info".to_owned()),
    };
    let log_format = Resolved {
        origin: pick(
            "log_format",
            "PERCH_LOG_FORMAT",
            log_flags.log_format.is_some(),
            file.log_format.is_some(),
        ),
        value: log_flags
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Text),
    };

    if retention_interval.value == 0 {
        return Err(miette!(
            "retention-interval ({}) must be at least 1 second",
            retention_interval.origin
        ));
    }
    if crate::store::Backend::from_url(&db.value).is_none() {
        return Err(miette!(
            "db ({}): `{}` is not a database URL perch knows: use sqlite://FILE or postgres://USER@HOST/DB",
            db.origin,
            crate::text::terminal_safe(&redact_password(&db.value))
        ));
    }
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(Resolved {
            value: TlsFiles {
                cert: cert.value,
                key: key.value,
            },
            origin: cert.origin,
        }),
        (None, None) => None,
        (Some(_), None) => return Err(miette!("tls-cert is set but tls-key is not: give both")),
        (None, Some(_)) => return Err(miette!("tls-key is set but tls-cert is not: give both")),
    };
    if let Some(metrics) = &metrics_listen
        && metrics.value == listen.value
        && listen.value.port() != 0
    {
        return Err(miette!(
            "metrics-listen and listen are both {}: give metrics its own address, or leave metrics-listen out to serve /metrics with the API",
            listen.value
        ));
    }
    Ok(ServeConfig {
        file: flags.config.clone(),
        listen,
        db,
        rate_limit,
        shutdown_timeout,
        retention_interval,
        tls,
        metrics_listen,
        log,
        log_format,
    })
}

fn optional<T>(flag: Option<T>, file: Option<T>, origin: Origin) -> Option<Resolved<T>> {
    let origin = if flag.is_some() { origin } else { Origin::File };
    flag.or(file).map(|value| Resolved { value, origin })
}

fn read_file(path: &Path) -> miette::Result<ConfigFile> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|error| miette!("cannot read the configuration file {shown}: {error}"))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| miette!("cannot read the configuration file {shown}: {error}"))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(miette!(
            "{shown}: the configuration file is larger than {} KiB",
            MAX_CONFIG_BYTES / 1024
        ));
    }
    toml::from_str(&text).map_err(|error| {
        let (line, column) = error
            .span()
            .map_or((1, 1), |span| line_and_column(&text, span.start));
        miette!(
            "{shown}:{line}:{column}: {}",
            crate::text::terminal_safe(error.message())
        )
    })
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

/// A database URL with its password replaced, for printing.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl ServeConfig {
    /// The lines `--check-config` prints: each option, its value and where it came from.
    pub fn describe(&self) -> String {
        let mut rows: Vec<(&str, String, String)> = vec![
            (
                "listen",
                self.listen.value.to_string(),
                self.listen.origin.to_string(),
            ),
            (
                "db",
                redact_password(&self.db.value),
                self.db.origin.to_string(),
            ),
            (
                "rate-limit",
                self.rate_limit.value.to_string(),
                self.rate_limit.origin.to_string(),
            ),
            (
                "shutdown-timeout",
                self.shutdown_timeout.value.to_string(),
                self.shutdown_timeout.origin.to_string(),
            ),
            (
                "retention-interval",
                self.retention_interval.value.to_string(),
                self.retention_interval.origin.to_string(),
            ),
        ];
        match &self.tls {
            Some(tls) => {
                rows.push((
                    "tls-cert",
                    tls.value.cert.display().to_string(),
                    tls.origin.to_string(),
                ));
                rows.push((
                    "tls-key",
                    tls.value.key.display().to_string(),
                    tls.origin.to_string(),
                ));
            }
            None => rows.push(("tls", "off".to_owned(), "default".to_owned())),
        }
        match &self.metrics_listen {
            Some(metrics) => rows.push((
                "metrics-listen",
                metrics.value.to_string(),
                metrics.origin.to_string(),
            )),
            None => rows.push((
                "metrics-listen",
                "(with the API)".to_owned(),
                "default".to_owned(),
            )),
        }
        rows.push(("log", self.log.value.clone(), self.log.origin.to_string()));
        rows.push((
            "log-format",
            format!("{:?}", self.log_format.value).to_lowercase(),
            self.log_format.origin.to_string(),
        ));
        let mut out = String::new();
        if let Some(file) = &self.file {
            out.push_str(&format!("config file: {}\n", file.display()));
        }
        for (name, value, origin) in rows {
            out.push_str(&format!("{name:<20} {value:<32} ({origin})\n"));
        }
        crate::text::lines_safe(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redact_password("postgres://perch:s3cret@db:5432/perch?sslmode=require"),
            "postgres://perch:***@db:5432/perch?sslmode=require"
        );
        assert_eq!(
            redact_password("postgres://perch@db/perch"),
            "postgres://perch@db/perch"
        );
        assert_eq!(redact_password("sqlite://perch.db"), "sqlite://perch.db");
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_and_column("a = 1\nbé = x\n", 10), (2, 4));
        assert_eq!(line_and_column("x", 0), (1, 1));
    }
}
