//! The gRPC connection to the controller, and the one place a failure becomes a message and an
//! exit code: INVALID_ARGUMENT is 2 (the input is wrong), everything else 1.
//!
//! The credentials are read once, here: TLS (the controller's CA, a client certificate) on the
//! channel, the bearer token on every call (an interceptor).

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use faultline_proto::v1::agent_registry_client::AgentRegistryClient;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

use super::args::{ControllerAddr, Credentials};

/// How long to wait for the controller to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The channel with the bearer token added to every call.
pub type Grpc = InterceptedService<Channel, Bearer>;

/// The two services the CLI calls, over one channel.
pub struct Client {
    pub experiments: ExperimentServiceClient<Grpc>,
    pub agents: AgentRegistryClient<Grpc>,
}

/// Adds `authorization: Bearer TOKEN` to each call, when there is a token.
#[derive(Clone, Debug)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Client {
    /// Connects now, so an unreachable controller is reported as such.
    pub async fn connect(target: &ControllerAddr) -> Result<Client, Failure> {
        let addr = &target.controller;
        let url = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let bearer = bearer(&target.credentials)?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| Failure::Usage(format!("--controller {addr}: not a URL: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        if let Some(tls) = tls(&url, &target.credentials)? {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| Failure::Usage(format!("--ca / --cert: {}", error_chain(&e))))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            Failure::Unreachable(format!(
                "cannot reach the controller at {url}: {} (set --controller or FAULTLINE_CONTROLLER)",
                error_chain(&e)
            ))
        })?;
        Ok(Client {
            experiments: ExperimentServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            agents: AgentRegistryClient::with_interceptor(channel, bearer),
        })
    }
}

/// The token from --token-file (or FAULTLINE_TOKEN_FILE), else FAULTLINE_TOKEN.
fn bearer(credentials: &Credentials) -> Result<Bearer, Failure> {
    let token = match (&credentials.token_file, &credentials.token) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--token-file: cannot read {}", path.display()))?,
        ),
        (None, token) => token.clone(),
    };
    let Some(token) = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) else {
        return Ok(Bearer(None));
    };
    let value = format!("Bearer {token}").parse().map_err(|_| {
        Failure::Usage("the token (--token-file or FAULTLINE_TOKEN) must be printable ASCII".into())
    })?;
    Ok(Bearer(Some(value)))
}

/// TLS for an https:// URL: the CA from --ca, and the client certificate when given.
fn tls(url: &str, credentials: &Credentials) -> Result<Option<ClientTlsConfig>, Failure> {
    let https = url.starts_with("https://");
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))
    };
    match (&credentials.ca, https) {
        (None, false) if credentials.cert.is_none() => Ok(None),
        (_, false) => Err(Failure::Usage(format!(
            "--ca and --cert need an https:// controller, not {url}"
        ))),
        (None, true) => Err(Failure::Usage(format!(
            "{url} is https://: give the CA of the controller's certificate with --ca or FAULTLINE_CA"
        ))),
        (Some(ca), true) => {
            let mut config =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--ca", ca)?));
            if let (Some(cert), Some(key)) = (&credentials.cert, &credentials.key) {
                config = config.identity(Identity::from_pem(
                    read("--cert", cert)?,
                    read("--key", key)?,
                ));
            }
            Ok(Some(config))
        }
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
            Failure::Grpc(s) if connection_broke(s) => write!(
                f,
                "UNKNOWN: {} (the connection failed under the call; a controller serving TLS \
                 needs an https:// --controller and --ca)",
                s.message()
            ),
            Failure::Grpc(s) => write!(f, "{}: {}", code_name(s.code()), s.message()),
            Failure::Unreachable(m) | Failure::Usage(m) => f.write_str(m),
            Failure::Other(e) => write!(f, "{e:#}"),
            Failure::Then(first, note) => write!(f, "{first}\nfaultline: {note}"),
        }
    }
}

/// tonic's words for a connection that broke under a call (plaintext spoken to a TLS port
/// ends one way or the other, depending on timing).
fn connection_broke(s: &Status) -> bool {
    s.code() == Code::Unknown
        && (s.message() == "transport error" || s.message().starts_with("h2 protocol error"))
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
