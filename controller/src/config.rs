//! The controller's configuration, parsed once at the edge into typed values.
//!
//! The binary reads flags and their environment fallbacks ([`ENV_LISTEN`], [`ENV_DATA_DIR`],
//! [`ENV_CAPS`]); everything past this module sees only a [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::spec::{Caps, SpecError};

/// The gRPC listen address (`127.0.0.1:7070`).
pub const ENV_LISTEN: &str = "FAULTLINE_CONTROLLER_LISTEN";
/// The data dir holding the SQLite store.
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
