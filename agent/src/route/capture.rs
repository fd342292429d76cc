//! Captured routes: routes without a listener of their own, chosen for connections that
//! iptables redirected to one of the agent's capture listeners, by the connection's original
//! destination.
//!
//! The route table publishes the captured routes, in creation order, as one immutable
//! [`CapturedRoutes`] list on a `watch` channel; the capture listeners read it once per
//! connection (lock-free) and take the first route whose [`CaptureMatch`] fits.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;
use tokio::sync::watch;

use super::{HttpOptions, Protocol, RouteFeed, RouteSnapshot, RouteState, Upstream};
use crate::metrics::RouteMetrics;

/// Which capture listener a connection came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CaptureDirection {
    /// The pod's calls to its dependencies (iptables `OUTPUT`).
    Outbound,
    /// Calls into the pod (iptables `PREROUTING`).
    Inbound,
}

impl CaptureDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureDirection::Outbound => "outbound",
            CaptureDirection::Inbound => "inbound",
        }
    }
}

impl FromStr for CaptureDirection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "outbound" => Ok(CaptureDirection::Outbound),
            "inbound" => Ok(CaptureDirection::Inbound),
            other => Err(format!(
                "{other:?} is not a capture direction (outbound, inbound)"
            )),
        }
    }
}

impl fmt::Display for CaptureDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which captured connections a route takes: its direction, and original destinations by
/// network and port (an empty list matches any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureMatch {
    pub direction: CaptureDirection,
    pub destination: DestinationMatch,
}

impl CaptureMatch {
    /// A match for every connection of `direction`.
    pub fn any(direction: CaptureDirection) -> Self {
        CaptureMatch {
            direction,
            destination: DestinationMatch::default(),
        }
    }

    pub fn matches(&self, direction: CaptureDirection, dst: SocketAddr) -> bool {
        self.direction == direction && self.destination.matches(dst)
    }
}

/// Original destinations by network and port (an empty list matches any): the part of a
/// captured route's [`CaptureMatch`] that HTTP rules can also put on a request (`match.
/// destination`), to fault one dependency among the many one catch-all route captures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationMatch {
    pub destinations: Vec<IpNet>,
    pub ports: Vec<u16>,
}

impl DestinationMatch {
    /// Whether `dst`, a connection's original destination, is one of these. No allocation.
    pub fn matches(&self, dst: SocketAddr) -> bool {
        let ip = canonical(dst.ip());
        (self.ports.is_empty() || self.ports.contains(&dst.port()))
            && (self.destinations.is_empty() || self.destinations.iter().any(|n| n.contains(&ip)))
    }
}

impl fmt::Display for CaptureMatch {
    /// `capture:outbound`, then `:` and the destinations and ports when restricted, e.g.
    /// `capture:outbound:10.0.0.0/8,192.0.2.7/32:6379`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "capture:{}", self.direction)?;
        let DestinationMatch {
            destinations,
            ports,
        } = &self.destination;
        if destinations.is_empty() && ports.is_empty() {
            return Ok(());
        }
        let join = |v: Vec<String>| {
            if v.is_empty() {
                "*".to_owned()
            } else {
                v.join(",")
            }
        };
        write!(
            f,
            ":{}:{}",
            join(destinations.iter().map(ToString::to_string).collect()),
            join(ports.iter().map(ToString::to_string).collect())
        )
    }
}

impl FromStr for CaptureMatch {
    type Err = String;

    /// The form [`Display`](fmt::Display) writes: `capture:DIRECTION[:DESTINATIONS:PORTS]`,
    /// list items separated by `,` or `+` (the `--route` flag's form, whose environment
    /// variable splits on commas), `*` for any.
    fn from_str(s: &str) -> Result<Self, String> {
        let form = || format!("{s:?} is not capture:DIRECTION[:DESTINATIONS:PORTS]");
        let rest = s.strip_prefix("capture:").ok_or_else(form)?;
        // Destinations may be IPv6 (with colons): the direction ends at the first colon, the
        // ports start after the last.
        let (direction, lists) = match rest.split_once(':') {
            None => (rest, None),
            Some((d, l)) => (d, Some(l.rsplit_once(':').ok_or_else(form)?)),
        };
        let direction: CaptureDirection = direction.parse()?;
        let (destinations, ports) = lists.unwrap_or(("*", "*"));
        let list = |v: &str| -> Vec<String> {
            if v == "*" || v.is_empty() {
                Vec::new()
            } else {
                v.split([',', '+']).map(str::to_owned).collect()
            }
        };
        let destinations = list(destinations)
            .iter()
            .map(|d| parse_destination(d))
            .collect::<Result<Vec<_>, _>>()?;
        let ports = list(ports)
            .iter()
            .map(|p| match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{p:?} is not a port (1-65535)")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CaptureMatch {
            direction,
            destination: DestinationMatch {
                destinations,
                ports,
            },
        })
    }
}

/// A destination network: a CIDR (host bits dropped) or a bare address (one host).
pub fn parse_destination(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or CIDR"))
}

/// IPv4-mapped IPv6 addresses (from a dual-stack listener) compare as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

/// One captured route as the capture listeners see it.
#[derive(Clone, Debug)]
pub struct CapturedRoute {
    pub name: Arc<str>,
    pub capture: CaptureMatch,
    pub feed: RouteFeed,
}

/// Every captured route, in creation order.
#[derive(Clone, Debug, Default)]
pub struct CapturedRoutes {
    pub routes: Vec<CapturedRoute>,
}

impl CapturedRoutes {
    /// The first route (in creation order) that takes a connection to `dst`.
    pub fn find(&self, direction: CaptureDirection, dst: SocketAddr) -> Option<&CapturedRoute> {
        self.routes
            .iter()
            .find(|r| r.capture.matches(direction, dst))
    }
}

/// Captured connections that matched no route are passed through untouched: to their
/// original destination, with no fault, counted. Each direction has a fixed snapshot (never
/// changed, its sender kept here so connections never see the "route" go away) whose metrics
/// `/metrics` shows as the pseudo-route `passthrough:outbound` or `passthrough:inbound` once
/// that direction's capture listener is open.
#[derive(Debug)]
pub struct Passthrough {
    outbound: (watch::Sender<Arc<RouteSnapshot>>, AtomicBool),
    inbound: (watch::Sender<Arc<RouteSnapshot>>, AtomicBool),
}

impl Default for Passthrough {
    fn default() -> Self {
        let side = |direction: CaptureDirection| {
            let snap = RouteSnapshot {
                name: Passthrough::name(direction).into(),
                upstream: Upstream::Original,
                protocol: Protocol::Tcp,
                http: HttpOptions::default(),
                state: RouteState::Serving,
                faults: Box::new([]),
                metrics: Arc::new(RouteMetrics::default()),
            };
            (watch::channel(Arc::new(snap)).0, AtomicBool::new(false))
        };
        Passthrough {
            outbound: side(CaptureDirection::Outbound),
            inbound: side(CaptureDirection::Inbound),
        }
    }
}

impl Passthrough {
    /// The pseudo-route's name in `/metrics`.
    pub fn name(direction: CaptureDirection) -> &'static str {
        match direction {
            CaptureDirection::Outbound => "passthrough:outbound",
            CaptureDirection::Inbound => "passthrough:inbound",
        }
    }

    fn side(
        &self,
        direction: CaptureDirection,
    ) -> &(watch::Sender<Arc<RouteSnapshot>>, AtomicBool) {
        match direction {
            CaptureDirection::Outbound => &self.outbound,
            CaptureDirection::Inbound => &self.inbound,
        }
    }

    /// The snapshot channel a passed-through connection reads; marks the direction as open.
    pub fn feed(&self, direction: CaptureDirection) -> watch::Receiver<Arc<RouteSnapshot>> {
        let (tx, open) = self.side(direction);
        open.store(true, Ordering::Relaxed);
        tx.subscribe()
    }

    /// The counters of each direction whose capture listener was opened.
    pub fn metrics(&self) -> Vec<(&'static str, Arc<RouteMetrics>)> {
        [CaptureDirection::Outbound, CaptureDirection::Inbound]
            .into_iter()
            .filter_map(|d| {
                let (tx, open) = self.side(d);
                open.load(Ordering::Relaxed)
                    .then(|| (Self::name(d), tx.borrow().metrics.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_direction_network_and_port() {
        let m = CaptureMatch {
            direction: CaptureDirection::Outbound,
            destination: DestinationMatch {
                destinations: vec![
                    "10.0.0.0/8".parse().unwrap(),
                    "192.0.2.7/32".parse().unwrap(),
                ],
                ports: vec![6379],
            },
        };
        let out = CaptureDirection::Outbound;
        assert!(m.matches(out, "10.1.2.3:6379".parse().unwrap()));
        assert!(m.matches(out, "192.0.2.7:6379".parse().unwrap()));
        assert!(m.matches(out, "[::ffff:10.1.2.3]:6379".parse().unwrap()));
        assert!(!m.matches(out, "10.1.2.3:6380".parse().unwrap()));
        assert!(!m.matches(out, "192.0.2.8:6379".parse().unwrap()));
        assert!(!m.matches(CaptureDirection::Inbound, "10.1.2.3:6379".parse().unwrap()));
        assert!(CaptureMatch::any(out).matches(out, "[2001:db8::1]:1".parse().unwrap()));
        assert_eq!(
            m.to_string(),
            "capture:outbound:10.0.0.0/8,192.0.2.7/32:6379"
        );
        assert_eq!(CaptureMatch::any(out).to_string(), "capture:outbound");
    }

    #[test]
    fn destination_matches_v4_v6_networks_and_ports() {
        let m = DestinationMatch {
            destinations: vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.0.2.7/32".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ports: vec![6379, 443],
        };
        let yes = |s: &str| m.matches(s.parse().unwrap());
        assert!(yes("10.200.0.1:6379"));
        assert!(yes("192.0.2.7:443"));
        assert!(yes("[2001:db8:1::5]:6379"));
        assert!(yes("[::ffff:10.0.0.1]:443"), "v4-mapped compares as v4");
        assert!(!yes("192.0.2.8:6379"), "outside every network");
        assert!(!yes("10.0.0.1:80"), "other port");
        assert!(!yes("[2001:db9::1]:6379"));
        let any_port = DestinationMatch {
            ports: vec![],
            ..m.clone()
        };
        assert!(any_port.matches("10.0.0.1:80".parse().unwrap()));
        let port_only = DestinationMatch {
            destinations: vec![],
            ports: vec![8080],
        };
        assert!(port_only.matches("[2001:db8::1]:8080".parse().unwrap()));
        assert!(!port_only.matches("127.0.0.1:8081".parse().unwrap()));
        assert!(DestinationMatch::default().matches("127.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn the_text_form_round_trips() {
        for s in [
            "capture:outbound",
            "capture:inbound:*:8080,8443",
            "capture:outbound:10.0.0.0/8,2001:db8::/32:*",
        ] {
            assert_eq!(s.parse::<CaptureMatch>().unwrap().to_string(), s);
        }
        let m: CaptureMatch = "capture:outbound:192.0.2.7:6379".parse().unwrap();
        assert_eq!(
            m.destination.destinations,
            ["192.0.2.7/32".parse::<IpNet>().unwrap()]
        );
        let m: CaptureMatch = "capture:outbound:10.0.0.0/8+192.0.2.7:80+443"
            .parse()
            .unwrap();
        assert_eq!(
            m.to_string(),
            "capture:outbound:10.0.0.0/8,192.0.2.7/32:80,443"
        );
        for bad in [
            "outbound",
            "capture:sideways",
            "capture:outbound:10.0.0.0/8",
            "capture:outbound:10.0.0.0/40:*",
            "capture:outbound:*:0",
            "capture:outbound:*:http",
        ] {
            assert!(bad.parse::<CaptureMatch>().is_err(), "{bad}");
        }
    }
}
