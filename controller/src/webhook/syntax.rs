//! The value syntaxes annotations and the inject config share: the capture mode, port lists and
//! CIDR lists. Each parser answers a message that says what is wrong with the value; the caller
//! adds which annotation or field it came from.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Which of the pod's traffic the init container redirects through the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capture {
    /// Connections the pod opens go through the agent.
    Outbound,
    /// Connections to the pod's ports go through the agent.
    Inbound,
    Both,
    /// Nothing is redirected: the agent runs beside the app and serves only the routes it is
    /// given (no init container, no NET_ADMIN).
    None,
}

impl Capture {
    pub fn outbound(self) -> bool {
        matches!(self, Capture::Outbound | Capture::Both)
    }

    pub fn inbound(self) -> bool {
        matches!(self, Capture::Inbound | Capture::Both)
    }
}

impl fmt::Display for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capture::Outbound => "outbound",
            Capture::Inbound => "inbound",
            Capture::Both => "both",
            Capture::None => "none",
        })
    }
}

impl FromStr for Capture {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "outbound" => Ok(Capture::Outbound),
            "inbound" => Ok(Capture::Inbound),
            "both" => Ok(Capture::Both),
            "none" => Ok(Capture::None),
            other => Err(format!(
                "{other:?} is not one of outbound, inbound, both, none"
            )),
        }
    }
}

/// The inbound ports to capture: all (`*`) or the ones listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboundPorts {
    All,
    Only(Vec<u16>),
}

impl fmt::Display for InboundPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InboundPorts::All => f.write_str("*"),
            InboundPorts::Only(ports) => f.write_str(&join(ports)),
        }
    }
}

/// `*`, or a port list.
pub fn inbound_ports(s: &str) -> Result<InboundPorts, String> {
    if s.trim() == "*" {
        return Ok(InboundPorts::All);
    }
    ports(s).map(InboundPorts::Only)
}

/// `P,P,...`: ports 1..=65535, spaces around commas allowed, at least one.
pub fn ports(s: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim) {
        let port = item
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{item:?} is not a port (1 to 65535)"))?;
        if !out.contains(&port) {
            out.push(port);
        }
    }
    Ok(out)
}

/// An IPv4 or IPv6 network, `ADDR/PREFIX` (a bare address is a single host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not a CIDR such as 10.0.0.0/8 or fd00::/8");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `CIDR,CIDR,...`, at least one.
pub fn cidrs(s: &str) -> Result<Vec<Cidr>, String> {
    let mut out = Vec::new();
    for item in s.split(',') {
        let cidr: Cidr = item.parse()?;
        if !out.contains(&cidr) {
            out.push(cidr);
        }
    }
    Ok(out)
}

/// Items joined with commas, the way the init container takes lists.
pub fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_take_spaces_and_drop_repeats() {
        assert_eq!(ports("80, 443,80").unwrap(), vec![80, 443]);
        assert_eq!(inbound_ports(" * ").unwrap(), InboundPorts::All);
        assert_eq!(
            inbound_ports("8080").unwrap(),
            InboundPorts::Only(vec![8080])
        );
        for bad in ["", "0", "65536", "http", "80,,81", "80;81"] {
            assert!(ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_are_written_with_their_prefix() {
        let list = cidrs("10.0.0.0/8, 169.254.169.254,fd00::/8").unwrap();
        assert_eq!(join(&list), "10.0.0.0/8,169.254.169.254/32,fd00::/8");
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0/8", "", "10.0.0.0/"] {
            assert!(cidrs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capture_modes() {
        assert_eq!("both".parse::<Capture>().unwrap(), Capture::Both);
        assert!(Capture::Both.inbound() && Capture::Both.outbound());
        assert!(!Capture::None.inbound() && !Capture::None.outbound());
        let e = "all".parse::<Capture>().unwrap_err();
        assert!(e.contains("outbound, inbound, both, none"), "{e}");
    }
}
