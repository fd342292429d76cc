//! `ExperimentService.Watch` and the `/metrics` endpoint end to end: a controller in-process on
//! 127.0.0.1:0 (gRPC and metrics) over a temp data dir, an agent in-process dialling it.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use faultline_agent::app::Agent;
use faultline_agent::config::{AgentConfig, ControllerConfig};
use faultline_agent::route::{RouteSpec, Upstream};
use faultline_controller::config::Leases;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use faultline_proto::v1::{
    AbortExperimentRequest, CreateExperimentRequest, ExperimentEvent, ExperimentEventKind,
    ExperimentState, StartExperimentRequest, WatchExperimentRequest, create_experiment_request,
};
use support::{InProcess, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Streaming;
use tonic::transport::Channel;

// === support ===

/// A controller serving gRPC and `/metrics` on free ports.
struct Controller {
    addr: SocketAddr,
    metrics: SocketAddr,
    api: ExperimentServiceClient<Channel>,
    inner: InProcess,
}

impl Controller {
    async fn start(tag: &str) -> Controller {
        let inner = InProcess::start(tag, Leases::default(), true).await;
        Controller {
            addr: inner.addr,
            metrics: inner.metrics.expect("metrics were asked for"),
            api: ExperimentServiceClient::new(inner.channel().await),
            inner,
        }
    }

    async fn stop(self) {
        drop(self.api);
        self.inner.stop().await;
    }

    async fn watch(&self, name: &str, after_sequence: u64) -> Streaming<ExperimentEvent> {
        self.api
            .clone()
            .watch(WatchExperimentRequest {
                name: name.into(),
                after_sequence,
            })
            .await
            .expect("watch")
            .into_inner()
    }

    async fn abort(&self, name: &str) {
        self.api
            .clone()
            .abort(AbortExperimentRequest {
                name: name.into(),
                reason: "test".into(),
            })
            .await
            .expect("abort");
    }

    /// `GET /metrics`: the status line and the body.
    async fn scrape(&self) -> (String, String) {
        let mut s = TcpStream::connect(self.metrics).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    }
}

fn create(name: &str) -> CreateExperimentRequest {
    let yaml = format!(
        "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {{name: {name}}}
spec:
  targets: {{all: true}}
  faults: [{{route: echo, type: down}}]
  duration: 5m
"
    );
    CreateExperimentRequest {
        spec: Some(create_experiment_request::Spec::SpecYaml(yaml)),
    }
}

/// The next event, within 5 s.
async fn next(stream: &mut Streaming<ExperimentEvent>) -> Option<ExperimentEvent> {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an event or the end within 5 s")
        .expect("no error")
}

fn kind(e: &ExperimentEvent) -> ExperimentEventKind {
    ExperimentEventKind::try_from(e.kind).unwrap()
}

// === tests ===

#[tokio::test]
async fn watch_sends_existing_events_then_new_ones_and_ends_after_abort() {
    let c = Controller::start("abort").await;
    c.api.clone().create(create("w1")).await.unwrap();

    let mut events = c.watch("w1", 0).await;
    let created = next(&mut events).await.expect("created");
    assert_eq!(kind(&created), ExperimentEventKind::Created);
    assert_eq!(created.sequence, 1);
    assert_eq!(created.experiment, "w1");
    assert_eq!(created.state, ExperimentState::Pending as i32);

    c.abort("w1").await;
    let aborted = next(&mut events).await.expect("aborted");
    assert_eq!(kind(&aborted), ExperimentEventKind::Aborted);
    assert_eq!(aborted.sequence, 2);
    assert_eq!(aborted.state, ExperimentState::Aborted as i32);
    assert!(next(&mut events).await.is_none(), "the stream ends");
    c.stop().await;
}

#[tokio::test]
async fn watch_after_a_sequence_skips_the_earlier_events() {
    let c = Controller::start("after").await;
    c.api.clone().create(create("w2")).await.unwrap();
    c.abort("w2").await;

    let mut events = c.watch("w2", 1).await;
    let first = next(&mut events).await.expect("an event");
    assert_eq!(first.sequence, 2);
    assert_eq!(kind(&first), ExperimentEventKind::Aborted);
    assert!(
        next(&mut events).await.is_none(),
        "finished: the stream ends"
    );

    // Past the end of a finished timeline: nothing, and the stream still ends.
    let mut events = c.watch("w2", 2).await;
    assert!(next(&mut events).await.is_none());
    c.stop().await;
}

#[tokio::test]
async fn watch_of_an_unknown_experiment_is_not_found() {
    let c = Controller::start("unknown").await;
    let err = c
        .api
        .clone()
        .watch(WatchExperimentRequest {
            name: "nope".into(),
            after_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    c.stop().await;
}

#[tokio::test]
async fn an_open_watch_does_not_hold_the_controller_at_shutdown() {
    let c = Controller::start("shutdown").await;
    c.api.clone().create(create("w3")).await.unwrap();
    let mut events = c.watch("w3", 0).await;
    assert_eq!(
        kind(&next(&mut events).await.unwrap()),
        ExperimentEventKind::Created
    );
    c.stop().await;
}

#[tokio::test]
async fn metrics_show_the_agent_experiments_aborts_and_fanout() {
    let c = Controller::start("metrics").await;
    let (status, body) = c.scrape().await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    for family in [
        "# TYPE faultline_controller_agents_connected gauge",
        "# TYPE faultline_controller_experiments gauge",
        "# TYPE faultline_controller_aborts_total counter",
        "# TYPE faultline_controller_desired_state_fanout_seconds histogram",
    ] {
        assert!(body.contains(family), "{family} missing:\n{body}");
    }
    assert!(
        body.contains("faultline_controller_agents_connected 0\n"),
        "{body}"
    );
    assert!(
        body.contains("faultline_controller_aborts_total{reason=\"controller restarted\"} 0\n"),
        "{body}"
    );

    let config = AgentConfig {
        routes: vec![RouteSpec::tcp(
            "echo",
            "127.0.0.1:0",
            Upstream::Addr("127.0.0.1:9".parse().unwrap()),
        )],
        controller: Some(
            ControllerConfig::new(&format!("http://{}", c.addr), "agent-m", BTreeMap::new())
                .unwrap(),
        ),
        ..AgentConfig::embedded()
    };
    let agent = Agent::start(&config).await.expect("agent starts");
    eventually(Duration::from_secs(10), "the agent counted", || async {
        let (_, body) = c.scrape().await;
        body.contains("faultline_controller_agents_connected 1\n")
            .then_some(())
    })
    .await;

    // Start (fan-out to the agent, acknowledged), then abort (a second fan-out).
    c.api.clone().create(create("m1")).await.unwrap();
    let mut events = c.watch("m1", 1).await;
    c.api
        .clone()
        .start(StartExperimentRequest { name: "m1".into() })
        .await
        .expect("start");
    let mut kinds = Vec::new();
    while kinds.last() != Some(&ExperimentEventKind::Started) {
        kinds.push(kind(&next(&mut events).await.expect("an event")));
    }
    c.abort("m1").await;
    while let Some(e) = next(&mut events).await {
        kinds.push(kind(&e));
    }
    assert_eq!(
        kinds.last(),
        Some(&ExperimentEventKind::Aborted),
        "{kinds:?}"
    );

    let body = eventually(
        Duration::from_secs(10),
        "both fan-outs acknowledged",
        || async {
            let (_, body) = c.scrape().await;
            body.contains("faultline_controller_desired_state_fanout_seconds_count 2\n")
                .then_some(body)
        },
    )
    .await;
    assert!(
        body.contains("faultline_controller_aborts_total{reason=\"manual\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("faultline_controller_experiments{state=\"aborted\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("faultline_controller_experiments{state=\"running\"} 0\n"),
        "{body}"
    );

    agent.shutdown(Duration::from_secs(1)).await;
    c.stop().await;
}
