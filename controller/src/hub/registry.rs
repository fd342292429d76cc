//! `AgentRegistry.List` with the hub's live view: the store's agents, each marked connected
//! (and with its current generation) when the hub holds its stream.

use faultline_proto::v1::agent_registry_server::AgentRegistry;
use faultline_proto::v1::{ListAgentsRequest, ListAgentsResponse};
use tonic::{Request, Response, Status};

use super::Hub;
use crate::api::RegistryApi;

/// The store's registry, overlaid with who is connected now.
#[derive(Clone, Debug)]
pub struct LiveRegistry {
    stored: RegistryApi,
    hub: Hub,
}

impl LiveRegistry {
    pub fn new(stored: RegistryApi, hub: Hub) -> Self {
        Self { stored, hub }
    }
}

#[tonic::async_trait]
impl AgentRegistry for LiveRegistry {
    async fn list(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        let mut response = self.stored.list(request).await?;
        let live = self.hub.agents().await;
        for agent in &mut response.get_mut().agents {
            if let Some(generation) = live.get(&agent.id) {
                agent.connected = true;
                agent.generation = *generation;
            }
        }
        Ok(response)
    }
}
