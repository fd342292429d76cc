//! TLS towards the controller: the CA that signed the controller's certificate (`--tls-ca`)
//! and the agent's own certificate and key (`--tls-cert`, `--tls-key`), read once at start;
//! and [`find_uri_san`], the one reader of faultline's `spiffe://faultline/ROLE/NAME` URI SANs.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::ConfigError;

/// The URI SAN prefix of every faultline certificate: `spiffe://faultline/ROLE/NAME`.
pub const SPIFFE_PREFIX: &str = "spiffe://faultline/";

/// The first URI SAN of a DER certificate that `f` accepts, as `f` maps it; `None` when there
/// is none or the certificate cannot be parsed. The agent reads its own name with it, the
/// controller a peer's role and name.
pub fn find_uri_san<T>(der: &[u8], f: impl FnMut(&str) -> Option<T>) -> Option<T> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .find_map(f)
}

/// The PEM files of the controller connection's TLS.
#[derive(Clone)]
pub struct ClientTls {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the CA and, when given, the agent's certificate and key; errors name the flag and
    /// the file.
    pub fn load(
        ca: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<ClientTls, ConfigError> {
        let ca = read_pem("--tls-ca", ca, "CERTIFICATE-----")?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((
                read_pem("--tls-cert", cert, "CERTIFICATE-----")?,
                read_pem("--tls-key", key, "PRIVATE KEY-----")?,
            )),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::new("--tls-key", "needed with --tls-cert")),
            (None, Some(_)) => return Err(ConfigError::new("--tls-cert", "needed with --tls-key")),
        };
        Ok(ClientTls { ca, identity })
    }

    /// From PEM text already in memory (tests, embedded agents).
    pub fn from_pem(ca: &str, identity: Option<(&str, &str)>) -> ClientTls {
        ClientTls {
            ca: ca.as_bytes().to_vec(),
            identity: identity.map(|(c, k)| (c.as_bytes().to_vec(), k.as_bytes().to_vec())),
        }
    }

    /// The NAME of the agent's own certificate, from its `spiffe://faultline/agent/NAME` URI SAN
    /// (what `faultline certs issue NAME --role agent` writes): the controller takes from it only
    /// the agent ids NAME and NAME/..., so the default id is made under it. `None` without a
    /// certificate, or when it has no such SAN.
    pub fn agent_name(&self) -> Option<String> {
        let (cert, _) = self.identity.as_ref()?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert).ok()?;
        find_uri_san(&pem.contents, |uri| {
            uri.strip_prefix(SPIFFE_PREFIX)?
                .strip_prefix("agent/")
                .filter(|name| !name.is_empty() && !name.contains('/'))
                .map(str::to_owned)
        })
    }

    /// tonic's client configuration; the server name checked is the URL's host.
    pub fn client_config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

fn read_pem(flag: &str, path: &Path, marker: &str) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::new(flag, format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&pem);
    if !text.contains("-----BEGIN") || !text.contains(marker) {
        return Err(ConfigError::new(
            flag,
            format!(
                "{} is not a PEM file with a {}",
                path.display(),
                marker.trim_end_matches('-').to_lowercase()
            ),
        ));
    }
    Ok(pem)
}
