//! The commands that talk to the controller over gRPC: `apply`, `create`, `start`, `get`,
//! `describe`, `abort`, `delete`, and the emergency stop `stop-all` / `resume`.
//!
//! - [`args`]: the subcommands, their flags and the controller's address.
//! - [`client`]: the connection, and how a gRPC status becomes a message and an exit code.
//! - [`audit`]: `faultline audit`, the controller's audit log.
//! - [`render`]: wire messages to tables, JSON, YAML and the `describe` page.

pub mod args;
pub mod audit;
pub mod client;
pub mod render;

use std::path::Path;
use std::process::ExitCode;

use faultline_proto::v1::{
    AbortExperimentRequest, CreateExperimentRequest, DeleteExperimentRequest, GetExperimentRequest,
    ListAgentsRequest, ListAuditRequest, ListExperimentsRequest, ResumeRequest,
    StartExperimentRequest, StopAllRequest, create_experiment_request,
};

use self::args::{ControllerCommand, Describe, GetWhat};
use self::client::{Client, Failure};
use crate::output;

/// Runs one controller command; the exit code is the result (see `cli` for the table).
pub async fn run(command: ControllerCommand) -> ExitCode {
    match execute(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}

async fn execute(command: ControllerCommand) -> Result<(), Failure> {
    match command {
        ControllerCommand::Apply { file, controller } => {
            let request = read_spec(&file)?;
            let mut client = Client::connect(&controller).await?;
            let created = client.experiments.create(request).await?.into_inner();
            output::line(&format!("experiment/{} created", created.name))?;
            let started = client
                .experiments
                .start(StartExperimentRequest {
                    name: created.name.clone(),
                })
                .await
                .map_err(|status| {
                    Failure::Then(
                        Box::new(Failure::Grpc(status)),
                        format!(
                            "experiment/{0} was created and stays pending: start it with \
                             `faultline start {0}` once agents match, or delete it",
                            created.name
                        ),
                    )
                })?
                .into_inner();
            output::line(&render::started(&started))?;
            Ok(())
        }
        ControllerCommand::Create { file, controller } => {
            let request = read_spec(&file)?;
            let mut client = Client::connect(&controller).await?;
            let created = client.experiments.create(request).await?.into_inner();
            output::line(&format!(
                "experiment/{} created ({})",
                created.name,
                render::state(created.state)
            ))?;
            Ok(())
        }
        ControllerCommand::Start { name, controller } => {
            let mut client = Client::connect(&controller).await?;
            let started = client
                .experiments
                .start(StartExperimentRequest { name })
                .await?
                .into_inner();
            output::line(&render::started(&started))?;
            Ok(())
        }
        ControllerCommand::Audit {
            limit,
            output,
            controller,
        } => {
            let mut client = Client::connect(&controller).await?;
            let list = client
                .experiments
                .list_audit(ListAuditRequest { limit })
                .await?
                .into_inner();
            audit::render(&list.records, output)?;
            Ok(())
        }
        ControllerCommand::Get { what } => match what {
            GetWhat::Experiments { output, controller } => {
                let mut client = Client::connect(&controller).await?;
                let list = client
                    .experiments
                    .list(ListExperimentsRequest { states: Vec::new() })
                    .await?
                    .into_inner();
                render::experiments(&list.experiments, output)?;
                Ok(())
            }
            GetWhat::Agents { output, controller } => {
                let mut client = Client::connect(&controller).await?;
                let list = client
                    .agents
                    .list(ListAgentsRequest::default())
                    .await?
                    .into_inner();
                render::agents(&list.agents, output)?;
                Ok(())
            }
        },
        ControllerCommand::Describe {
            what: Describe::Experiment { name, controller },
        } => {
            let mut client = Client::connect(&controller).await?;
            let got = client
                .experiments
                .get(GetExperimentRequest { name })
                .await?
                .into_inner();
            let experiment = got
                .experiment
                .ok_or_else(|| anyhow::anyhow!("the controller answered without the experiment"))?;
            output::line(render::describe(&experiment, &got.events).trim_end())?;
            Ok(())
        }
        ControllerCommand::Abort {
            name,
            reason,
            controller,
        } => {
            let mut client = Client::connect(&controller).await?;
            let aborted = client
                .experiments
                .abort(AbortExperimentRequest { name, reason })
                .await?
                .into_inner();
            output::line(&format!(
                "experiment/{} {}: {}",
                aborted.name,
                render::state(aborted.state),
                aborted.reason
            ))?;
            Ok(())
        }
        ControllerCommand::Delete { name, controller } => {
            let mut client = Client::connect(&controller).await?;
            client
                .experiments
                .delete(DeleteExperimentRequest { name: name.clone() })
                .await?;
            output::line(&format!("experiment/{name} deleted"))?;
            Ok(())
        }
        ControllerCommand::StopAll { reason, controller } => {
            let mut client = Client::connect(&controller).await?;
            let stopped = client
                .experiments
                .stop_all(StopAllRequest { reason })
                .await?
                .into_inner();
            let aborted = match stopped.aborted.as_slice() {
                [] => "no experiment was running".to_owned(),
                names => format!("aborted {}", names.join(", ")),
            };
            output::line(&format!(
                "emergency stop in force: {aborted}; starts are refused until `faultline resume`"
            ))?;
            Ok(())
        }
        ControllerCommand::Resume { controller } => {
            let mut client = Client::connect(&controller).await?;
            let resumed = client
                .experiments
                .resume(ResumeRequest {})
                .await?
                .into_inner();
            output::line(if resumed.was_stopped {
                "emergency stop lifted: experiments may start again"
            } else {
                "no emergency stop was in force"
            })?;
            Ok(())
        }
    }
}

/// Reads a spec file (`-`: standard input); JSON when the file name ends in `.json`, else YAML
/// (the controller's errors then carry line and column).
pub fn read_spec(path: &Path) -> Result<CreateExperimentRequest, Failure> {
    use std::io::Read;
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| anyhow::anyhow!("cannot read the spec from standard input: {e}"))?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
    };
    let spec = if path.extension().is_some_and(|e| e == "json") {
        create_experiment_request::Spec::SpecJson(text)
    } else {
        create_experiment_request::Spec::SpecYaml(text)
    };
    Ok(CreateExperimentRequest { spec: Some(spec) })
}
