//! `faultline certs init | issue`: a development CA and the certificates of a faultline
//! deployment, made with rcgen (ECDSA P-256).
//!
//! - `init --out DIR` writes `ca.pem` and `ca-key.pem`.
//! - `issue --ca-dir DIR --out DIR NAME --role ROLE` writes `NAME.pem` and `NAME-key.pem`,
//!   signed by that CA. The role goes into a URI SAN, `spiffe://faultline/ROLE/NAME`, which
//!   the controller reads from a verified client certificate: an agent certificate cannot call
//!   the operator API. Agent and operator certificates are for clients (clientAuth); controller
//!   and webhook certificates for servers (serverAuth), with `--dns` and `--ip` SANs (default:
//!   NAME, localhost, 127.0.0.1 and ::1).
//!
//! Key files are created with mode 0600. Existing files are never overwritten without
//! `--force`. For production, a real CA (cert-manager, Vault) issuing the same URI SANs works
//! the same way.

mod files;
mod make;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use faultline_controller::auth::Role;

/// `faultline certs ...`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: CertsCommand,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a development CA: DIR/ca.pem and DIR/ca-key.pem.
    Init {
        /// The directory to write to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace files that already exist.
        #[arg(long)]
        force: bool,
        /// How long the CA is valid, in days.
        #[arg(long, default_value_t = 3650, value_name = "DAYS")]
        days: u32,
    },
    /// Issue a certificate signed by the CA in --ca-dir: DIR/NAME.pem and DIR/NAME-key.pem.
    Issue {
        /// The directory holding ca.pem and ca-key.pem (`certs init --out`).
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// The directory to write to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The certificate's name: its common name, the NAME of its URI SAN, the file names.
        name: String,
        /// What the certificate is for: agent and operator certificates identify clients to
        /// the controller; controller and webhook certificates serve TLS.
        #[arg(long, value_enum, default_value = "agent")]
        role: RoleArg,
        /// A DNS name the certificate is valid for (repeat the flag).
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// An IP address the certificate is valid for (repeat the flag).
        #[arg(long = "ip", value_name = "IP")]
        ip: Vec<IpAddr>,
        /// Replace files that already exist.
        #[arg(long)]
        force: bool,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = 365, value_name = "DAYS")]
        days: u32,
    },
}

/// `--role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Agent,
    Operator,
    Controller,
    Webhook,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Agent => Role::Agent,
            RoleArg::Operator => Role::Operator,
            RoleArg::Controller => Role::Controller,
            RoleArg::Webhook => Role::Webhook,
        }
    }
}

/// Runs a `certs` command: 0, or 1 with a message naming the file or value at fault.
pub fn run(args: CertsArgs) -> ExitCode {
    let result = match args.command {
        CertsCommand::Init { out, force, days } => make::init(&out, force, days),
        CertsCommand::Issue {
            ca_dir,
            out,
            name,
            role,
            dns,
            ip,
            force,
            days,
        } => make::issue(&make::IssueRequest {
            ca_dir: &ca_dir,
            out: &out,
            name: &name,
            role: role.into(),
            dns: &dns,
            ip: &ip,
            force,
            days,
        }),
    };
    match result {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("faultline: {e:#}");
            ExitCode::from(1)
        }
    }
}
