//! The inject config: what the webhook puts into a pod, read once at start-up from the YAML file
//! the Helm chart's ConfigMap provides (`--inject-config`). Syntax errors carry serde-saphyr's
//! line and column; every semantic error names the field's path (`resources.limits.cpu`).
//!
//! ```yaml
//! image: ghcr.io/example/faultline-agent:0.1.0   # required
//! imagePullPolicy: IfNotPresent                  # Always | IfNotPresent | Never
//! adminListen: 127.0.0.1:8474                    # the agent's admin API: loopback only
//! healthListen: 0.0.0.0:15020                    # GET /ready, /version, /metrics (probes, Prometheus)
//! capture: outbound                              # a pod without faultline.dev/capture
//! ipv6: false                                    # also capture IPv6 (faultline.dev/ipv6)
//! ports: {outbound: 15001, inbound: 15006}       # the agent's capture listeners
//! uid: 2102                                      # the agent's user, exempt from capture
//! mark: 2102                                     # SO_MARK of the agent's sockets (0: none)
//! excludeInboundPorts: []                        # never captured, in every pod
//! excludeOutboundPorts: []
//! excludeOutboundCidrs: []
//! resources: {requests: {cpu: 50m, memory: 32Mi}, limits: {cpu: "1", memory: 128Mi}}
//! initResources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 32Mi}}
//! tls: {secretName: faultline-agent-tls, mountPath: /etc/faultline/tls}  # optional
//! env: [{name: FAULTLINE_CONTROLLER, value: "http://faultline:7070"}]   # the chart's _agent-env.tpl
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::env;
use super::quantity::Quantity;
use super::resources::Resources;
use super::syntax::{Capture, Cidr};

/// The validated inject config.
#[derive(Clone, Debug, PartialEq)]
pub struct InjectConfig {
    pub image: String,
    pub pull_policy: String,
    /// The agent's admin API, on loopback: the agent refuses a non-loopback one without an
    /// admin token, which the webhook does not provide. Its port is never captured.
    pub admin: SocketAddr,
    /// The agent's read-only listener (`/ready`, `/version`, `/metrics`, nothing else): the
    /// kubelet probes it and Prometheus may scrape it. Its port is never captured.
    pub health: SocketAddr,
    /// For pods without `faultline.dev/capture`.
    pub capture: Capture,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub uid: u32,
    pub mark: Option<NonZeroU32>,
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub exclude_outbound_cidrs: Vec<Cidr>,
    pub resources: Resources,
    pub init_resources: Resources,
    pub tls: Option<AgentTls>,
    /// Environment entries (Kubernetes `EnvVar` objects) given to every agent as they are.
    pub env: Vec<serde_json::Value>,
    /// Capture IPv6 as well as IPv4 (ip6tables rules, listeners on `[::]`), unless a pod says
    /// otherwise.
    pub ipv6: bool,
    /// Inject the agent as a native sidecar (Kubernetes 1.29+) unless a pod says otherwise.
    pub native_sidecar: bool,
}

/// The Secret (in the pod's namespace) with the agent's client certificate for the
/// controller's mTLS, and where it is mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentTls {
    pub secret_name: String,
    pub mount_path: String,
}

/// The inject config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InjectConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

// === raw ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    image: String,
    #[serde(default = "if_not_present")]
    image_pull_policy: String,
    #[serde(default = "admin_listen")]
    admin_listen: String,
    #[serde(default = "health_listen")]
    health_listen: String,
    #[serde(default = "outbound")]
    capture: String,
    #[serde(default)]
    ports: RawPorts,
    #[serde(default = "agent_uid")]
    uid: u32,
    #[serde(default)]
    mark: u32,
    #[serde(default)]
    exclude_inbound_ports: Vec<u16>,
    #[serde(default)]
    exclude_outbound_ports: Vec<u16>,
    #[serde(default)]
    exclude_outbound_cidrs: Vec<String>,
    #[serde(default)]
    resources: RawResources,
    #[serde(default)]
    init_resources: RawResources,
    tls: Option<RawTls>,
    #[serde(default)]
    env: Vec<serde_json::Value>,
    #[serde(default)]
    native_sidecar: bool,
    #[serde(default)]
    ipv6: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPorts {
    #[serde(default = "outbound_port")]
    outbound: u16,
    #[serde(default = "inbound_port")]
    inbound: u16,
}

impl Default for RawPorts {
    fn default() -> Self {
        RawPorts {
            outbound: outbound_port(),
            inbound: inbound_port(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    #[serde(default)]
    requests: BTreeMap<String, String>,
    #[serde(default)]
    limits: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTls {
    secret_name: String,
    #[serde(default = "tls_mount_path")]
    mount_path: String,
}

fn if_not_present() -> String {
    "IfNotPresent".into()
}
fn admin_listen() -> String {
    "127.0.0.1:8474".into()
}
fn health_listen() -> String {
    "0.0.0.0:15020".into()
}
fn outbound() -> String {
    "outbound".into()
}
fn outbound_port() -> u16 {
    15001
}
fn inbound_port() -> u16 {
    15006
}
/// The agent's user: fixed, non-root, and what the init container exempts from capture.
pub const DEFAULT_UID: u32 = 2102;
fn agent_uid() -> u32 {
    DEFAULT_UID
}
fn tls_mount_path() -> String {
    "/etc/faultline/tls".into()
}

// === impl InjectConfig ===

impl InjectConfig {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<InjectConfig, InjectConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| InjectConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        InjectConfig::parse(&text, path)
    }

    /// Validates `text`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<InjectConfig, InjectConfigError> {
        let raw: Raw = serde_saphyr::from_str(text).map_err(|e| InjectConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        validate(raw).map_err(|(field, message)| InjectConfigError::Invalid {
            path: path.to_owned(),
            field,
            message,
        })
    }

    /// The agent's own ports, never captured inbound.
    pub fn agent_ports(&self) -> [u16; 4] {
        [
            self.admin.port(),
            self.health.port(),
            self.outbound_port,
            self.inbound_port,
        ]
    }
}

/// A field at fault and what is wrong with it.
type Bad = (String, String);

fn bad(field: &str, message: impl Into<String>) -> Bad {
    (field.to_owned(), message.into())
}

/// The inject config from its raw form, each check in its own function below.
fn validate(raw: Raw) -> Result<InjectConfig, Bad> {
    check_image(&raw)?;
    let (admin, health) = listeners(&raw)?;
    let capture: Capture = raw.capture.parse().map_err(|e| bad("capture", e))?;
    check_ports(&raw, admin, health)?;
    let exclude_outbound_cidrs = raw
        .exclude_outbound_cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.parse()
                .map_err(|e| bad(&format!("excludeOutboundCidrs[{i}]"), e))
        })
        .collect::<Result<Vec<Cidr>, _>>()?;
    let agent_resources = resources("resources", &raw.resources)?;
    let init_resources = resources("initResources", &raw.init_resources)?;
    let tls = raw.tls.map(agent_tls).transpose()?;
    check_env(&raw.env)?;
    Ok(InjectConfig {
        image: raw.image,
        pull_policy: raw.image_pull_policy,
        admin,
        health,
        capture,
        outbound_port: raw.ports.outbound,
        inbound_port: raw.ports.inbound,
        uid: raw.uid,
        mark: NonZeroU32::new(raw.mark),
        exclude_inbound_ports: raw.exclude_inbound_ports,
        exclude_outbound_ports: raw.exclude_outbound_ports,
        exclude_outbound_cidrs,
        resources: agent_resources,
        init_resources,
        tls,
        env: raw.env,
        native_sidecar: raw.native_sidecar,
        ipv6: raw.ipv6,
    })
}

fn check_image(raw: &Raw) -> Result<(), Bad> {
    if raw.image.trim().is_empty() {
        return Err(bad("image", "must name the agent's image"));
    }
    if !matches!(
        raw.image_pull_policy.as_str(),
        "Always" | "IfNotPresent" | "Never"
    ) {
        return Err(bad(
            "imagePullPolicy",
            format!(
                "{:?} is not one of Always, IfNotPresent, Never",
                raw.image_pull_policy
            ),
        ));
    }
    Ok(())
}

/// The admin and health listeners.
fn listeners(raw: &Raw) -> Result<(SocketAddr, SocketAddr), Bad> {
    let addr = |field: &str, value: &str| -> Result<SocketAddr, Bad> {
        value
            .parse()
            .map_err(|_| bad(field, format!("{value:?} is not IP:PORT")))
    };
    let admin = addr("adminListen", &raw.admin_listen)?;
    // The agent refuses a non-loopback admin API without --admin-token-file; nothing here
    // would give it one, so every injected agent would fail to start.
    if !admin.ip().is_loopback() {
        return Err(bad(
            "adminListen",
            format!(
                "{admin} is not a loopback address: the agent would refuse to start without \
                 an admin token; keep the admin API on 127.0.0.1 (the kubelet and Prometheus \
                 use healthListen)"
            ),
        ));
    }
    Ok((admin, addr("healthListen", &raw.health_listen)?))
}

/// The agent's four ports are ports and distinct; the agent's user is not root; excluded
/// ports are ports.
fn check_ports(raw: &Raw, admin: SocketAddr, health: SocketAddr) -> Result<(), Bad> {
    let ports = [
        ("ports.outbound", raw.ports.outbound),
        ("ports.inbound", raw.ports.inbound),
        ("adminListen", admin.port()),
        ("healthListen", health.port()),
    ];
    for (i, (field, port)) in ports.iter().enumerate() {
        if *port == 0 {
            return Err(bad(field, "must be a port from 1 to 65535"));
        }
        if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
            return Err(bad(field, format!("{port} is already the port of {other}")));
        }
    }
    if raw.uid == 0 {
        return Err(bad(
            "uid",
            "must not be 0: the agent runs as a non-root user, exempt from capture",
        ));
    }
    for (field, list) in [
        ("excludeInboundPorts", &raw.exclude_inbound_ports),
        ("excludeOutboundPorts", &raw.exclude_outbound_ports),
    ] {
        if list.contains(&0) {
            return Err(bad(field, "0 is not a port"));
        }
    }
    Ok(())
}

fn agent_tls(t: RawTls) -> Result<AgentTls, Bad> {
    if !dns_label(&t.secret_name, 253) {
        return Err(bad(
            "tls.secretName",
            format!("{:?} is not a Secret name", t.secret_name),
        ));
    }
    if !t.mount_path.starts_with('/') {
        return Err(bad(
            "tls.mountPath",
            format!("{:?} is not an absolute path", t.mount_path),
        ));
    }
    Ok(AgentTls {
        secret_name: t.secret_name,
        mount_path: t.mount_path,
    })
}

/// Every entry is named, and none sets a variable the webhook sets per pod.
fn check_env(entries: &[serde_json::Value]) -> Result<(), Bad> {
    for (i, e) in entries.iter().enumerate() {
        let name = e.get("name").and_then(|n| n.as_str()).unwrap_or_default();
        if name.is_empty() {
            return Err(bad(&format!("env[{i}].name"), "every entry needs a name"));
        }
        if env::is_reserved(name) {
            return Err(bad(
                &format!("env[{i}].name"),
                format!("{name} is set by the webhook for each pod; leave it out"),
            ));
        }
    }
    Ok(())
}

/// A section's `requests`/`limits` (`cpu`, `memory`) as [`Resources`]; errors are (field, message).
fn resources(section: &str, raw: &RawResources) -> Result<Resources, Bad> {
    let mut out = Resources::default();
    for (kind, map) in [("requests", &raw.requests), ("limits", &raw.limits)] {
        for (name, value) in map {
            let field = format!("{section}.{kind}.{name}");
            let q = Quantity::parse(value).map_err(|e| (field.clone(), e))?;
            let slot = match (kind, name.as_str()) {
                ("requests", "cpu") => &mut out.cpu_request,
                ("requests", "memory") => &mut out.memory_request,
                ("limits", "cpu") => &mut out.cpu_limit,
                ("limits", "memory") => &mut out.memory_limit,
                _ => return Err((field, "only cpu and memory are set".into())),
            };
            *slot = Some(q);
        }
    }
    if let Some((name, r, l)) = out.request_above_limit() {
        return Err((
            format!("{section}.requests.{name}"),
            format!("{r} is above the limit {l}"),
        ));
    }
    Ok(out)
}

/// A DNS subdomain name (what a Secret's name must be), at most `max` bytes.
fn dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<InjectConfig, InjectConfigError> {
        InjectConfig::parse(text, Path::new("inject.yaml"))
    }

    #[test]
    fn a_minimal_config_takes_the_defaults() {
        let c = parse("image: faultline-agent:dev\n").unwrap();
        assert_eq!(c.pull_policy, "IfNotPresent");
        assert_eq!(c.admin, "127.0.0.1:8474".parse().unwrap());
        assert_eq!(c.health, "0.0.0.0:15020".parse().unwrap());
        assert_eq!(c.capture, Capture::Outbound);
        assert_eq!(c.agent_ports(), [8474, 15020, 15001, 15006]);
        assert_eq!(c.uid, 2102);
        assert_eq!(c.mark, None);
        assert_eq!(c.tls, None);
        assert_eq!(c.resources, Resources::default());
    }

    #[test]
    fn a_full_config_is_read() {
        let c = parse(
            "image: reg/agent:1\nimagePullPolicy: Always\nadminListen: '[::1]:9000'\n\
             healthListen: 0.0.0.0:9001\ncapture: both\nports: {outbound: 16001, inbound: 16006}\n\
             uid: 3000\nmark: 1337\n\
             excludeInboundPorts: [9090]\nexcludeOutboundPorts: [5432]\n\
             excludeOutboundCidrs: [169.254.169.254/32]\n\
             resources: {requests: {cpu: 50m, memory: 32Mi}, limits: {cpu: '1', memory: 128Mi}}\n\
             tls: {secretName: agent-tls}\n\
             env: [{name: FAULTLINE_CONTROLLER, value: 'http://c:7070'}]\n",
        )
        .unwrap();
        assert_eq!(c.admin, "[::1]:9000".parse().unwrap());
        assert_eq!(c.agent_ports(), [9000, 9001, 16001, 16006]);
        assert_eq!(c.mark.map(NonZeroU32::get), Some(1337));
        assert_eq!(
            c.exclude_outbound_cidrs[0].to_string(),
            "169.254.169.254/32"
        );
        assert_eq!(c.resources.memory_limit.as_ref().unwrap().as_str(), "128Mi");
        assert_eq!(c.tls.unwrap().mount_path, "/etc/faultline/tls");
        assert_eq!(c.env.len(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("image: ''\n", "inject.yaml: image: must name"),
            (
                "image: a\nimagePullPolicy: Sometimes\n",
                "imagePullPolicy: \"Sometimes\"",
            ),
            ("image: a\ncapture: all\n", "capture: \"all\" is not one of"),
            (
                "image: a\nports: {inbound: 8474}\n",
                "adminListen: 8474 is already the port of ports.inbound",
            ),
            (
                "image: a\nhealthListen: 0.0.0.0:15001\n",
                "healthListen: 15001 is already the port of ports.outbound",
            ),
            (
                "image: a\nhealthListen: 0.0.0.0:0\n",
                "healthListen: must be a port from 1 to 65535",
            ),
            (
                "image: a\nhealthListen: ':15020'\n",
                "healthListen: \":15020\" is not IP:PORT",
            ),
            (
                "image: a\nadminListen: 0.0.0.0:8474\n",
                "adminListen: 0.0.0.0:8474 is not a loopback address",
            ),
            ("image: a\nuid: 0\n", "uid: must not be 0"),
            (
                "image: a\nexcludeOutboundCidrs: [10/8]\n",
                "excludeOutboundCidrs[0]: \"10/8\"",
            ),
            (
                "image: a\nresources: {limits: {cpu: lots}}\n",
                "resources.limits.cpu: \"lots\"",
            ),
            (
                "image: a\ninitResources: {requests: {gpu: '1'}}\n",
                "initResources.requests.gpu: only cpu and memory",
            ),
            (
                "image: a\nresources: {requests: {memory: 1Gi}, limits: {memory: 64Mi}}\n",
                "resources.requests.memory: 1Gi is above the limit 64Mi",
            ),
            ("image: a\ntls: {secretName: Agent_TLS}\n", "tls.secretName"),
            (
                "image: a\nenv: [{name: FAULTLINE_AGENT_ID, value: x}]\n",
                "env[0].name: FAULTLINE_AGENT_ID is set by the webhook",
            ),
            (
                "image: a\nenv: [{value: x}]\n",
                "env[0].name: every entry needs a name",
            ),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let e = parse("image: a\nimagePolicy: Always\n").unwrap_err();
        assert!(matches!(e, InjectConfigError::Syntax { .. }), "{e:?}");
        assert!(e.to_string().contains("imagePolicy"), "{e}");
        let e = InjectConfig::load(Path::new("/nonexistent/inject.yaml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read /nonexistent/inject.yaml"),
            "{e}"
        );
    }
}
