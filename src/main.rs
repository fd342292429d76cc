//! `faultline`: the operator CLI.
//!
//! Today it drives a standalone agent's admin API (as `toxiproxy-cli` does) and checks
//! experiment specs offline (`validate`); commands for the controller will sit beside them as
//! further subcommands.
//!
//! - [`cli`]: the command line (clap derive; its doc comments are `--help`), including the
//!   exit-code table.
//! - [`agent`]: the `faultline agent ...` commands: their arguments, the admin API client, and
//!   the JSON shapes it exchanges.
//! - [`output`]: how results are printed (aligned tables, or the agent's JSON as is).
//! - [`duration`]: durations such as `30s` or `1m30s`, as given on the command line.
//! - [`validate`]: `faultline validate`, an experiment spec checked offline with the
//!   controller's parser (`faultline_controller::spec`).
//!
//! Exit codes: 0 on success, 1 when the agent cannot be reached or refuses a request (or a file
//! cannot be read), 2 when the command line is malformed (clap's own code for usage errors) or
//! the spec given to `validate` is invalid.

mod agent;
mod cli;
mod duration;
mod output;
mod validate;

use std::process::ExitCode;

use cli::{Cli, Command};

/// The agent could not be reached, or it answered with an error.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    // Parse and check the whole command line before touching the network: anything malformed
    // exits here with status 2 and clap's message.
    let cli = Cli::parse_checked();

    // `validate` is offline: no runtime, and its own exit codes (2: the spec is invalid).
    let agent_args = match cli.command {
        Command::Validate(args) => return validate::run(&args),
        Command::Agent(args) => args,
    };

    // One request at a time: a single-threaded runtime is all the CLI needs.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faultline: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };

    let result = runtime.block_on(agent::run(agent_args));

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: what failed, then why.
            eprintln!("faultline: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
