//! Command-line flags. Every flag has an environment variable, so a container (or a
//! Kubernetes Downward API) can configure the agent without a command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::{ConfigError, LogFormat};
use crate::route::{HttpOptions, Protocol, RouteSpec, Upstream};

/// faultline-agent: a fault-injecting proxy that runs beside a service.
///
/// Give one route with --listen and --upstream, several with --route, or a --config file;
/// routes and faults can also be created at run time through the admin API, which speaks
/// Toxiproxy's HTTP API (so Toxiproxy's clients and CLI work against it).
#[derive(Debug, Parser)]
#[command(name = "faultline-agent", version, about, long_about)]
pub struct Args {
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

    /// A route, as NAME=LISTEN=UPSTREAM[=PROTOCOL] (repeat the flag, or separate with commas in the
    /// environment variable).
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
        if let (Some(listen), Some(upstream)) = (&self.listen, &self.upstream) {
            out.push(RouteSpec {
                name: self.name.clone(),
                listen: check_listen("--listen", listen)?,
                upstream: parse_upstream("--upstream", upstream)?,
                enabled: true,
                protocol,
                http: HttpOptions {
                    header_faults: self.header_faults,
                    ..HttpOptions::default()
                },
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
            out.push(RouteSpec {
                name: name.to_string(),
                listen: check_listen("--route", listen)?,
                upstream: parse_upstream("--route", upstream)?,
                enabled: true,
                protocol,
                http: HttpOptions::default(),
            });
        }
        Ok(out)
    }
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
