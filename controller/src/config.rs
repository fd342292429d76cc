//! The controller's configuration, parsed once at the edge into typed values.
//!
//! The binary reads flags and their environment fallbacks ([`ENV_LISTEN`], [`ENV_DATA_DIR`],
//! [`ENV_CAPS`], [`ENV_METRICS`]); everything past this module sees only a [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::spec::{Caps, SpecError};

/// The gRPC listen address (`127.0.0.1:7070`).
pub const ENV_LISTEN: &str = "FAULTLINE_CONTROLLER_LISTEN";
/// The data dir holding the SQLite store.
/// The `/metrics` HTTP listen address (`--metrics`).
pub const ENV_METRICS: &str = "FAULTLINE_METRICS";
/// The `/metrics` address when none is given.
pub const DEFAULT_METRICS: &str = "127.0.0.1:7071";
pub const ENV_DATA_DIR: &str = "FAULTLINE_DATA_DIR";
/// A YAML file of server-side caps (`maxDuration`, `maxPercentOfAgents`, `allowedSelectors`).
pub const ENV_CAPS: &str = "FAULTLINE_CAPS";

/// Where the controller listens, where it keeps its store, and the caps specs are held to.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub caps: Caps,
}

/// A setting that could not be used; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--caps / {ENV_CAPS}: cannot read {path}: {source}")]
    ReadCaps {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--caps / {ENV_CAPS}: {}", .source.render(&.path.display().to_string()))]
    InvalidCaps { path: PathBuf, source: SpecError },
    #[error(
        "--lease / {ENV_LEASE} ({lease:?}) must be at least twice --heartbeat / {ENV_HEARTBEAT} ({heartbeat:?}), which must not be zero"
    )]
    Leases {
        lease: std::time::Duration,
        heartbeat: std::time::Duration,
    },
}

/// Reads and parses a caps file.
pub fn load_caps(path: &Path) -> Result<Caps, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadCaps {
        path: path.to_owned(),
        source,
    })?;
    Caps::parse(&text).map_err(|source| ConfigError::InvalidCaps {
        path: path.to_owned(),
        source,
    })
}

/// The lease the controller grants agents (`--lease`, default 3 s).
pub const ENV_LEASE: &str = "FAULTLINE_LEASE";
/// How often the controller heartbeats each agent (`--heartbeat`, default 1 s).
pub const ENV_HEARTBEAT: &str = "FAULTLINE_HEARTBEAT";

/// How long an agent keeps controller-issued faults without hearing from the controller, and
/// how often it hears (each heartbeat renews the lease).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leases {
    pub lease: std::time::Duration,
    pub heartbeat: std::time::Duration,
}

impl Default for Leases {
    fn default() -> Self {
        Leases {
            lease: std::time::Duration::from_secs(3),
            heartbeat: std::time::Duration::from_secs(1),
        }
    }
}

impl Leases {
    /// Checks that heartbeats come well within a lease.
    pub fn new(
        lease: std::time::Duration,
        heartbeat: std::time::Duration,
    ) -> Result<Self, ConfigError> {
        if heartbeat.is_zero() || lease < heartbeat * 2 {
            return Err(ConfigError::Leases { lease, heartbeat });
        }
        Ok(Leases { lease, heartbeat })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn leases_need_heartbeats_well_within_the_lease() {
        let ms = Duration::from_millis;
        assert_eq!(Leases::default().lease, ms(3000));
        assert_eq!(Leases::default().heartbeat, ms(1000));
        assert!(Leases::new(ms(2000), ms(1000)).is_ok());
        let err = Leases::new(ms(1500), ms(1000)).unwrap_err().to_string();
        assert!(
            err.contains("--lease") && err.contains("--heartbeat"),
            "{err}"
        );
        assert!(Leases::new(ms(1000), Duration::ZERO).is_err());
    }
}
