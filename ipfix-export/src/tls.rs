//! IPFIX over TLS (RFC 7011 §11): the client configuration, built once from the operator's
//! files before capture starts (and before privileges are dropped), and the connection state
//! machine the stream thread drives.
//!
//! rustls, not OpenSSL: a pure state machine (`ClientConnection`, fed with `read_tls` and
//! drained with `write_tls`) that keeps the socket at our edge, with the `ring` provider so no
//! C library beyond ring's own is linked. TLS 1.2 and 1.3; the collector's certificate is
//! verified against `--tls-ca` (else the system's roots) and its name against the URL's host
//! (else `--tls-server-name`); `--tls-cert`/`--tls-key` present a client certificate.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The operator's TLS settings, shared by every `tls://` destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file of the CA certificates that may sign a collector's certificate; `None`: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// The name the collector's certificate must carry, instead of the URL's host.
    pub server_name: Option<String>,
    /// Client certificate chain (PEM) and its private key (PEM), for mutual authentication.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Why TLS cannot be set up; each says which file or setting, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-ca {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error(
        "no system CA certificates could be read ({0}): give the collector's CA with --tls-ca FILE"
    )]
    NoSystemRoots(String),
    #[error("--tls-cert {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("--tls-key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error(
        "--tls-cert and --tls-key go together: give both for a client certificate, or neither"
    )]
    CertWithoutKey,
    #[error("--tls-cert/--tls-key: {0}")]
    KeyMismatch(String),
    #[error("'{0}' is not a valid TLS server name: use --tls-server-name with the name in the collector's certificate")]
    ServerName(String),
}

/// A client configuration for every `tls://` collector.
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsClient {
    /// Reads the CA, certificate and key files now: a problem is a start-up error, and the
    /// files need not stay readable after privileges are dropped.
    pub fn new(s: &TlsSettings) -> Result<TlsClient, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match &s.ca_file {
            Some(path) => {
                let ca = |reason: String| TlsError::Ca {
                    path: path.clone(),
                    reason,
                };
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|e| ca(pem_error(&e)))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| ca(pem_error(&e)))?;
                if certs.is_empty() {
                    return Err(ca("no CERTIFICATE in the file".into()));
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| ca(format!("not a usable CA certificate: {e}")))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    let _ = roots.add(c);
                }
                if roots.is_empty() {
                    let why = found
                        .errors
                        .first()
                        .map_or("none installed".to_string(), |e| e.to_string());
                    return Err(TlsError::NoSystemRoots(why));
                }
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots);
        let config = match (&s.client_cert, &s.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = load_chain(cert)?;
                let key = load_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::KeyMismatch(e.to_string()))?
            }
            _ => return Err(TlsError::CertWithoutKey),
        };
        if let Some(n) = &s.server_name {
            ServerName::try_from(n.clone()).map_err(|_| TlsError::ServerName(n.clone()))?;
        }
        Ok(TlsClient {
            config: Arc::new(config),
            server_name: s.server_name.clone(),
        })
    }

    /// A new session to the collector named `host` in its URL.
    pub fn connect(&self, host: &str) -> Result<rustls::ClientConnection, TlsError> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.to_string())
            .map_err(|_| TlsError::ServerName(name.to_string()))?;
        rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(|e| TlsError::ServerName(e.to_string()))
    }
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not a PEM file ({other:?})"),
    }
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Cert {
        path: path.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(pem_error(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(pem_error(&e)))?;
    if chain.is_empty() {
        return Err(err("no CERTIFICATE in the file".into()));
    }
    Ok(chain)
}

/// The private key, refused when others than its owner may read it (as ssh does): a flow
/// exporter's key is worth protecting, and a loose mode is usually a mistake.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |reason: String| TlsError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let mode = std::fs::metadata(path)
        .map_err(|e| err(e.to_string()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "permissions {:04o} let others read the private key: chmod 600 {}",
            mode & 0o7777,
            path.display()
        )));
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| err(pem_error(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loose_key_and_a_missing_ca_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("k.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_key(&key).unwrap_err().to_string();
        assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
        let s = TlsSettings {
            ca_file: Some(dir.join("missing.pem")),
            ..Default::default()
        };
        let e = TlsClient::new(&s).unwrap_err().to_string();
        assert!(
            e.starts_with("--tls-ca") && e.contains("missing.pem"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
