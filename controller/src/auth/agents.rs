//! `AgentService` behind the [`Gate`]: with TLS, an agent's stream opens only with a client
//! certificate of the agent role, and the service then takes only the agent ids that
//! certificate covers ([`super::Principal::may_be_agent`], checked on the hello, which the gate
//! does not see). Refusals are logged, not audited: the audit log is for operators' actions, and
//! a misconfigured agent redials forever.

use faultline_proto::v1::AgentMessage;
use faultline_proto::v1::agent_service_server::AgentService;
use tonic::{Request, Response, Status, Streaming};

use super::Gate;

/// `inner` with every stream through `gate`.
#[derive(Clone, Debug)]
pub struct GuardedAgents<S> {
    inner: S,
    gate: Gate,
}

impl<S> GuardedAgents<S> {
    pub fn new(inner: S, gate: Gate) -> Self {
        GuardedAgents { inner, gate }
    }
}

#[tonic::async_trait]
impl<S: AgentService> AgentService for GuardedAgents<S> {
    type ConnectStream = S::ConnectStream;

    async fn connect(
        &self,
        mut request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let principal = self.gate.agent(&request)?;
        request.extensions_mut().insert(principal);
        self.inner.connect(request).await
    }
}
