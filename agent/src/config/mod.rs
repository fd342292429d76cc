//! The agent's configuration: flags, environment variables and an optional config file,
//! parsed once, here, into typed values. Nothing past this module sees a raw string setting.
//!
//! - [`args`]: the command line (clap), each flag with its environment variable.
//! - [`file`]: the config file (YAML, JSON, or Toxiproxy's JSON list of proxies).

pub mod args;
pub mod file;

use std::net::SocketAddr;
use std::time::Duration;

use crate::fault::Fault;
use crate::route::RouteSpec;

pub use self::args::Args;

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
    pub routes: Vec<RouteSpec>,
    /// Faults to install at start, by route name.
    pub faults: Vec<(String, Fault)>,
    pub log_format: LogFormat,
    pub drain_grace: Duration,
    pub connect_timeout: Duration,
    /// Tokio worker threads; `None` = one per core.
    pub threads: Option<usize>,
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
        Ok(AgentConfig {
            admin: args.admin,
            routes,
            faults,
            log_format: args.log_format,
            drain_grace: args.drain_grace.into(),
            connect_timeout: args.connect_timeout.into(),
            threads: args.threads,
        })
    }
}
