//! The agent's configuration: flags, environment variables and an optional config file,
//! parsed once, here, into typed values. Nothing past this module sees a raw string setting.
//!
//! - [`args`]: the command line (clap), each flag with its environment variable.
//! - [`file`]: the config file (YAML, JSON, or Toxiproxy's JSON list of proxies).
//! - [`tls`]: TLS towards the controller (`--tls-ca`, `--tls-cert`, `--tls-key`), and the
//!   faultline URI SAN of a certificate (the agent's own name; the controller reads peers').

pub mod args;
pub mod file;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::admin::auth::AdminToken;
use crate::fault::Fault;
use crate::route::RouteSpec;
use crate::tcp::workers::Pinning;

pub use self::args::{Args, Command};
pub use self::tls::ClientTls;

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the agent needs to start, validated.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub admin: SocketAddr,
    /// The admin API's bearer token (`--admin-token-file`); required off loopback.
    pub admin_token: Option<AdminToken>,
    /// The probe listener (`--health`): `GET /ready`, `/version`, `/metrics` only, no token.
    pub health: Option<SocketAddr>,
    pub routes: Vec<RouteSpec>,
    /// Faults to install at start, by route name.
    pub faults: Vec<(String, Fault)>,
    pub log_format: LogFormat,
    pub drain_grace: Duration,
    pub connect_timeout: Duration,
    /// Tokio worker threads; `None` = one per core.
    pub threads: Option<usize>,
    /// Whether each worker thread is pinned to a CPU of its own.
    pub pin_workers: Pinning,
    /// The controller connection; `None` runs the agent standalone.
    pub controller: Option<ControllerConfig>,
}

impl AgentConfig {
    /// An agent for embedding (tests, `faultline demo`): the admin API on a loopback port the
    /// kernel picks, no token, no probe listener, no routes or faults, one data-plane thread (unpinned),
    /// 1 s drain grace, 2 s connect timeout, standalone. Set what differs with struct update
    /// syntax: `AgentConfig { routes, ..AgentConfig::embedded() }`.
    pub fn embedded() -> AgentConfig {
        AgentConfig {
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: None,
            health: None,
            routes: Vec::new(),
            faults: Vec::new(),
            log_format: LogFormat::Text,
            drain_grace: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            threads: Some(1),
            pin_workers: Pinning::Off,
            controller: None,
        }
    }
}

/// Transparent capture (`--capture-outbound`, `--capture-inbound`, `--mark`,
/// `--detect-timeout`). Kept beside [`AgentConfig`], which embedders build field by field:
/// [`crate::app::Agent::start`] runs without capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    pub outbound: Option<SocketAddr>,
    pub inbound: Option<SocketAddr>,
    /// `SO_MARK` on every upstream socket.
    pub mark: Option<u32>,
    /// How long an `auto` route's connection waits for client bytes before it is TCP.
    pub detect_timeout: Duration,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            outbound: None,
            inbound: None,
            mark: None,
            detect_timeout: Duration::from_millis(100),
        }
    }
}

impl CaptureConfig {
    pub fn from_args(args: &Args) -> Result<Self, ConfigError> {
        if let (Some(o), Some(i)) = (args.capture_outbound, args.capture_inbound)
            && o == i
        {
            return Err(ConfigError::new(
                "--capture-inbound",
                format!("{i} is also --capture-outbound; each direction needs its own port"),
            ));
        }
        let detect_timeout: Duration = args.detect_timeout.into();
        if detect_timeout.is_zero() {
            return Err(ConfigError::new(
                "--detect-timeout",
                "must be more than 0 (a client's first bytes need time to arrive)",
            ));
        }
        Ok(CaptureConfig {
            outbound: args.capture_outbound,
            inbound: args.capture_inbound,
            mark: args.mark,
            detect_timeout,
        })
    }
}

/// Where the controller is and who this agent is to it (`--controller`, `--agent-id`,
/// `--label`).
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// `http://HOST:PORT`, or `https://HOST:PORT` with [`ControllerConfig::tls`].
    pub url: http::Uri,
    pub agent_id: String,
    pub labels: BTreeMap<String, String>,
    /// TLS towards the controller; set exactly when the URL is `https://`.
    pub tls: Option<ClientTls>,
}

impl ControllerConfig {
    /// Validates a controller URL, an agent id and labels as the flags would.
    pub fn new(
        url: &str,
        agent_id: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let flat: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = args::parse_controller(url)?;
        check_scheme(&url, false)?;
        Ok(ControllerConfig {
            url,
            agent_id: args::check_agent_id(agent_id)?,
            labels: args::parse_labels(&flat)?,
            tls: None,
        })
    }

    /// Validates an `https://` controller URL with its TLS settings.
    pub fn with_tls(
        url: &str,
        agent_id: &str,
        labels: BTreeMap<String, String>,
        tls: ClientTls,
    ) -> Result<Self, ConfigError> {
        let flat: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = args::parse_controller(url)?;
        check_scheme(&url, true)?;
        Ok(ControllerConfig {
            url,
            agent_id: args::check_agent_id(agent_id)?,
            labels: args::parse_labels(&flat)?,
            tls: Some(tls),
        })
    }
}

/// `https://` goes with TLS settings, `http://` without.
fn check_scheme(url: &http::Uri, tls: bool) -> Result<(), ConfigError> {
    match (url.scheme_str() == Some("https"), tls) {
        (true, false) => Err(ConfigError::new(
            "--controller",
            format!(
                "{url} is https:// but no --tls-ca (FAULTLINE_TLS_CA) names the CA of the \
                 controller's certificate"
            ),
        )),
        (false, true) => Err(ConfigError::new(
            "--tls-ca",
            format!("TLS settings need an https:// --controller, not {url}"),
        )),
        _ => Ok(()),
    }
}

/// The default agent id: `HOSTNAME-PID` (the kernel's host name, else `$HOSTNAME`, else
/// `agent`).
pub fn default_agent_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "agent".to_owned());
    format!("{host}-{}", std::process::id())
}

/// A configuration error, naming the flag, variable or file field at fault.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ConfigError {
            setting: setting.into(),
            message: message.to_string(),
        }
    }
}

impl AgentConfig {
    /// Builds the configuration from parsed flags (and the config file they name).
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let mut routes = Vec::new();
        let mut faults = Vec::new();
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
            })?;
            let parsed = file::parse(&text, path)?;
            routes.extend(parsed.routes);
            faults.extend(parsed.faults);
        }
        routes.extend(args.routes()?);
        let mut seen = std::collections::HashSet::new();
        for r in &routes {
            if !seen.insert(r.name.clone()) {
                return Err(ConfigError::new(
                    "--route",
                    format!("route {:?} is defined twice", r.name),
                ));
            }
        }
        if args.threads == Some(0) {
            return Err(ConfigError::new("--threads", "must be at least 1"));
        }
        let labels = args::parse_labels(&args.label)?;
        let controller = match &args.controller {
            Some(url) => {
                let url = args::parse_controller(url)?;
                let tls = match &args.tls_ca {
                    Some(ca) => Some(ClientTls::load(
                        ca,
                        args.tls_cert.as_deref(),
                        args.tls_key.as_deref(),
                    )?),
                    None if args.tls_cert.is_some() || args.tls_key.is_some() => {
                        return Err(ConfigError::new(
                            "--tls-ca",
                            "needed with --tls-cert and --tls-key (the CA of the controller's certificate)",
                        ));
                    }
                    None => None,
                };
                check_scheme(&url, tls.is_some())?;
                Some(ControllerConfig {
                    url,
                    agent_id: match (&args.agent_id, tls.as_ref().and_then(ClientTls::agent_name)) {
                        (Some(id), _) => args::check_agent_id(id)?,
                        // Under the certificate's name, the only ids the controller takes from it.
                        (None, Some(name)) => format!("{name}/{}", default_agent_id()),
                        (None, None) => default_agent_id(),
                    },
                    labels,
                    tls,
                })
            }
            // Labels and an id without a controller are validated and unused (a chart may set
            // them whatever the controller setting).
            None => {
                if let Some(id) = &args.agent_id {
                    args::check_agent_id(id)?;
                }
                None
            }
        };
        let admin_token = match &args.admin_token_file {
            Some(path) => Some(
                AdminToken::load(path).map_err(|e| ConfigError::new("--admin-token-file", e))?,
            ),
            None => None,
        };
        if admin_token.is_none() && !args.admin.ip().is_loopback() {
            return Err(ConfigError::new(
                "--admin",
                format!(
                    "{} is not a loopback address: an admin API reachable from the network \
                     needs a token (--admin-token-file / FAULTLINE_ADMIN_TOKEN_FILE), or bind \
                     it to 127.0.0.1",
                    args.admin
                ),
            ));
        }
        Ok(AgentConfig {
            admin: args.admin,
            admin_token,
            health: args.health,
            routes,
            faults,
            log_format: args.log_format,
            drain_grace: args.drain_grace.into(),
            connect_timeout: args.connect_timeout.into(),
            threads: args.threads,
            pin_workers: args.pin_workers,
            controller,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(flags: &[&str]) -> Result<AgentConfig, ConfigError> {
        let argv = std::iter::once("faultline-agent").chain(flags.iter().copied());
        AgentConfig::from_args(Args::try_parse_from(argv).expect("flags parse"))
    }

    #[test]
    fn controller_flags_become_a_controller_config() {
        let c = parse(&[
            "--controller",
            "http://ctl.example:7070",
            "--label",
            "app=checkout",
            "--label",
            "example.com/zone=eu-1",
            "--label",
            "canary=",
            "--agent-id",
            "pod-7",
        ])
        .unwrap()
        .controller
        .expect("a controller");
        assert_eq!(c.url.to_string(), "http://ctl.example:7070/");
        assert_eq!(c.agent_id, "pod-7");
        let labels: Vec<(&str, &str)> = c
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("app", "checkout"),
                ("canary", ""),
                ("example.com/zone", "eu-1")
            ]
        );
    }

    #[test]
    fn workers_are_pinned_automatically_unless_told_otherwise() {
        assert_eq!(parse(&[]).unwrap().pin_workers, Pinning::Auto);
        assert_eq!(
            parse(&["--pin-workers", "off"]).unwrap().pin_workers,
            Pinning::Off
        );
        assert_eq!(
            parse(&["--pin-workers", "on"]).unwrap().pin_workers,
            Pinning::On
        );
        let argv = ["faultline-agent", "--pin-workers", "sometimes"];
        let err = Args::try_parse_from(argv).unwrap_err().to_string();
        assert!(
            err.contains("--pin-workers") && err.contains("sometimes"),
            "{err}"
        );
    }

    #[test]
    fn the_short_form_takes_a_response_timeout_on_http_routes_only() {
        let route = ["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:80"];
        let with = |extra: &[&'static str]| {
            let mut flags = route.to_vec();
            flags.extend_from_slice(extra);
            parse(&flags)
        };
        let c = with(&["--protocol", "http", "--response-timeout", "5s"]).unwrap();
        assert_eq!(
            c.routes[0].http.response_timeout,
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(
            with(&["--protocol", "http"]).unwrap().routes[0]
                .http
                .response_timeout,
            None
        );
        let e = with(&["--response-timeout", "5s"]).unwrap_err().to_string();
        assert_eq!(e, "--response-timeout: needs --protocol http or grpc");
        let e = with(&["--protocol", "grpc", "--response-timeout", "0ms"])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--response-timeout: must be more than 0"),
            "{e}"
        );
    }

    #[test]
    fn the_agent_id_defaults_to_host_and_pid() {
        let c = parse(&["--controller", "http://127.0.0.1:7070"])
            .unwrap()
            .controller
            .unwrap();
        assert!(
            c.agent_id.ends_with(&format!("-{}", std::process::id())),
            "{}",
            c.agent_id
        );
        assert!(parse(&[]).unwrap().controller.is_none());
    }

    #[test]
    fn capture_flags_and_captured_route_flags() {
        let argv = [
            "faultline-agent",
            "--capture-outbound",
            "0.0.0.0:15001",
            "--capture-inbound",
            "0.0.0.0:15006",
            "--mark",
            "0x1e7",
            "--detect-timeout",
            "250ms",
            "--route",
            "cache=capture:outbound:10.0.0.0/8+192.0.2.7:6379=original",
            "--route",
            "web=capture:inbound:*:8080=original=http",
        ];
        let args = Args::try_parse_from(argv).unwrap();
        let capture = CaptureConfig::from_args(&args).unwrap();
        assert_eq!(capture.mark, Some(0x1e7));
        assert_eq!(capture.detect_timeout, Duration::from_millis(250));
        assert_eq!(capture.outbound, Some("0.0.0.0:15001".parse().unwrap()));
        let routes = AgentConfig::from_args(args).unwrap().routes;
        assert_eq!(routes[0].protocol, crate::route::Protocol::Auto);
        assert_eq!(
            routes[0].capture.as_ref().unwrap().to_string(),
            "capture:outbound:10.0.0.0/8,192.0.2.7/32:6379"
        );
        assert_eq!(routes[1].protocol, crate::route::Protocol::Http);
        assert_eq!(
            CaptureConfig::default().detect_timeout,
            Duration::from_millis(100)
        );
    }

    #[test]
    fn bad_capture_settings_name_the_flag() {
        for (flags, setting) in [
            (&["--route", "c=capture:sideways=original"][..], "--route"),
            (&["--route", "c=127.0.0.1:0=original"][..], "--route"),
            (&["--route", "c=127.0.0.1:0=h:1=auto"][..], "--route"),
        ] {
            let e = parse(flags).expect_err(&format!("{flags:?} is refused"));
            assert_eq!(e.setting, setting, "{flags:?}: {e}");
        }
        let same = Args::try_parse_from([
            "a",
            "--capture-outbound",
            "0.0.0.0:1",
            "--capture-inbound",
            "0.0.0.0:1",
        ])
        .unwrap();
        assert_eq!(
            CaptureConfig::from_args(&same).unwrap_err().setting,
            "--capture-inbound"
        );
        for bad in ["0", "0x", "x1", "4294967296"] {
            assert!(args::parse_mark(bad).is_err(), "{bad}");
        }
        assert_eq!(args::parse_mark("4294967295"), Ok(u32::MAX));
        assert!(Args::try_parse_from(["a", "--mark", "0"]).is_err());
    }

    #[test]
    fn https_takes_the_ca_and_the_agents_certificate() {
        let dir = std::env::temp_dir().join(format!("faultline-agent-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = |name: &str, kind: &str| {
            let path = dir.join(name);
            std::fs::write(
                &path,
                format!("-----BEGIN {kind}-----\nAA==\n-----END {kind}-----\n"),
            )
            .unwrap();
            path.to_str().unwrap().to_owned()
        };
        let (ca, cert, key) = (
            pem("ca.pem", "CERTIFICATE"),
            pem("a.pem", "CERTIFICATE"),
            pem("a-key.pem", "PRIVATE KEY"),
        );
        let flags = ["--controller", "https://ctl:7070", "--tls-ca", &ca];
        let c = parse(&flags).unwrap().controller.unwrap();
        assert!(c.tls.is_some());
        let with_cert = [&flags[..], &["--tls-cert", &cert, "--tls-key", &key]].concat();
        assert!(parse(&with_cert).unwrap().controller.unwrap().tls.is_some());
        let e = parse(&[&flags[..], &["--tls-cert", &cert]].concat()).unwrap_err();
        assert_eq!(e.setting, "--tls-key", "{e}");
        let e = parse(&["--controller", "https://ctl:7070", "--tls-ca", &key]).unwrap_err();
        assert_eq!(e.setting, "--tls-ca", "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn with_an_agent_certificate_the_default_id_is_under_its_name() {
        let dir = std::env::temp_dir().join(format!("faultline-agent-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://faultline/agent/shop".try_into().unwrap(),
        )];
        let cert = params.self_signed(&key).unwrap();
        let file = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let (ca, cert, key) = (
            file("ca.pem", cert.pem()),
            file("a.pem", cert.pem()),
            file("a-key.pem", key.serialize_pem()),
        );
        let flags = [
            "--controller",
            "https://ctl:7070",
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ];
        let id = parse(&flags).unwrap().controller.unwrap().agent_id;
        let pid = format!("-{}", std::process::id());
        assert!(id.starts_with("shop/") && id.ends_with(&pid), "{id}");
        let given = [&flags[..], &["--agent-id", "shop/web-1"]].concat();
        assert_eq!(
            parse(&given).unwrap().controller.unwrap().agent_id,
            "shop/web-1"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_controller_settings_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--controller", "ctl:7070"], "--controller"),
            (&["--controller", "https://ctl:7070"], "--controller"),
            (&["--controller", "http://"], "--controller"),
            (&["--controller", "http://c:1", "--label", "app"], "--label"),
            (&["--controller", "http://c:1", "--label", "=x"], "--label"),
            (
                &["--controller", "http://c:1", "--label", "a=-x"],
                "--label",
            ),
            (
                &["--controller", "http://c:1", "--label", "a b=x"],
                "--label",
            ),
            (
                &["--controller", "http://c:1", "--label", "/a=x"],
                "--label",
            ),
            (
                &[
                    "--controller",
                    "http://c:1",
                    "--label",
                    "a=1",
                    "--label",
                    "a=2",
                ],
                "--label",
            ),
            (
                &["--controller", "http://c:1", "--agent-id", "a b"],
                "--agent-id",
            ),
            (&["--agent-id", ""], "--agent-id"),
            (
                &[
                    "--controller",
                    "http://c:1",
                    "--tls-ca",
                    "/nonexistent/ca.pem",
                ],
                "--tls-ca",
            ),
            (
                &[
                    "--controller",
                    "https://c:1",
                    "--tls-cert",
                    "/nonexistent/a.pem",
                ],
                "--tls-ca",
            ),
            (&["--admin", "0.0.0.0:8474"], "--admin"),
            (&["--admin", "[::]:8474"], "--admin"),
            (
                &["--admin-token-file", "/nonexistent/token"],
                "--admin-token-file",
            ),
        ];
        for (flags, setting) in cases {
            let e = parse(flags).expect_err(&format!("{flags:?} is refused"));
            assert_eq!(e.setting, *setting, "{flags:?}: {e}");
        }
    }
}
