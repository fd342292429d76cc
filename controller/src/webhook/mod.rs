//! The injection webhook: a Kubernetes mutating admission webhook, served over HTTPS on its own
//! address, that adds the faultline agent to the pods annotated `faultline.dev/inject: "true"`.
//!
//! - [`review`]: the `admission.k8s.io/v1` `AdmissionReview` request and response.
//! - [`config`]: the inject config (image, ports, user, resources, TLS Secret, the chart's
//!   agent environment), read once from the file the Helm chart's ConfigMap provides.
//! - [`annotations`]: the pod's `faultline.dev/*` annotations, read into the options of one
//!   injection; [`syntax`], [`quantity`] and [`resources`] are the value syntaxes they share with
//!   the config.
//! - [`mutate`]: one request to its verdict: left alone, refused (naming the annotation) or
//!   injected; [`sidecar`] builds the agent and init containers, [`env`] the agent's per-pod
//!   environment (Downward API), [`patch`] the JSON Patch operations.
//! - [`server`]: the HTTPS server (`POST /mutate`, `GET /healthz`); [`tls`] its certificate.
//!
//! The controller starts it with [`Server::bind_webhook`](crate::server::Server::bind_webhook)
//! when given `--webhook-listen`; it stops with the controller's shutdown signal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod annotations;
pub mod config;
pub mod env;
pub mod mutate;
pub mod patch;
pub mod quantity;
pub mod resources;
pub mod review;
pub mod server;
pub mod sidecar;
pub mod syntax;
pub mod tls;

pub use config::InjectConfig;

/// The webhook's HTTPS listen address (`--webhook-listen`); no webhook without it.
pub const ENV_LISTEN: &str = "FAULTLINE_WEBHOOK_LISTEN";
/// The webhook's certificate chain, PEM (`--webhook-cert`).
pub const ENV_CERT: &str = "FAULTLINE_WEBHOOK_CERT";
/// The webhook certificate's private key, PEM (`--webhook-key`).
pub const ENV_KEY: &str = "FAULTLINE_WEBHOOK_KEY";
/// The inject config file, YAML (`--inject-config`).
pub const ENV_INJECT_CONFIG: &str = "FAULTLINE_INJECT_CONFIG";

/// The webhook's settings, loaded and checked: ready to serve.
#[derive(Clone, Debug)]
pub struct Webhook {
    tls: Arc<rustls::ServerConfig>,
    inject: Arc<InjectConfig>,
}

/// The webhook cannot start; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("--webhook-cert / {ENV_CERT}: {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("--webhook-key / {ENV_KEY}: {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("--webhook-cert / --webhook-key: {0}")]
    Tls(#[source] rustls::Error),
    #[error("--inject-config / {ENV_INJECT_CONFIG}: {0}")]
    InjectConfig(#[from] config::InjectConfigError),
}

impl Webhook {
    /// Reads the certificate, its key and the inject config.
    pub fn load(cert: &Path, key: &Path, inject_config: &Path) -> Result<Webhook, WebhookError> {
        let tls = tls::server_config(cert, key)?;
        let inject = InjectConfig::load(inject_config)?;
        Ok(Webhook::new(tls, inject))
    }

    pub fn new(tls: Arc<rustls::ServerConfig>, inject: InjectConfig) -> Webhook {
        Webhook {
            tls,
            inject: Arc::new(inject),
        }
    }

    pub fn inject_config(&self) -> &InjectConfig {
        &self.inject
    }
}

#[cfg(test)]
mod tests;
