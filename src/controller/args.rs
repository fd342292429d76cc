//! The controller commands' arguments. Every command takes `--controller` (or
//! `FAULTLINE_CONTROLLER`) and the credentials a controller with authentication asks for
//! ([`Credentials`]: a bearer token, the CA of an https:// controller, a client certificate).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Where the controller listens.
#[derive(Debug, Args)]
pub struct ControllerAddr {
    /// The controller's gRPC address, http://HOST:PORT (a bare HOST:PORT is accepted).
    #[arg(
        long,
        env = "FAULTLINE_CONTROLLER",
        default_value = "http://127.0.0.1:7070",
        value_name = "URL"
    )]
    pub controller: String,

    #[command(flatten)]
    pub credentials: Credentials,
}

/// How the CLI proves who it is, and checks who the controller is.
#[derive(Clone, Debug, Default, Args)]
pub struct Credentials {
    /// A file holding the bearer token sent as `authorization: Bearer TOKEN` (a name's token
    /// from the controller's --tokens-file). Takes precedence over FAULTLINE_TOKEN.
    #[arg(long, env = "FAULTLINE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// The bearer token itself; best given as FAULTLINE_TOKEN, since a command line shows in
    /// `ps`.
    #[arg(
        long,
        env = "FAULTLINE_TOKEN",
        hide = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// The CA (PEM) of the controller's certificate; needed for an https:// --controller.
    #[arg(long, env = "FAULTLINE_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// A client certificate (PEM, `faultline certs issue --role operator`), with --key; an
    /// alternative to a token.
    #[arg(long, env = "FAULTLINE_CERT", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The private key of --cert (PEM).
    #[arg(long, env = "FAULTLINE_KEY", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl ControllerAddr {
    /// The address alone, no credentials (the demo's embedded controller).
    pub fn plain(url: String) -> Self {
        ControllerAddr {
            controller: url,
            credentials: Credentials::default(),
        }
    }
}

/// `-o` of `get`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns with a header row.
    #[default]
    Table,
    /// The wire messages as JSON (proto field names in camelCase).
    Json,
    /// The same document as YAML.
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum ControllerCommand {
    /// Create an experiment from a spec and start it; prints the chosen targets.
    Apply {
        /// The experiment spec: YAML or JSON (`-` reads standard input).
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        controller: ControllerAddr,
    },
    /// Create an experiment from a spec, pending until `start`.
    Create {
        /// The experiment spec: YAML or JSON (`-` reads standard input).
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        controller: ControllerAddr,
    },
    /// Start a pending experiment; prints the chosen targets.
    Start {
        /// The experiment's name.
        name: String,
        #[command(flatten)]
        controller: ControllerAddr,
    },
    /// List experiments or agents.
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Show one experiment: its spec, state, reason, targets and timeline.
    Describe {
        #[command(subcommand)]
        what: Describe,
    },
    /// Abort a pending or running experiment; its faults are withdrawn from every agent.
    Abort {
        /// The experiment's name.
        name: String,
        /// Why, recorded in the experiment's reason and timeline.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        controller: ControllerAddr,
    },
    /// Delete an experiment that is not running, with its timeline.
    Delete {
        /// The experiment's name.
        name: String,
        #[command(flatten)]
        controller: ControllerAddr,
    },
    /// Emergency stop: abort every running experiment and refuse starts until `resume`.
    #[command(name = "stop-all")]
    StopAll {
        /// Why, recorded as each aborted experiment's reason (`emergency stop: TEXT`).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        controller: ControllerAddr,
    },
    /// Lift the emergency stop: experiments may start again.
    Resume {
        #[command(flatten)]
        controller: ControllerAddr,
    },
    /// The controller's audit log, oldest first: who called what, on which experiment, when,
    /// from where, and how it ended (denied, ok, error).
    Audit {
        /// The most recent N records (at most 10000).
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: u32,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
        #[command(flatten)]
        controller: ControllerAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum GetWhat {
    /// Every experiment: name, state, targets, reason.
    #[command(alias = "experiment")]
    Experiments {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
        #[command(flatten)]
        controller: ControllerAddr,
    },
    /// Every agent the controller has seen: id, connected, labels, routes.
    #[command(alias = "agent")]
    Agents {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
        #[command(flatten)]
        controller: ControllerAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum Describe {
    /// One experiment: spec summary, state, reason, targets and the timeline.
    Experiment {
        /// The experiment's name.
        name: String,
        #[command(flatten)]
        controller: ControllerAddr,
    },
}
