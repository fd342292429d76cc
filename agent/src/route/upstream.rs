//! Where a route forwards: an address, a host name resolved when a connection opens
//! (so a route to `db.internal:5432` follows DNS changes, as Toxiproxy's does), or, for a
//! captured route, each connection's original destination.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstream {
    Addr(SocketAddr),
    Host {
        host: Arc<str>,
        port: u16,
    },
    /// `original`: where the captured connection was going (`SO_ORIGINAL_DST`).
    Original,
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
            Upstream::Host { host, port } => tokio::net::lookup_host((&**host, *port))
                .await?
                .next()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
                }),
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
        })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Addr(a) => a.fmt(f),
            Upstream::Host { host, port } => write!(f, "{host}:{port}"),
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
}
