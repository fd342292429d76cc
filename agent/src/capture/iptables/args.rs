//! The flags of `init-iptables`, checked into [`Options`] (errors name the flag).

use ipnet::IpNet;

use crate::config::ConfigError;
use crate::config::args::parse_mark;
use crate::route::capture::parse_destination;

/// Writes the nat rules that redirect this network namespace's TCP traffic to the agent's
/// capture listeners (run as the pod's init container, with CAP_NET_ADMIN). Idempotent: the
/// FAULTLINE_OUTPUT and FAULTLINE_INBOUND chains are rewritten on every run and jumped to once.
/// Loopback destinations, and the agent's own connections (by --uid or --mark), are never
/// captured.
#[derive(Debug, clap::Args)]
pub struct IptablesArgs {
    /// The port outbound connections are redirected to (the agent's --capture-outbound port).
    #[arg(
        long,
        env = "FAULTLINE_IPTABLES_OUTBOUND_PORT",
        default_value_t = 15001,
        value_name = "PORT"
    )]
    pub outbound_port: u16,

    /// The port inbound connections are redirected to (the agent's --capture-inbound port).
    #[arg(
        long,
        env = "FAULTLINE_IPTABLES_INBOUND_PORT",
        default_value_t = 15006,
        value_name = "PORT"
    )]
    pub inbound_port: u16,

    /// Destination ports of inbound connections to capture, comma-separated; `*` for all.
    #[arg(
        long,
        env = "FAULTLINE_IPTABLES_INBOUND_PORTS",
        value_delimiter = ',',
        default_value = "*",
        value_name = "PORTS"
    )]
    pub inbound_ports: Vec<String>,

    /// Inbound destination ports never captured (e.g. health checks, the admin port).
    #[arg(
        long,
        env = "FAULTLINE_IPTABLES_EXCLUDE_INBOUND_PORTS",
        value_delimiter = ',',
        value_name = "PORTS"
    )]
    pub exclude_inbound_ports: Vec<u16>,

    /// Outbound destination ports never captured.
    #[arg(
        long,
        env = "FAULTLINE_IPTABLES_EXCLUDE_OUTBOUND_PORTS",
        value_delimiter = ',',
        value_name = "PORTS"
    )]
    pub exclude_outbound_ports: Vec<u16>,

    /// Outbound destination networks never captured (CIDRs or addresses).
    #[arg(
        long,
        env = "FAULTLINE_IPTABLES_EXCLUDE_OUTBOUND_CIDRS",
        value_delimiter = ',',
        value_name = "CIDRS"
    )]
    pub exclude_outbound_cidrs: Vec<String>,

    /// A UID whose outbound connections are never captured: the agent's (repeatable).
    #[arg(
        long = "uid",
        env = "FAULTLINE_IPTABLES_UIDS",
        value_delimiter = ',',
        value_name = "UID"
    )]
    pub uids: Vec<u32>,

    /// A socket mark whose connections are never captured: the agent's --mark (decimal or 0x
    /// hex).
    #[arg(long, env = "FAULTLINE_IPTABLES_MARK", value_name = "N", value_parser = parse_mark)]
    pub mark: Option<u32>,

    /// Do not capture inbound connections (removes inbound rules left by an earlier run).
    #[arg(long, env = "FAULTLINE_IPTABLES_NO_INBOUND")]
    pub no_inbound: bool,

    /// Do not capture outbound connections (removes outbound rules left by an earlier run).
    #[arg(long, env = "FAULTLINE_IPTABLES_NO_OUTBOUND")]
    pub no_outbound: bool,

    /// Write the same rules with ip6tables too.
    #[arg(long, env = "FAULTLINE_IPTABLES_IPV6")]
    pub ipv6: bool,

    /// Remove every rule and chain this command writes (give --ipv6 to include ip6tables).
    #[arg(long, env = "FAULTLINE_IPTABLES_CLEANUP")]
    pub cleanup: bool,

    /// Print the commands as a shell script instead of running them.
    #[arg(long, env = "FAULTLINE_IPTABLES_DRY_RUN")]
    pub dry_run: bool,
}

/// Inbound ports to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboundPorts {
    All,
    Only(Vec<u16>),
}

/// `init-iptables`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub inbound_ports: InboundPorts,
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub exclude_outbound_cidrs: Vec<IpNet>,
    pub uids: Vec<u32>,
    pub mark: Option<u32>,
    pub inbound: bool,
    pub outbound: bool,
    pub ipv6: bool,
    pub cleanup: bool,
    pub dry_run: bool,
}

impl IptablesArgs {
    pub fn options(&self) -> Result<Options, ConfigError> {
        let inbound_ports = match self.inbound_ports.as_slice() {
            [] => InboundPorts::All,
            [all] if all == "*" => InboundPorts::All,
            ports => InboundPorts::Only(
                ports
                    .iter()
                    .map(|p| match p.parse::<u16>() {
                        Ok(n) if n > 0 => Ok(n),
                        _ => Err(ConfigError::new(
                            "--inbound-ports",
                            format!("{p:?} is not a port (1-65535); use * alone for all"),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let exclude_outbound_cidrs = self
            .exclude_outbound_cidrs
            .iter()
            .map(|c| {
                parse_destination(c).map_err(|e| ConfigError::new("--exclude-outbound-cidrs", e))
            })
            .collect::<Result<_, _>>()?;
        for (flag, port) in [
            ("--outbound-port", self.outbound_port),
            ("--inbound-port", self.inbound_port),
        ] {
            if port == 0 {
                return Err(ConfigError::new(flag, "port 0 cannot be redirected to"));
            }
        }
        let options = Options {
            outbound_port: self.outbound_port,
            inbound_port: self.inbound_port,
            inbound_ports,
            exclude_inbound_ports: self.exclude_inbound_ports.clone(),
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            exclude_outbound_cidrs,
            uids: self.uids.clone(),
            mark: self.mark,
            inbound: !self.no_inbound,
            outbound: !self.no_outbound,
            ipv6: self.ipv6,
            cleanup: self.cleanup,
            dry_run: self.dry_run,
        };
        if options.outbound && !options.cleanup && options.uids.is_empty() && options.mark.is_none()
        {
            // Without an exemption the agent's own upstream connections would be redirected
            // back to it, forever.
            return Err(ConfigError::new(
                "--uid",
                "outbound capture needs --uid (the agent's UID) or --mark (the agent's --mark) \
                 so the agent never captures its own connections",
            ));
        }
        Ok(options)
    }
}
