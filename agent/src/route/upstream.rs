//! Where a route forwards: an address, a host name, or, for a captured route, each
//! connection's original destination.
//!
//! A host name is resolved when the route is first used and then again in the background
//! every [`REFRESH`], so a route to `db.internal:5432` follows DNS changes (as Envoy's
//! `STRICT_DNS` clusters do) without a `getaddrinfo` on the blocking pool per connection or,
//! on HTTP routes, per request. The last answer serves while a refresh runs; a failed refresh
//! keeps it (and is retried a period later).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

/// How long a resolved address is used before it is resolved again (in the background).
pub const REFRESH: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub enum Upstream {
    Addr(SocketAddr),
    Host {
        host: Arc<str>,
        port: u16,
        /// Shared by every snapshot of the route (clones share it).
        resolved: Arc<Resolved>,
    },
    /// `original`: where the captured connection was going (`SO_ORIGINAL_DST`).
    Original,
}

impl PartialEq for Upstream {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Upstream::Addr(a), Upstream::Addr(b)) => a == b,
            (
                Upstream::Host { host, port, .. },
                Upstream::Host {
                    host: h2, port: p2, ..
                },
            ) => host == h2 && port == p2,
            (Upstream::Original, Upstream::Original) => true,
            _ => false,
        }
    }
}

impl Eq for Upstream {}

/// A host name's last resolved address and when it was resolved.
#[derive(Debug, Default)]
pub struct Resolved {
    last: ArcSwapOption<(SocketAddr, Instant)>,
    refreshing: AtomicBool,
    lookups: AtomicU64,
}

impl Resolved {
    async fn get(self: &Arc<Self>, host: &Arc<str>, port: u16) -> io::Result<SocketAddr> {
        if let Some(last) = self.last.load().as_deref() {
            let (addr, at) = *last;
            if at.elapsed() >= REFRESH && !self.refreshing.swap(true, Ordering::AcqRel) {
                let me = self.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    if let Err(e) = me.lookup(&host, port).await {
                        tracing::warn!(upstream = %format_args!("{host}:{port}"), error = %e,
                            "resolving the upstream failed; keeping its last address");
                        me.last.store(Some(Arc::new((addr, Instant::now()))));
                    }
                    me.refreshing.store(false, Ordering::Release);
                });
            }
            return Ok(addr);
        }
        self.lookup(host, port).await
    }

    async fn lookup(&self, host: &str, port: u16) -> io::Result<SocketAddr> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
            })?;
        self.last.store(Some(Arc::new((addr, Instant::now()))));
        Ok(addr)
    }

    /// How many lookups were made (for tests).
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }
}

impl Upstream {
    /// The address to connect to; `original` is the connection's original destination, when
    /// it was captured.
    pub async fn resolve(&self, original: Option<SocketAddr>) -> io::Result<SocketAddr> {
        match self {
            Upstream::Addr(a) => Ok(*a),
            Upstream::Original => original.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "upstream \"original\" needs a captured connection",
                )
            }),
            Upstream::Host {
                host,
                port,
                resolved,
            } => resolved.get(host, *port).await,
        }
    }
}

impl FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "original" {
            return Ok(Upstream::Original);
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Upstream::Addr(addr));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?} has no valid port (0-65535)"))?;
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !valid_host {
            return Err(format!("{s:?} is not HOST:PORT"));
        }
        if port == 0 {
            return Err(format!("{s:?}: port 0 cannot be an upstream"));
        }
        Ok(Upstream::Host {
            host: host.into(),
            port,
            resolved: Arc::default(),
        })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Addr(a) => a.fmt(f),
            Upstream::Host { host, port, .. } => write!(f, "{host}:{port}"),
            Upstream::Original => f.write_str("original"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_names() {
        assert_eq!(
            "127.0.0.1:80".parse::<Upstream>().unwrap(),
            Upstream::Addr("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            "[::1]:80".parse::<Upstream>().unwrap().to_string(),
            "[::1]:80"
        );
        assert_eq!(
            "localhost:6379".parse::<Upstream>().unwrap().to_string(),
            "localhost:6379"
        );
        assert_eq!("original".parse::<Upstream>().unwrap(), Upstream::Original);
        for bad in [
            "",
            "nohost",
            "host:",
            "host:99999",
            ":80",
            "a b:1",
            "host:0",
        ] {
            assert!(bad.parse::<Upstream>().is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_is_resolved_once_per_refresh_period_and_clones_share_the_answer() {
        let up: Upstream = "localhost:6379".parse().unwrap();
        let Upstream::Host { resolved, .. } = up.clone() else {
            unreachable!()
        };
        let first = up.resolve(None).await.unwrap();
        assert!(first.ip().is_loopback() && first.port() == 6379, "{first}");
        for _ in 0..100 {
            assert_eq!(up.clone().resolve(None).await.unwrap(), first);
        }
        assert_eq!(resolved.lookups(), 1);

        // Past the period: the old answer serves at once and one refresh runs behind it.
        tokio::time::advance(REFRESH).await;
        for _ in 0..10 {
            assert_eq!(up.resolve(None).await.unwrap(), first);
        }
        // The refresh resolves on the blocking pool, in real time: wait for it, bounded.
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while resolved.refreshing.load(Ordering::Acquire) {
            assert!(
                std::time::Instant::now() < give_up,
                "the refresh never ended"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(up.resolve(None).await.unwrap(), first);
        assert_eq!(resolved.lookups(), 2);
    }
}
