//! Who may call the controller, and the record of what they did.
//!
//! - [`tls`]: the controller's certificate, key and client CA (`--tls-cert`, `--tls-key`,
//!   `--tls-client-ca`), loaded and checked at start into tonic's `ServerTlsConfig`.
//! - [`tokens`]: operators' bearer tokens (`--tokens-file`), compared in constant time,
//!   reloaded on SIGHUP and every 10 s.
//! - [`principal`]: who a call comes from: a token's name, or a certificate's role and name
//!   (its `spiffe://faultline/ROLE/NAME` URI SAN).
//! - [`gate`]: the one decision per call (operator API: a token or an operator certificate;
//!   agent stream: an agent certificate) and the audit row it writes before anything runs;
//!   [`denied`]: the budget of denied calls written to the audit log (a flood is summed up).
//! - [`operator`]: `ExperimentService` and `AgentRegistry` wrapped so every call passes the
//!   gate and its outcome is audited; [`agents`]: `AgentService` wrapped likewise.
//!
//! Without TLS and tokens the controller is open (the local demo, tests); it says so at start
//! and refuses a non-loopback `--listen` unless `--insecure`.

pub mod agents;
pub mod denied;
pub mod gate;
pub mod operator;
pub mod principal;
pub mod tls;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

pub use self::gate::Gate;
pub use self::principal::{Principal, Role};
pub use self::tls::{ServerTls, TlsError};
pub use self::tokens::{Tokens, TokensError};

/// The controller's trust settings, loaded at start.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// mTLS: the controller's identity and the CA its clients' certificates come from.
    pub tls: Option<ServerTls>,
    /// Operators' bearer tokens.
    pub tokens: Option<Arc<Tokens>>,
    /// Serve a non-loopback address with no authentication at all (`--insecure`).
    pub insecure: bool,
}

/// A trust setting that refuses to start; names the flag.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "--listen {listen} is not a loopback address and neither TLS (--tls-cert, --tls-key, \
         --tls-client-ca) nor --tokens-file is configured: anyone who can reach it could run \
         experiments; configure authentication, or pass --insecure to serve it open anyway"
    )]
    OpenOnNetwork { listen: SocketAddr },
}

impl Trust {
    /// Whether any authentication is configured.
    pub fn authenticates(&self) -> bool {
        self.tls.is_some() || self.tokens.is_some()
    }

    /// Refuses an open controller on a non-loopback address (unless `insecure`). The binary
    /// calls it before binding anything; [`Server::with_trust`](crate::server::Server::with_trust)
    /// again.
    pub fn check(&self, listen: SocketAddr) -> Result<(), TrustError> {
        if !self.authenticates() && !listen.ip().is_loopback() && !self.insecure {
            return Err(TrustError::OpenOnNetwork { listen });
        }
        Ok(())
    }

    /// Logs what is left unprotected.
    pub fn warn_unprotected(&self, listen: SocketAddr) {
        if !self.authenticates() {
            tracing::warn!(
                %listen,
                "no authentication configured (--tls-* or --tokens-file): anyone who can reach \
                 the controller may run experiments and connect as an agent"
            );
        } else if self.tls.is_none() {
            tracing::warn!(
                "no TLS configured: bearer tokens cross the network in clear text and agents \
                 connect unauthenticated; configure --tls-cert, --tls-key and --tls-client-ca"
            );
        }
    }
}
