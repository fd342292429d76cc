//! `faultline run -f FILE --wait`: create and start an experiment, follow it to its end, write
//! the reports asked for, and exit with a code that says how it went (the table is in `cli`):
//! 0 passed, 3 aborted by a guard, 4 not recovered in time, 2 invalid spec, 1 anything else.
//!
//! - [`follow`]: the `Watch` stream and the progress it shows (a live block on a terminal, one
//!   line per event otherwise).

pub mod follow;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use faultline_proto::v1::{
    CreateExperimentRequest, ExperimentState, StartExperimentRequest, ValidateRequest,
    create_experiment_request, validate_request,
};
use tonic::Code;

use crate::cli::Misuse;
use crate::controller::args::{ControllerAddr, ControllerCommand};
use crate::controller::client::{Client, Failure};
use crate::controller::{self, read_spec};
use crate::output;
use crate::report::{self, Outcome, ReportFiles};

/// Exit code: the experiment was aborted by a guard.
pub const EXIT_TRIPPED: u8 = 3;
/// Exit code: the service did not recover within `spec.recovery.timeout`.
pub const EXIT_NOT_RECOVERED: u8 = 4;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment spec: YAML or JSON (`-` reads standard input).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Follow the experiment to its end (and its recovery watch), then exit with its verdict.
    /// Without it, `run` is `apply`: create, start, print the targets, exit 0.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this long (e.g. 10m) and exit 1; the experiment goes
    /// on.
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub files: ReportFiles,
    #[command(flatten)]
    pub controller: ControllerAddr,
}

impl RunArgs {
    /// Reports need --wait: without it there is nothing to report yet.
    pub fn check(&self) -> Result<(), Misuse> {
        if self.files.any() && !self.wait {
            return Err(Misuse {
                command: &["run"],
                message: "--junit, --report and --html need --wait (or use `faultline report \
                          NAME` once the experiment has ended)"
                    .into(),
            });
        }
        if self.timeout.is_some() && !self.wait {
            return Err(Misuse {
                command: &["run"],
                message: "--timeout needs --wait".into(),
            });
        }
        Ok(())
    }
}

/// Runs `faultline run`; the exit code is the verdict.
pub async fn run(args: RunArgs) -> ExitCode {
    if !args.wait {
        return controller::run(ControllerCommand::Apply {
            file: args.file,
            controller: args.controller,
        })
        .await;
    }
    match wait(args).await {
        Ok(code) => ExitCode::from(code),
        Err(failure) => failure.exit(),
    }
}

/// The exit code of an outcome.
pub fn exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Passed => 0,
        Outcome::Tripped | Outcome::TrippedNotRecovered => EXIT_TRIPPED,
        Outcome::NotRecovered => EXIT_NOT_RECOVERED,
        Outcome::Failed | Outcome::Stopped | Outcome::Unfinished => 1,
    }
}

async fn wait(args: RunArgs) -> Result<u8, Failure> {
    let request = read_spec(&args.file)?;
    let mut client = Client::connect(&args.controller).await?;
    let created = match client.experiments.create(request.clone()).await {
        Ok(created) => created.into_inner(),
        Err(status) if status.code() == Code::InvalidArgument => {
            return invalid(&mut client, &args.file, request, status).await;
        }
        Err(status) => return Err(status.into()),
    };
    let name = created.name.clone();
    let started = client
        .experiments
        .start(StartExperimentRequest { name: name.clone() })
        .await;
    if let Err(status) = started {
        // A pre-flight refusal fails the experiment with its timeline: report it. Anything
        // else leaves it pending.
        let report = report::fetch(&mut client, &name).await?;
        if report.state != controller::render::state(ExperimentState::Failed as i32) {
            return Err(Failure::Then(
                Box::new(Failure::Grpc(status)),
                format!(
                    "experiment/{name} was created and stays pending: start it with \
                     `faultline start {name}` once agents match, or delete it"
                ),
            ));
        }
        eprintln!("faultline: {}", Failure::Grpc(status));
        return finish(&args, &report);
    }
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let followed = follow::follow(&mut client, &created, deadline).await?;
    let report = report::fetch(&mut client, &name).await?;
    if followed == follow::Followed::TimedOut {
        eprintln!(
            "faultline: --timeout passed; experiment/{name} goes on (`faultline abort {name} \
             --reason ...` ends it)"
        );
    }
    finish(&args, &report)
}

/// Writes the reports, prints the verdict and answers the exit code.
fn finish(args: &RunArgs, report: &report::Report) -> Result<u8, Failure> {
    args.files.write(report)?;
    output::line(&report.verdict_line())?;
    Ok(exit_code(report.verdict.outcome))
}

/// An invalid spec: every error as `FILE:LINE:COL: FIELD: message` (from the controller's
/// `Validate`, so its caps apply), exit 2.
async fn invalid(
    client: &mut Client,
    file: &Path,
    request: CreateExperimentRequest,
    status: tonic::Status,
) -> Result<u8, Failure> {
    let spec = match request.spec {
        Some(create_experiment_request::Spec::SpecJson(s)) => validate_request::Spec::SpecJson(s),
        Some(create_experiment_request::Spec::SpecYaml(s)) => validate_request::Spec::SpecYaml(s),
        None => return Err(status.into()),
    };
    let validated = client
        .experiments
        .validate(ValidateRequest { spec: Some(spec) })
        .await?
        .into_inner();
    if validated.valid || validated.errors.is_empty() {
        // Not the spec's fields (a name, say): the controller's message says what.
        return Err(status.into());
    }
    let source = if file == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        file.display().to_string()
    };
    for e in &validated.errors {
        let mut line = source.clone();
        if let (Some(l), Some(c)) = (e.line, e.column) {
            line.push_str(&format!(":{l}:{c}"));
        }
        line.push_str(": ");
        if !e.path.is_empty() {
            line.push_str(&format!("{}: ", e.path));
        }
        line.push_str(&e.message);
        eprintln!("{line}");
    }
    Ok(2)
}
