//! partition: connections from (or to) the listed networks are refused or blackholed; all
//! others flow. With two loopback peers (127.0.0.1 and 127.0.0.2) a test can split one client
//! from another; with transparent capture it splits a service from one dependency.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionPeer {
    /// Match the connecting client's address.
    Client,
    /// Match the upstream address the connection goes to.
    Upstream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionAction {
    /// New connections are reset at once; open ones are reset.
    Refuse,
    /// Connections stay open but nothing flows either way.
    Blackhole,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub cidrs: Vec<IpNet>,
    pub peer: PartitionPeer,
    pub action: PartitionAction,
}

impl Partition {
    /// Whether a connection between `client` and `upstream` is on the far side of the partition.
    /// `upstream` is `None` before the upstream address is known.
    pub fn separates(&self, client: IpAddr, upstream: Option<IpAddr>) -> bool {
        let addr = match self.peer {
            PartitionPeer::Client => client,
            PartitionPeer::Upstream => match upstream {
                Some(a) => a,
                None => return false,
            },
        };
        let addr = canonical(addr);
        self.cidrs.iter().any(|net| net.contains(&addr))
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack listener) compare as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_partition_splits_two_loopback_peers() {
        let p = Partition {
            cidrs: vec!["127.0.0.2/32".parse().unwrap()],
            peer: PartitionPeer::Client,
            action: PartitionAction::Refuse,
        };
        assert!(p.separates("127.0.0.2".parse().unwrap(), None));
        assert!(!p.separates("127.0.0.1".parse().unwrap(), None));
        assert!(p.separates("::ffff:127.0.0.2".parse().unwrap(), None));
    }

    #[test]
    fn upstream_partition_needs_the_upstream_address() {
        let p = Partition {
            cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            peer: PartitionPeer::Upstream,
            action: PartitionAction::Blackhole,
        };
        let c = "127.0.0.1".parse().unwrap();
        assert!(!p.separates(c, None));
        assert!(p.separates(c, Some("10.1.2.3".parse().unwrap())));
        assert!(!p.separates(c, Some("127.0.0.1".parse().unwrap())));
    }
}
