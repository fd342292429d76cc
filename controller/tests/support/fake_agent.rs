//! An agent played by the test itself on an `AgentService.Connect` stream, message by message:
//! it says hello with the routes given, acknowledges each desired state, and sends whatever
//! the test tells it to.

use std::time::Duration;

use faultline_proto::v1::agent_service_client::AgentServiceClient;
use faultline_proto::v1::{
    Ack, AgentMessage, ControllerMessage, DesiredState, Hello, Protocol, Route, agent_message,
    controller_message,
};
use tokio::sync::mpsc;
use tonic::Streaming;
use tonic::transport::Channel;

/// A connected fake agent.
pub struct FakeAgent {
    tx: mpsc::Sender<AgentMessage>,
    inbound: Streaming<ControllerMessage>,
}

impl FakeAgent {
    /// Connects as `id` with the label `app=shop` and `routes` (name, protocol).
    pub async fn connect(channel: Channel, id: &str, routes: &[(&str, Protocol)]) -> FakeAgent {
        let (tx, rx) = mpsc::channel::<AgentMessage>(16);
        let hello = Hello {
            agent_id: id.into(),
            labels: [("app".to_owned(), "shop".to_owned())].into(),
            routes: routes
                .iter()
                .map(|(name, protocol)| Route {
                    name: (*name).into(),
                    listen: "127.0.0.1:1".into(),
                    upstream: "127.0.0.1:2".into(),
                    protocol: *protocol as i32,
                })
                .collect(),
            version: "test".into(),
        };
        tx.send(AgentMessage {
            body: Some(agent_message::Body::Hello(hello)),
        })
        .await
        .unwrap();
        let inbound = AgentServiceClient::new(channel)
            .connect(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        FakeAgent { tx, inbound }
    }

    /// Sends one message.
    pub async fn send(&self, body: agent_message::Body) {
        self.tx
            .send(AgentMessage { body: Some(body) })
            .await
            .unwrap();
    }

    /// The next desired state, acknowledged (heartbeats skipped).
    pub async fn next_desired(&mut self) -> DesiredState {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.inbound.message())
                .await
                .expect("a message within 10 s")
                .unwrap()
                .expect("the stream is open");
            if let Some(controller_message::Body::DesiredState(d)) = msg.body {
                let ack = Ack {
                    generation: d.generation,
                    applied_faults: d.faults.len() as u32,
                    error: None,
                };
                self.send(agent_message::Body::Ack(ack)).await;
                return d;
            }
        }
    }
}
