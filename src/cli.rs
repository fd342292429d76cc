//! The top of the command line. Each area of the CLI owns its arguments
//! ([`crate::agent::args`]); this module joins them and documents the exit codes.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

use crate::agent::args::AgentArgs;
use crate::certs::CertsArgs;
use crate::controller::args::ControllerCommand;
use crate::demo::DemoArgs;
use crate::report::ReportArgs;
use crate::run::RunArgs;
use crate::validate::ValidateArgs;

/// faultline: the operator CLI for the faultline chaos-engineering fault injector.
///
/// `faultline agent ...` drives one agent through its admin API, as toxiproxy-cli does
/// (the API is Toxiproxy-compatible, so a Toxiproxy server works too): list routes and
/// their faults, create and remove routes, add and remove faults, reset.
///
/// The CLI checks what it reads itself (numbers, durations, KEY=VALUE pairs, choices
/// such as --stream) and refuses malformed input with exit code 2 before sending
/// anything. Values it passes through unchanged (addresses, fault types, a toxicity
/// outside 0..1, attribute values) are checked by the agent, whose error names the
/// field; that is exit code 1.
///
/// `faultline validate -f FILE` checks an experiment spec offline, with the
/// controller's own parser, and prints FILE:LINE:COL: FIELD: message for the
/// first error.
///
/// apply, create, start, get, describe, abort, delete, stop-all, resume and audit talk to the
/// controller over gRPC, at --controller or FAULTLINE_CONTROLLER (default
/// http://127.0.0.1:7070). A refusal prints the gRPC code and the controller's
/// message, which names the field at fault. A controller with authentication
/// takes a bearer token (--token-file, FAULTLINE_TOKEN_FILE or FAULTLINE_TOKEN)
/// or an operator certificate (--cert and --key); https:// needs --ca.
///
/// `faultline certs init | issue` make a development CA and certificates.
///
/// `faultline run -f FILE --wait` creates, starts and follows an experiment to its
/// end (recovery included) and exits with its verdict (codes 3 and 4 below);
/// --junit, --report and --html write its reports. `faultline report NAME` writes
/// the same files for an experiment that has ended.
///
/// Exit codes:
///   0  success (validate: the spec is valid)
///   1  the agent could not be reached, or it refused the request
///      (its error message, naming the field at fault, is printed on stderr);
///      the controller could not be reached, or it refused the request with
///      any code but INVALID_ARGUMENT: NOT_FOUND, ALREADY_EXISTS,
///      FAILED_PRECONDITION (e.g. no agent matches), UNAVAILABLE...;
///      a file could not be read
///   2  usage error: unknown command or flag, missing or malformed value;
///      validate: the spec (or the caps file) is invalid;
///      controller commands: INVALID_ARGUMENT (the spec or a name is invalid)
///   3  run --wait: a guard aborted the experiment (also when the service then
///      did not recover: the verdict line says both)
///   4  run --wait: the experiment completed but the service did not recover
///      within spec.recovery.timeout
///
/// run --wait ends 0 only when the experiment completed, its guards held and the
/// service recovered (or it had no guards); 1 when it failed (pre-flight refusal,
/// requireTraffic, no targets), an operator or the emergency stop aborted it, or
/// --timeout passed.
#[derive(Debug, Parser)]
#[command(
    name = "faultline",
    version,
    verbatim_doc_comment,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive a standalone agent (or a Toxiproxy server) through its admin API.
    Agent(AgentArgs),

    /// Check an experiment spec offline: FILE: valid (...), or FILE:LINE:COL: FIELD: message
    /// and exit code 2.
    Validate(ValidateArgs),

    #[command(flatten)]
    Controller(ControllerCommand),

    /// Create and start an experiment; with --wait follow it to its end, show its progress
    /// (on a terminal: the time left and each guard's state with the last value it reported at
    /// a transition; otherwise one line per event) and exit with its verdict: 0 passed, 3
    /// aborted by a guard, 4 not recovered in time, 2 invalid spec, 1 anything else.
    Run(RunArgs),

    /// Write the JUnit, JSON or HTML report of an experiment from the controller's store.
    Report(ReportArgs),

    /// A whole game day on this machine, in-process: an embedded controller, a sample API
    /// service, an agent in front of it and steady traffic; runs
    /// examples/api-outage-gameday.yaml, prints the timeline and the verdict, writes the HTML
    /// report. Exit 0 when a guard stopped the outage and the service recovered.
    Demo(DemoArgs),

    /// Make a development CA (`certs init`) and the certificates of controllers, agents and
    /// operators (`certs issue`), for the controller's mTLS.
    Certs(CertsArgs),
}

/// A command line clap accepted value by value but that is still wrong as a whole.
#[derive(Debug, PartialEq, Eq)]
pub struct Misuse {
    /// The subcommand at fault, e.g. `["agent", "fault", "add"]`, for its usage line.
    pub command: &'static [&'static str],
    pub message: String,
}

impl Cli {
    /// Parses the command line and checks what clap cannot check value by value; on any
    /// usage error prints clap's message and exits with status 2.
    pub fn parse_checked() -> Cli {
        let cli = Cli::parse();
        let checked = match &cli.command {
            Command::Agent(args) => args.check(),
            Command::Run(args) => args.check(),
            Command::Report(args) => args.check(),
            Command::Validate(_)
            | Command::Controller(_)
            | Command::Demo(_)
            | Command::Certs(_) => Ok(()),
        };
        if let Err(misuse) = checked {
            let mut cmd = Cli::command();
            cmd.build();
            let mut sub = &mut cmd;
            for name in misuse.command {
                sub = sub
                    .find_subcommand_mut(name)
                    .expect("a Misuse names a real subcommand");
            }
            sub.error(ErrorKind::ValueValidation, misuse.message).exit();
        }
        cli
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn long_help_carries_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("  2  usage error"), "{help}");
        assert!(help.contains("INVALID_ARGUMENT"), "{help}");
    }
}
