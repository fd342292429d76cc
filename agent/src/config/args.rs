//! Command-line flags. Every flag has an environment variable, so a container (or a
//! Kubernetes Downward API) can configure the agent without a command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::{ConfigError, LogFormat};
use crate::route::{
    CaptureMatch, HttpOptions, Protocol, RouteSpec, Upstream, parse_response_timeout,
};
use crate::tcp::workers::Pinning;

/// faultline-agent: a fault-injecting proxy that runs beside a service.
///
/// Give one route with --listen and --upstream, several with --route, or a --config file;
/// routes and faults can also be created at run time through the admin API, which speaks
/// Toxiproxy's HTTP API (so Toxiproxy's clients and CLI work against it).
///
/// Transparent capture: --capture-outbound / --capture-inbound open the listeners iptables
/// redirects to (see `faultline-agent init-iptables --help`); captured routes pick connections
/// by original destination.
#[derive(Debug, Parser)]
#[command(name = "faultline-agent", version, about, long_about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Listen address of the single route (short form; needs --upstream).
    #[arg(
        long,
        env = "FAULTLINE_LISTEN",
        requires = "upstream",
        value_name = "ADDR"
    )]
    pub listen: Option<String>,

    /// Upstream address of the single route (short form; needs --listen).
    #[arg(
        long,
        env = "FAULTLINE_UPSTREAM",
        requires = "listen",
        value_name = "ADDR"
    )]
    pub upstream: Option<String>,

    /// Name of the single route given by --listen/--upstream.
    #[arg(
        long,
        env = "FAULTLINE_NAME",
        default_value = "default",
        value_name = "NAME"
    )]
    pub name: String,

    /// Protocol of the single route: tcp, http (HTTP/1.1 and h2c) or grpc.
    #[arg(
        long,
        env = "FAULTLINE_PROTOCOL",
        default_value = "tcp",
        value_name = "PROTOCOL"
    )]
    pub protocol: String,

    /// Honour x-faultline-abort / -delay / -grpc-status request headers on the single route
    /// (http and grpc only).
    #[arg(long, env = "FAULTLINE_HEADER_FAULTS")]
    pub header_faults: bool,

    /// How long the upstream of the single route has to start answering (e.g. 30s), after
    /// which the client gets 504, or DEADLINE_EXCEEDED for gRPC (http and grpc only; default:
    /// no limit).
    #[arg(long, env = "FAULTLINE_RESPONSE_TIMEOUT", value_name = "DURATION")]
    pub response_timeout: Option<String>,

    /// A route, as NAME=LISTEN=UPSTREAM[=PROTOCOL] (repeat the flag, or separate with commas in the
    /// environment variable). A captured route gives `capture:DIRECTION[:DESTINATIONS:PORTS]` as
    /// LISTEN and usually `original` as UPSTREAM, e.g.
    /// `cache=capture:outbound:10.0.0.0/8+192.0.2.7:6379=original` (list items joined by `+`,
    /// `*` for any; the protocol defaults to auto).
    #[arg(
        long = "route",
        env = "FAULTLINE_ROUTES",
        value_delimiter = ',',
        value_name = "NAME=LISTEN=UPSTREAM[=PROTOCOL]"
    )]
    pub route: Vec<String>,

    /// A config file (YAML or JSON) with routes and faults; Toxiproxy's JSON config works too.
    #[arg(long, env = "FAULTLINE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address of the admin HTTP API (Toxiproxy-compatible).
    #[arg(
        long,
        env = "FAULTLINE_ADMIN",
        default_value = "127.0.0.1:8474",
        value_name = "ADDR"
    )]
    pub admin: SocketAddr,

    /// Also serve the read-only probes (GET /ready, /version, /metrics; no token, nothing
    /// else) on this address: in a pod, the pod's address for the kubelet and Prometheus, while
    /// --admin stays on loopback.
    #[arg(long, env = "FAULTLINE_HEALTH", value_name = "ADDR")]
    pub health: Option<SocketAddr>,

    /// Log format.
    #[arg(long, env = "FAULTLINE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// How long open connections may drain after SIGTERM/SIGINT before the agent exits.
    #[arg(
        long,
        env = "FAULTLINE_DRAIN_GRACE",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub drain_grace: humantime::Duration,

    /// How long to wait for an upstream connection before giving up on a client.
    #[arg(
        long,
        env = "FAULTLINE_CONNECT_TIMEOUT",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub connect_timeout: humantime::Duration,

    /// Worker threads for the data plane (default: one per core).
    #[arg(long, env = "FAULTLINE_THREADS", value_name = "N")]
    pub threads: Option<usize>,

    /// Pin each worker thread to a CPU of its own: `auto` pins when there are as many workers
    /// as CPUs the agent may run on, `on` always, `off` never.
    #[arg(
        long,
        env = "FAULTLINE_PIN_WORKERS",
        value_enum,
        default_value = "auto",
        value_name = "WHEN"
    )]
    pub pin_workers: Pinning,

    /// The controller to connect to (`http://HOST:PORT`, or `https://HOST:PORT` with
    /// --tls-ca). Without it the agent runs standalone, driven only by its admin API and config.
    #[arg(long, env = "FAULTLINE_CONTROLLER", value_name = "URL")]
    pub controller: Option<String>,

    /// A label the controller selects this agent by, as KEY=VALUE in Kubernetes label syntax
    /// (repeat the flag, or separate with commas in the environment variable, which a
    /// Kubernetes Downward API can fill).
    #[arg(
        long = "label",
        env = "FAULTLINE_LABELS",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub label: Vec<String>,

    /// The agent's id at the controller, unique among its agents and best stable across
    /// restarts (a pod name). With an agent certificate named NAME the controller takes only
    /// NAME or NAME/...; default: HOSTNAME-PID, or NAME/HOSTNAME-PID with such a certificate.
    #[arg(long, env = "FAULTLINE_AGENT_ID", value_name = "ID")]
    pub agent_id: Option<String>,

    /// Listen for connections iptables redirected from the pod's outbound calls (e.g.
    /// 0.0.0.0:15001, the port `init-iptables --outbound-port` redirects to).
    #[arg(long, env = "FAULTLINE_CAPTURE_OUTBOUND", value_name = "ADDR")]
    pub capture_outbound: Option<SocketAddr>,

    /// Listen for connections iptables redirected from calls into the pod (e.g. 0.0.0.0:15006,
    /// the port `init-iptables --inbound-port` redirects to).
    #[arg(long, env = "FAULTLINE_CAPTURE_INBOUND", value_name = "ADDR")]
    pub capture_inbound: Option<SocketAddr>,

    /// SO_MARK for every upstream socket the agent opens (decimal or 0x hex; needs
    /// CAP_NET_ADMIN), so iptables rules written with `init-iptables --mark` never capture the
    /// agent's own connections.
    #[arg(long, env = "FAULTLINE_MARK", value_name = "N", value_parser = parse_mark)]
    pub mark: Option<u32>,

    /// How long a captured connection of an `auto` route may wait for the client's first
    /// bytes before it is treated as TCP (server-first protocols such as MySQL or SMTP send
    /// nothing until the server speaks; they pay this once per connection).
    #[arg(
        long,
        env = "FAULTLINE_DETECT_TIMEOUT",
        default_value = "100ms",
        value_name = "DURATION"
    )]
    pub detect_timeout: humantime::Duration,

    /// The CA (PEM) that signed the controller's certificate; needs an https:// --controller.
    #[arg(long, env = "FAULTLINE_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// The agent's client certificate (PEM, role agent: `faultline certs issue --role agent`),
    /// presented to the controller; with --tls-key.
    #[arg(long, env = "FAULTLINE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "FAULTLINE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// A file holding the admin API's bearer token: requests then need
    /// `Authorization: Bearer TOKEN` (401 otherwise), except GET /ready and GET /metrics.
    /// Required when --admin is not a loopback address.
    #[arg(long, env = "FAULTLINE_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
}

/// Subcommands; without one the agent runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the iptables rules that redirect the pod's traffic to the capture listeners (run
    /// once per pod, as an init container), or remove them with --cleanup.
    InitIptables(crate::capture::iptables::IptablesArgs),
}

/// A socket mark: decimal or `0x` hexadecimal.
pub fn parse_mark(s: &str) -> Result<u32, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse::<u32>(),
    };
    match parsed {
        Ok(0) => Err("0 is no mark (sockets are unmarked by default)".into()),
        Ok(m) => Ok(m),
        Err(_) => Err(format!("{s:?} is not a 32-bit number (decimal or 0x hex)")),
    }
}

impl Args {
    /// The routes given on the command line (short form first).
    pub fn routes(&self) -> Result<Vec<RouteSpec>, ConfigError> {
        let mut out = Vec::new();
        let protocol: Protocol = self
            .protocol
            .parse()
            .map_err(|e| ConfigError::new("--protocol", e))?;
        if self.header_faults && !protocol.is_http() {
            return Err(ConfigError::new(
                "--header-faults",
                "needs --protocol http or grpc",
            ));
        }
        let response_timeout = match &self.response_timeout {
            None => None,
            Some(_) if !protocol.is_http() => {
                return Err(ConfigError::new(
                    "--response-timeout",
                    "needs --protocol http or grpc",
                ));
            }
            Some(t) => Some(
                parse_response_timeout(t).map_err(|e| ConfigError::new("--response-timeout", e))?,
            ),
        };
        if let (Some(listen), Some(upstream)) = (&self.listen, &self.upstream) {
            out.push(RouteSpec {
                name: self.name.clone(),
                listen: check_listen("--listen", listen)?,
                upstream: parse_upstream("--upstream", upstream)?,
                enabled: true,
                protocol,
                http: HttpOptions {
                    header_faults: self.header_faults,
                    response_timeout,
                    ..HttpOptions::default()
                },
                capture: None,
            });
        }
        for r in &self.route {
            let parts: Vec<&str> = r.splitn(4, '=').collect();
            let (name, listen, upstream, protocol) = match parts.as_slice() {
                [n, l, u] => (*n, *l, *u, Protocol::Tcp),
                [n, l, u, p] => (
                    *n,
                    *l,
                    *u,
                    p.parse().map_err(|e| ConfigError::new("--route", e))?,
                ),
                _ => {
                    return Err(ConfigError::new(
                        "--route",
                        format!("{r:?} is not NAME=LISTEN=UPSTREAM[=PROTOCOL]"),
                    ));
                }
            };
            if name.is_empty() {
                return Err(ConfigError::new(
                    "--route",
                    format!("{r:?} has an empty name"),
                ));
            }
            let upstream = parse_upstream("--route", upstream)?;
            let (listen, capture) = if listen.starts_with("capture:") {
                let m: CaptureMatch = listen
                    .parse()
                    .map_err(|e| ConfigError::new("--route", format!("{r:?}: {e}")))?;
                (String::new(), Some(m))
            } else {
                (check_listen("--route", listen)?, None)
            };
            let protocol = match (parts.len(), &capture) {
                (3, Some(_)) => Protocol::Auto,
                _ => protocol,
            };
            if capture.is_none() && (upstream == Upstream::Original || protocol == Protocol::Auto) {
                return Err(ConfigError::new(
                    "--route",
                    format!(
                        "{r:?}: upstream original and protocol auto are only for captured routes (LISTEN capture:...)"
                    ),
                ));
            }
            out.push(RouteSpec {
                name: name.to_string(),
                listen,
                upstream,
                enabled: true,
                protocol,
                http: HttpOptions::default(),
                capture,
            });
        }
        Ok(out)
    }
}

/// The `--controller` URL: `http://HOST:PORT` (the agent speaks cleartext HTTP/2).
pub(crate) fn parse_controller(s: &str) -> Result<http::Uri, ConfigError> {
    const FLAG: &str = "--controller";
    let uri: http::Uri = s
        .parse()
        .map_err(|e| ConfigError::new(FLAG, format!("{s:?} is not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(ConfigError::new(
            FLAG,
            format!("{s:?} must start with http:// or https://"),
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(ConfigError::new(FLAG, format!("{s:?} has no host")));
    }
    Ok(uri)
}

/// `--label` values: KEY=VALUE, Kubernetes syntax (`[prefix/]name`, name and value at most 63
/// characters of `[A-Za-z0-9._-]` starting and ending alphanumeric; the value may be empty).
pub(crate) fn parse_labels(
    labels: &[String],
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    const FLAG: &str = "--label";
    let mut out = std::collections::BTreeMap::new();
    for l in labels {
        let Some((key, value)) = l.split_once('=') else {
            return Err(ConfigError::new(FLAG, format!("{l:?} is not KEY=VALUE")));
        };
        let (prefix, name) = match key.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key),
        };
        if let Some(p) = prefix {
            let ok =
                !p.is_empty() && p.len() <= 253 && p.split('.').all(|part| label_word(part, false));
            if !ok {
                return Err(ConfigError::new(
                    FLAG,
                    format!("{l:?}: the key prefix {p:?} is not a DNS subdomain"),
                ));
            }
        }
        if !label_word(name, false) {
            return Err(ConfigError::new(
                FLAG,
                format!(
                    "{l:?}: the key name {name:?} must be 1..63 characters of [A-Za-z0-9._-], \
                     starting and ending alphanumeric"
                ),
            ));
        }
        if !label_word(value, true) {
            return Err(ConfigError::new(
                FLAG,
                format!(
                    "{l:?}: the value {value:?} must be at most 63 characters of [A-Za-z0-9._-], \
                     starting and ending alphanumeric"
                ),
            ));
        }
        if out.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(ConfigError::new(
                FLAG,
                format!("the key {key:?} is given twice"),
            ));
        }
    }
    Ok(out)
}

fn label_word(s: &str, may_be_empty: bool) -> bool {
    if s.is_empty() {
        return may_be_empty;
    }
    let b = s.as_bytes();
    s.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `--agent-id`: non-empty, printable, at most 253 bytes.
pub(crate) fn check_agent_id(s: &str) -> Result<String, ConfigError> {
    if s.is_empty() || s.len() > 253 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ConfigError::new(
            "--agent-id",
            format!("{s:?} must be 1..253 bytes with no spaces or control characters"),
        ));
    }
    Ok(s.to_owned())
}

fn parse_upstream(flag: &str, s: &str) -> Result<Upstream, ConfigError> {
    s.parse().map_err(|e| ConfigError::new(flag, e))
}

/// Listen addresses must be IP:PORT or HOST:PORT (port 0 allowed).
pub(crate) fn check_listen(flag: &str, s: &str) -> Result<String, ConfigError> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_string()),
        _ => Err(ConfigError::new(flag, format!("{s:?} is not HOST:PORT"))),
    }
}
