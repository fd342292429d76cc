//! The controller's TLS material, read and checked at start so a bad file is reported with the
//! flag that named it, not as a handshake failure later.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The controller's certificate chain and key, and the CA its clients' certificates come from.
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// A TLS file that cannot be used; names the flag and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag}: cannot read {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag}: {path} holds no PEM certificate")]
    NoCertificate { flag: &'static str, path: PathBuf },
    #[error("{flag}: {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { flag: &'static str, path: PathBuf },
    #[error(
        "{missing} is needed with {given}: TLS takes --tls-cert, --tls-key and --tls-client-ca"
    )]
    Incomplete {
        given: &'static str,
        missing: &'static str,
    },
}

/// Reads a PEM file holding at least one certificate.
pub fn read_certificates(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .filter(Result::is_ok)
        .count();
    if certs == 0 {
        return Err(TlsError::NoCertificate {
            flag,
            path: path.to_owned(),
        });
    }
    Ok(pem)
}

/// Reads a PEM file holding a private key.
pub fn read_key(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(flag, path)?;
    if PrivateKeyDer::from_pem_slice(&pem).is_err() {
        return Err(TlsError::NoKey {
            flag,
            path: path.to_owned(),
        });
    }
    Ok(pem)
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

impl ServerTls {
    /// Loads the three files; all or none must be given.
    pub fn load(
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<ServerTls>, TlsError> {
        let given = [
            ("--tls-cert", cert.is_some()),
            ("--tls-key", key.is_some()),
            ("--tls-client-ca", client_ca.is_some()),
        ];
        let (Some(cert), Some(key), Some(client_ca)) = (cert, key, client_ca) else {
            return match given.iter().find(|(_, g)| *g) {
                None => Ok(None),
                Some((flag, _)) => Err(TlsError::Incomplete {
                    given: flag,
                    missing: given.iter().find(|(_, g)| !*g).map_or("", |(f, _)| f),
                }),
            };
        };
        Ok(Some(ServerTls {
            cert_pem: read_certificates("--tls-cert", cert)?,
            key_pem: read_key("--tls-key", key)?,
            client_ca_pem: read_certificates("--tls-client-ca", client_ca)?,
        }))
    }

    /// From PEM text already in memory (tests).
    pub fn from_pem(cert: &str, key: &str, client_ca: &str) -> ServerTls {
        ServerTls {
            cert_pem: cert.as_bytes().to_vec(),
            key_pem: key.as_bytes().to_vec(),
            client_ca_pem: client_ca.as_bytes().to_vec(),
        }
    }

    /// tonic's server configuration: the controller's identity; client certificates verified
    /// against the client CA when presented, but optional, since operators may use a bearer
    /// token instead (the [`Gate`](super::Gate) requires one or the other per service).
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(Certificate::from_pem(&self.client_ca_pem))
            .client_auth_optional(true)
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_takes_all_three_files_or_none() {
        assert!(ServerTls::load(None, None, None).unwrap().is_none());
        let e = ServerTls::load(Some(Path::new("c.pem")), None, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("--tls-key is needed with --tls-cert"),
            "{e}"
        );
        let e = ServerTls::load(None, None, Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.to_string().starts_with("--tls-cert"), "{e}");
    }
}
