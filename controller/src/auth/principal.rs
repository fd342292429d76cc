//! Who is calling: the name of a bearer token, or the role and name a client certificate
//! carries.
//!
//! Roles live in the certificate's URI SAN, `spiffe://faultline/ROLE/NAME` (what
//! `faultline certs issue --role ROLE NAME` writes). The CA vouches for the whole certificate,
//! so a role read from a certificate the TLS handshake verified is as good as the CA: an agent
//! certificate cannot be passed off as an operator's.

use std::fmt;

/// The URI SAN prefix of every faultline certificate (the agent reads its own name with it).
pub use faultline_agent::config::tls::SPIFFE_PREFIX;
use faultline_agent::config::tls::find_uri_san;

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// An agent: may open `AgentService.Connect`, nothing else.
    Agent,
    /// An operator (a person, CI, the CLI): may call `ExperimentService` and `AgentRegistry`.
    Operator,
    /// The controller's own serving certificate.
    Controller,
    /// The Kubernetes admission webhook's serving certificate.
    Webhook,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Agent, Role::Operator, Role::Controller, Role::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Controller => "controller",
            Role::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether certificates of this role identify a client (else a server).
    pub fn is_client(self) -> bool {
        matches!(self, Role::Agent | Role::Operator)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The URI SAN naming `name` in `role`.
pub fn spiffe_uri(role: Role, name: &str) -> String {
    format!("{SPIFFE_PREFIX}{role}/{name}")
}

/// A name usable in a certificate and an audit row: 1 to 128 of `[A-Za-z0-9._-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Who made a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A bearer token from the tokens file, by its name.
    Token(String),
    /// A client certificate the TLS handshake verified, by its role and name.
    Certificate { role: Role, name: String },
    /// Nobody in particular: the controller runs without authentication.
    Anonymous,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Token(name) => write!(f, "token:{name}"),
            Principal::Certificate { role, name } => write!(f, "{role}:{name}"),
            Principal::Anonymous => f.write_str("anonymous"),
        }
    }
}

impl Principal {
    /// Whether this caller may register as the agent `id`. An agent certificate named `NAME`
    /// covers the id `NAME` and every id under `NAME/`: one certificate per host agent, or one
    /// per Kubernetes namespace, whose injected agents are `NAMESPACE/POD`. Without client
    /// certificates (no TLS, or the controller runs insecure) any id is taken as given.
    pub fn may_be_agent(&self, id: &str) -> bool {
        match self {
            Principal::Certificate {
                role: Role::Agent,
                name,
            } => id
                .strip_prefix(name.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            Principal::Certificate { .. } => false,
            Principal::Token(_) | Principal::Anonymous => true,
        }
    }
}

/// The role and name of a DER certificate: its first `spiffe://faultline/ROLE/NAME` URI SAN.
/// `None` when it has none (or it cannot be parsed).
pub fn certificate_identity(der: &[u8]) -> Option<(Role, String)> {
    find_uri_san(der, parse_uri)
}

fn parse_uri(uri: &str) -> Option<(Role, String)> {
    let (role, name) = uri.strip_prefix(SPIFFE_PREFIX)?.split_once('/')?;
    let role = Role::parse(role)?;
    valid_name(name).then(|| (role, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_a_role_and_a_name() {
        assert_eq!(
            parse_uri("spiffe://faultline/operator/alice"),
            Some((Role::Operator, "alice".into()))
        );
        assert_eq!(
            spiffe_uri(Role::Agent, "pod-1"),
            "spiffe://faultline/agent/pod-1"
        );
        assert_eq!(
            parse_uri(&spiffe_uri(Role::Agent, "pod-1")),
            Some((Role::Agent, "pod-1".into()))
        );
        for bad in [
            "spiffe://faultline/admin/alice",
            "spiffe://other/operator/alice",
            "spiffe://faultline/operator/",
            "spiffe://faultline/operator/a/b",
            "https://faultline/operator/alice",
        ] {
            assert_eq!(parse_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn principals_read_as_audit_rows_show_them() {
        assert_eq!(Principal::Token("ci".into()).to_string(), "token:ci");
        let cert = Principal::Certificate {
            role: Role::Operator,
            name: "alice".into(),
        };
        assert_eq!(cert.to_string(), "operator:alice");
        assert_eq!(Principal::Anonymous.to_string(), "anonymous");
    }

    #[test]
    fn an_agent_certificate_covers_its_name_and_the_ids_under_it() {
        let shop = Principal::Certificate {
            role: Role::Agent,
            name: "shop".into(),
        };
        for id in ["shop", "shop/web-7d9f-x2", "shop/a/b"] {
            assert!(shop.may_be_agent(id), "{id}");
        }
        for id in ["shopping/web", "sho", "other/shop", "", "/shop"] {
            assert!(!shop.may_be_agent(id), "{id}");
        }
        let operator = Principal::Certificate {
            role: Role::Operator,
            name: "shop".into(),
        };
        assert!(!operator.may_be_agent("shop"));
        assert!(Principal::Anonymous.may_be_agent("anything"));
    }
}
