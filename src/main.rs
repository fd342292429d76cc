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
//! - [`controller`]: `apply`, `create`, `start`, `get`, `describe`, `abort`, `delete`: the
//!   controller's gRPC API (`faultline.v1`).
//! - [`validate`]: `faultline validate`, an experiment spec checked offline with the
//!   controller's parser (`faultline_controller::spec`).
//! - [`run`]: `faultline run`, an experiment created, started and followed to its verdict
//!   (exit codes 3: aborted by a guard, 4: not recovered).
//! - [`report`]: `faultline report`, and the report model with its JUnit, JSON and HTML forms
//!   that `run` writes too.
//! - [`certs`]: `faultline certs init | issue`, a development CA and certificates (rcgen).
//! - [`demo`]: `faultline demo`, a whole game day in-process (controller, agent, sample service,
//!   traffic) ending in its HTML report.
//!
//! Exit codes: 0 on success, 1 when the agent cannot be reached or refuses a request (or a file
//! cannot be read), 2 when the command line is malformed (clap's own code for usage errors) or
//! the spec given to `validate` is invalid, or the controller answers INVALID_ARGUMENT; `run
//! --wait` adds 3 (aborted by a guard) and 4 (not recovered in time).

mod agent;
mod certs;
mod cli;
mod controller;
mod demo;
mod duration;
mod output;
mod report;
mod run;
mod validate;

use std::process::ExitCode;

use cli::{Cli, Command};

/// The agent could not be reached, or it answered with an error; or the runtime cannot start.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    // Parse and check the whole command line before touching the network: anything malformed
    // exits here with status 2 and clap's message.
    let cli = Cli::parse_checked();

    match cli.command {
        // `validate` is offline: no runtime, and its own exit codes (2: the spec is invalid).
        Command::Validate(args) => validate::run(&args),
        // Offline too: files in, files out.
        Command::Certs(args) => certs::run(args),
        // The controller commands choose their exit code from the gRPC status (2: invalid).
        Command::Controller(command) => on_runtime(controller::run(command)),
        Command::Run(args) => on_runtime(run::run(args)),
        Command::Report(args) => on_runtime(report::run(args)),
        // The demo runs a controller, an agent and a service in-process: several threads.
        Command::Demo(args) => on_multi_thread_runtime(demo::run(args)),
        Command::Agent(args) => on_runtime(async {
            match agent::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // `{:#}` prints the whole context chain on one line: what failed, then why.
                    eprintln!("faultline: {e:#}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }),
    }
}

/// Runs the demo on a multi-threaded runtime (the agent's data plane has its own threads).
fn on_multi_thread_runtime(command: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => {
            eprintln!("faultline: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs one command on a single-threaded runtime: one request at a time is all the CLI needs.
fn on_runtime(command: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(e) => {
            eprintln!("faultline: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
