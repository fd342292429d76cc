//! `faultline.v1.AgentService.Connect`: one stream per agent.
//!
//! The first message must be a hello; it becomes a [`targets::AgentInfo`] here (the wire
//! stops at this boundary), is recorded in the store, and registers the agent with the hub,
//! which answers through the stream's bounded queue. A task per stream reads what follows
//! (acknowledgements; heartbeats, whose SLIs become domain values here and go to the hub's
//! guards; local guard trips) and tells the hub when the stream ends. `last seen` is written at
//! hello, then refreshed for all connected agents at once by the hub.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::SystemTime;

use faultline_agent::metrics::http::SliSnapshot;
use faultline_agent::route::Protocol;
use faultline_proto::v1::agent_service_server::AgentService;
use faultline_proto::v1::{self, AgentMessage, ControllerMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::state::{Hub, SESSION_QUEUE};
use crate::auth::Principal;
use crate::guard::RouteReport;
use crate::store::StoreHandle;
use crate::targets::AgentInfo;

/// The service: the hub and the store.
#[derive(Clone, Debug)]
pub struct AgentApi {
    hub: Hub,
    store: StoreHandle,
}

impl AgentApi {
    pub fn new(hub: Hub, store: StoreHandle) -> Self {
        Self { hub, store }
    }
}

/// A heartbeat's route SLIs as domain values; a malformed one is logged and left out (the
/// guards lose one report, the stream goes on).
fn route_slis(agent: &str, slis: Vec<v1::RouteSli>) -> Vec<RouteReport> {
    let convert = |sli: Option<v1::SliSnapshot>| sli.map(SliSnapshot::try_from).transpose();
    slis.into_iter()
        .filter_map(|r| {
            let converted = (|| {
                Ok::<_, faultline_agent::control::convert::ConvertError>(RouteReport {
                    route: r.route.clone(),
                    all: convert(r.sli)?.unwrap_or_default(),
                    treatment: convert(r.treatment)?,
                    control: convert(r.control)?,
                })
            })();
            match converted {
                Ok(report) => Some(report),
                Err(e) => {
                    tracing::warn!(%agent, route = %r.route, error = %e, "malformed route SLI");
                    None
                }
            }
        })
        .collect()
}

/// The hello as a domain value, with the routes as the store records them.
fn agent_info(hello: &v1::Hello) -> Result<(AgentInfo, serde_json::Value), Status> {
    if hello.agent_id.is_empty() {
        return Err(Status::invalid_argument(
            "hello.agent_id: must not be empty",
        ));
    }
    let mut routes = BTreeMap::new();
    let mut json = Vec::new();
    for (i, r) in hello.routes.iter().enumerate() {
        let (protocol, name) = match v1::Protocol::try_from(r.protocol) {
            Ok(v1::Protocol::Tcp) => (Protocol::Tcp, "tcp"),
            Ok(v1::Protocol::Http) => (Protocol::Http, "http"),
            Ok(v1::Protocol::Grpc) => (Protocol::Grpc, "grpc"),
            Ok(v1::Protocol::Auto) => (Protocol::Auto, "auto"),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "hello.routes[{i}].protocol: unknown protocol {}",
                    r.protocol
                )));
            }
        };
        routes.insert(r.name.clone(), protocol);
        json.push(serde_json::json!({
            "name": r.name, "listen": r.listen, "upstream": r.upstream, "protocol": name,
        }));
    }
    let info = AgentInfo {
        id: hello.agent_id.clone(),
        labels: hello.labels.clone().into_iter().collect(),
        routes,
    };
    Ok((info, serde_json::Value::Array(json)))
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ConnectStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        // Put there by the auth gate; absent when the service runs without one.
        let principal = request.extensions().get::<Principal>().cloned();
        let peer = request.remote_addr();
        let mut inbound = request.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(AgentMessage {
                body: Some(v1::agent_message::Body::Hello(hello)),
            })) => hello,
            Some(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "the first message must be a hello",
                ));
            }
            Some(Err(e)) => return Err(e),
            None => return Err(Status::invalid_argument("the stream ended before a hello")),
        };
        let (info, routes) = agent_info(&hello)?;
        if let Some(p) = principal
            && !p.may_be_agent(&info.id)
        {
            tracing::warn!(?peer, principal = %p, agent = %info.id, "agent stream refused");
            return Err(Status::permission_denied(format!(
                "{p} may not register as agent {:?}: an agent certificate named NAME covers the \
                 agent id NAME and the ids under NAME/",
                info.id
            )));
        }
        let id = info.id.clone();
        self.store
            .record_agent_seen(
                id.clone(),
                info.labels.clone(),
                routes.clone(),
                hello.version.clone(),
                SystemTime::now(),
            )
            .await
            .map_err(|e| Status::unavailable(format!("store: {e}")))?;

        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let session = self
            .hub
            .hello(info.clone(), tx)
            .await
            .ok_or_else(|| Status::unavailable("the controller is shutting down"))?;

        // Ends with the agent's half of the stream; the hub ending the session drops the
        // sender, which ends the response and with it the agent's half.
        let hub = self.hub.clone();
        tokio::spawn(async move {
            loop {
                let msg = match inbound.next().await {
                    Some(Ok(msg)) => msg,
                    Some(Err(status)) => {
                        // A transport error ends the stream (an HTTP/2 GOAWAY ends every
                        // stream of its connection at once): worth seeing in the log.
                        tracing::warn!(agent = %id, error = %status, "agent stream failed");
                        break;
                    }
                    None => break,
                };
                match msg.body {
                    Some(v1::agent_message::Body::Ack(ack)) => {
                        hub.ack(id.clone(), ack.generation, ack.error).await
                    }
                    Some(v1::agent_message::Body::Heartbeat(beat)) => {
                        let slis = route_slis(&id, beat.route_slis);
                        hub.heartbeat(id.clone(), slis, beat.rule_counts).await;
                    }
                    Some(v1::agent_message::Body::LocalTrip(trip)) => {
                        hub.local_trip(id.clone(), trip).await
                    }
                    _ => {}
                }
            }
            hub.gone(id, session).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, protocol: i32) -> v1::Route {
        v1::Route {
            name: name.into(),
            listen: "127.0.0.1:1".into(),
            upstream: "127.0.0.1:2".into(),
            protocol,
        }
    }

    #[test]
    fn a_hello_becomes_agent_info_and_stored_routes() {
        let hello = v1::Hello {
            agent_id: "a1".into(),
            labels: [("app".to_owned(), "shop".to_owned())].into(),
            routes: vec![
                route("db", v1::Protocol::Tcp as i32),
                route("api", v1::Protocol::Http as i32),
                route("outbound", v1::Protocol::Auto as i32),
            ],
            version: "1".into(),
        };
        let (info, json) = agent_info(&hello).unwrap();
        assert_eq!(info.id, "a1");
        assert_eq!(info.labels["app"], "shop");
        assert_eq!(info.routes["db"], Protocol::Tcp);
        assert_eq!(info.routes["api"], Protocol::Http);
        assert_eq!(info.routes["outbound"], Protocol::Auto);
        assert_eq!(json[1]["protocol"], "http");
        assert_eq!(json[2]["protocol"], "auto");
        assert_eq!(json[0]["listen"], "127.0.0.1:1");
    }

    #[test]
    fn a_bad_hello_names_the_field() {
        let mut hello = v1::Hello {
            agent_id: "a1".into(),
            routes: vec![route("db", 9)],
            ..Default::default()
        };
        let err = agent_info(&hello).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().starts_with("hello.routes[0].protocol"),
            "{}",
            err.message()
        );
        hello.agent_id.clear();
        let err = agent_info(&hello).unwrap_err();
        assert!(
            err.message().starts_with("hello.agent_id"),
            "{}",
            err.message()
        );
    }
}
