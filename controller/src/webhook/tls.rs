//! The webhook's server certificate: PEM files read once at start-up into a rustls
//! `ServerConfig` (ring provider, TLS 1.2 and 1.3, ALPN h2 and http/1.1). A renewed certificate
//! takes a restart; the chart rolls the Deployment when its Secret changes.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::WebhookError;

/// A server config for the certificate chain in `cert` and the key in `key` (PKCS#8, PKCS#1 or
/// SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, WebhookError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| WebhookError::Cert {
            path: cert.to_owned(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(WebhookError::Cert {
            path: cert.to_owned(),
            message: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| WebhookError::Key {
        path: key.to_owned(),
        message: e.to_string(),
    })?;
    from_der(chain, key)
}

/// A server config for a chain and key already in memory (tests).
pub fn from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, WebhookError> {
    // The provider is passed explicitly rather than installed process-wide (as in guard/http.rs).
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(WebhookError::Tls)?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(WebhookError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
