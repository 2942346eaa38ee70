//! TLS of perch's own, for deployments without a proxy in front: rustls (ring), offering
//! HTTP/2 and HTTP/1.1 by ALPN.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate chain {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("cannot read the TLS private key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("the TLS certificate {cert} and key {key} do not go together: {source}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The largest PEM file read: a chain of a few certificates is a few KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

fn read_pem(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB",
            MAX_PEM_BYTES / 1024
        )));
    }
    Ok(bytes)
}

/// Loads a PEM certificate chain (leaf first) and its private key into a server
/// configuration that offers `h2` and `http/1.1`.
///
/// # Errors
/// An unreadable file, a file without a certificate or key, or a key that is not the
/// certificate's.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certificate_error = |message: String| TlsError::Certificate {
        path: cert.to_owned(),
        message,
    };
    let key_error = |message: String| TlsError::Key {
        path: key.to_owned(),
        message,
    };
    let cert_pem = read_pem(cert).map_err(|error| certificate_error(error.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| certificate_error(error.to_string()))?;
    if chain.is_empty() {
        return Err(certificate_error(
            "it holds no PEM CERTIFICATE block".to_owned(),
        ));
    }
    let key_pem = read_pem(key).map_err(|error| key_error(error.to_string()))?;
    let private_key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| key_error(error.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mismatch = |source| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(mismatch)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
