//! `faultline.v1.AgentRegistry`: the agents the store has seen. On its own it lists them with
//! `connected = false` and generation 0; `hub::registry` wraps it with the hub's live view.

use faultline_proto::v1::agent_registry_server::AgentRegistry;
use faultline_proto::v1::{self, ListAgentsRequest, ListAgentsResponse};
use tonic::{Request, Response, Status};

use super::{convert, status};
use crate::store::{AgentRecord, StoreHandle};

/// The service: reads the store.
#[derive(Clone, Debug)]
pub struct RegistryApi {
    store: StoreHandle,
}

impl RegistryApi {
    pub fn new(store: StoreHandle) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl AgentRegistry for RegistryApi {
    async fn list(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        let match_labels = request.into_inner().match_labels;
        let mut records = self.store.agents().await.map_err(status::from_store)?;
        records.retain(|a| match_labels.iter().all(|(k, v)| a.labels.get(k) == Some(v)));
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Response::new(ListAgentsResponse {
            agents: records.into_iter().map(agent).collect(),
        }))
    }
}

fn agent(a: AgentRecord) -> v1::Agent {
    v1::Agent {
        routes: routes(&a.routes),
        last_seen: Some(convert::timestamp(a.last_seen)),
        labels: a.labels.into_iter().collect(),
        id: a.id,
        version: a.version,
        generation: 0,
        connected: false,
    }
}

/// The routes as the agent reported them: a JSON array of `{name, listen, upstream, protocol}`.
fn routes(json: &serde_json::Value) -> Vec<v1::Route> {
    let field = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_owned();
    json.as_array()
        .map(|routes| {
            routes
                .iter()
                .map(|r| v1::Route {
                    name: field(r, "name"),
                    listen: field(r, "listen"),
                    upstream: field(r, "upstream"),
                    protocol: match r["protocol"].as_str() {
                        Some("http") => v1::Protocol::Http,
                        Some("grpc") => v1::Protocol::Grpc,
                        Some("tcp") => v1::Protocol::Tcp,
                        Some("auto") => v1::Protocol::Auto,
                        _ => v1::Protocol::Unspecified,
                    } as i32,
                })
                .collect()
        })
        .unwrap_or_default()
}
