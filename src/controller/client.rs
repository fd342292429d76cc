//! The gRPC connection to the controller, and the one place a failure becomes a message and an
//! exit code: INVALID_ARGUMENT is 2 (the input is wrong), everything else 1.

use std::fmt;
use std::time::Duration;

use faultline_proto::v1::agent_registry_client::AgentRegistryClient;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// How long to wait for the controller to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The two services the CLI calls, over one channel.
pub struct Client {
    pub experiments: ExperimentServiceClient<Channel>,
    pub agents: AgentRegistryClient<Channel>,
}

impl Client {
    /// Connects now, so an unreachable controller is reported as such.
    pub async fn connect(addr: &str) -> Result<Client, Failure> {
        let url = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| Failure::Usage(format!("--controller {addr}: not a URL: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let channel = endpoint.connect().await.map_err(|e| {
            Failure::Unreachable(format!(
                "cannot reach the controller at {url}: {} (set --controller or FAULTLINE_CONTROLLER)",
                error_chain(&e)
            ))
        })?;
        Ok(Client {
            experiments: ExperimentServiceClient::new(channel.clone()),
            agents: AgentRegistryClient::new(channel),
        })
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // hyper and tonic repeat a cause in its wrapper's message; say it once.
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The controller refused the call.
    Grpc(Status),
    /// The controller could not be reached.
    Unreachable(String),
    /// A flag value the CLI could not use.
    Usage(String),
    /// Anything else: a file that cannot be read, stdout closed.
    Other(anyhow::Error),
    /// A failure, then a second line saying what it left behind.
    Then(Box<Failure>, String),
}

impl Failure {
    /// Prints the failure on stderr and answers its exit code: how every command ends on one.
    pub fn exit(&self) -> std::process::ExitCode {
        eprintln!("faultline: {self}");
        std::process::ExitCode::from(self.exit_code())
    }

    /// 2 when the input was at fault, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Grpc(s) if s.code() == Code::InvalidArgument => 2,
            Failure::Usage(_) => 2,
            Failure::Then(first, _) => first.exit_code(),
            _ => 1,
        }
    }
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        Failure::Grpc(s)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Grpc(s) if s.code() == Code::Unavailable => write!(
                f,
                "{}: the controller is unavailable: {}",
                code_name(s.code()),
                s.message()
            ),
            Failure::Grpc(s) => write!(f, "{}: {}", code_name(s.code()), s.message()),
            Failure::Unreachable(m) | Failure::Usage(m) => f.write_str(m),
            Failure::Other(e) => write!(f, "{e:#}"),
            Failure::Then(first, note) => write!(f, "{first}\nfaultline: {note}"),
        }
    }
}

/// `InvalidArgument` → `INVALID_ARGUMENT`, as gRPC names its codes.
fn code_name(code: Code) -> String {
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Ok), "OK");
    }

    #[test]
    fn only_invalid_argument_is_exit_2() {
        assert_eq!(Failure::from(Status::invalid_argument("x")).exit_code(), 2);
        assert_eq!(Failure::from(Status::not_found("x")).exit_code(), 1);
        assert_eq!(
            Failure::from(Status::failed_precondition("x")).exit_code(),
            1
        );
    }
}
