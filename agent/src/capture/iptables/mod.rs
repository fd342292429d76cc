//! `faultline-agent init-iptables`: the nat rules that redirect a pod's TCP traffic to the
//! agent's capture listeners, written idempotently, and `--cleanup`, which removes them.
//!
//! - [`args`]: the subcommand's flags (each with a `FAULTLINE_IPTABLES_*` variable), checked
//!   into [`Options`].
//! - [`rules`]: options → the commands, as data ([`Command`]): dedicated chains
//!   (`FAULTLINE_OUTPUT` from `OUTPUT`, `FAULTLINE_INBOUND` from `PREROUTING`, nat table) that
//!   are flushed and refilled on every run, and a jump to each added only when missing.
//! - [`exec`]: runs the commands (or prints them as a shell script for `--dry-run`).

pub mod args;
pub mod exec;
pub mod rules;

pub use self::args::{IptablesArgs, Options};
pub use self::rules::{Command, Mode};

/// Writes (or, with `--cleanup`, removes) the rules; with `--dry-run` prints them instead.
pub fn run(args: IptablesArgs) -> Result<(), crate::config::ConfigError> {
    let options = args.options()?;
    let commands = rules::plan(&options);
    if options.dry_run {
        print!("{}", exec::script(&commands));
        return Ok(());
    }
    exec::run(&commands).map_err(|e| crate::config::ConfigError::new("init-iptables", e))
}
