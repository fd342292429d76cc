//! The controller's gRPC API end to end: a server in-process on 127.0.0.1:0 over a temp data
//! dir, called with the generated tonic clients.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use faultline_controller::config::Config;
use faultline_controller::server::Server;
use faultline_controller::spec::Caps;
use faultline_proto::v1::agent_registry_client::AgentRegistryClient;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use faultline_proto::v1::{
    AbortExperimentRequest, CreateExperimentRequest, DeleteExperimentRequest, ExperimentEventKind,
    ExperimentState, GetExperimentRequest, ListAgentsRequest, ListExperimentsRequest,
    StartExperimentRequest, ValidateRequest, create_experiment_request, validate_request,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

// === support ===

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "faultline-api-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running controller: its channel, and how to stop it.
struct Controller {
    channel: Channel,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Controller {
    async fn start(data_dir: &Path, caps: Caps) -> Controller {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.to_owned(),
            caps,
        };
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        Controller {
            channel,
            stop,
            task,
        }
    }

    fn experiments(&self) -> ExperimentServiceClient<Channel> {
        ExperimentServiceClient::new(self.channel.clone())
    }

    /// Stops the server and waits until it has closed its store.
    async fn stop(self) {
        drop(self.channel);
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn spec(name: &str, duration: &str) -> String {
    format!(
        "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {{name: {name}}}
spec:
  targets: {{all: true}}
  faults: [{{route: r, type: down}}]
  duration: {duration}
"
    )
}

fn create_yaml(text: String) -> CreateExperimentRequest {
    CreateExperimentRequest {
        spec: Some(create_experiment_request::Spec::SpecYaml(text)),
    }
}

fn get(name: &str) -> GetExperimentRequest {
    GetExperimentRequest { name: name.into() }
}

// === tests ===

#[tokio::test]
async fn validate_reports_the_field_and_its_line() {
    let dir = TempDir::new("validate");
    let c = Controller::start(dir.path(), Caps::default()).await;
    let mut api = c.experiments();

    let ok = api
        .validate(ValidateRequest {
            spec: Some(validate_request::Spec::SpecYaml(spec("good", "5m"))),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.valid, "{ok:?}");
    assert!(ok.errors.is_empty());
    let canonical: serde_json::Value = serde_json::from_str(&ok.spec).unwrap();
    assert_eq!(canonical["metadata"]["name"], "good");
    assert_eq!(canonical["spec"]["duration"], "5m");
    assert_eq!(canonical["spec"]["targets"]["mode"], "all");

    let bad = api
        .validate(ValidateRequest {
            spec: Some(validate_request::Spec::SpecYaml(spec("bad", "5x"))),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!bad.valid);
    assert_eq!(bad.errors.len(), 1, "{bad:?}");
    assert_eq!(bad.errors[0].path, "spec.duration");
    assert_eq!(bad.errors[0].line, Some(7));
    assert!(bad.errors[0].column.is_some());
    assert!(bad.spec.is_empty());

    let none = api
        .validate(ValidateRequest { spec: None })
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::InvalidArgument);
    c.stop().await;
}

#[tokio::test]
async fn create_get_list_and_the_errors_of_each() {
    let dir = TempDir::new("create");
    let caps = Caps::parse("maxDuration: 1h\n").unwrap();
    let c = Controller::start(dir.path(), caps).await;
    let mut api = c.experiments();

    let created = api
        .create(create_yaml(spec("first", "5m")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.name, "first");
    assert_eq!(created.state, ExperimentState::Pending as i32);
    assert!(created.created_at.is_some());
    assert!(created.started_at.is_none() && created.ended_at.is_none());
    let stored: serde_json::Value = serde_json::from_str(&created.spec).unwrap();
    assert_eq!(
        stored["spec"]["seed"], created.seed,
        "the chosen seed is recorded"
    );

    let seeded = spec("second", "5m").replace("duration: 5m", "duration: 5m\n  seed: 42");
    let second = api.create(create_yaml(seeded)).await.unwrap().into_inner();
    assert_eq!(second.seed, 42);

    let got = api.get(get("first")).await.unwrap().into_inner();
    assert_eq!(got.experiment.as_ref(), Some(&created));
    assert_eq!(got.events.len(), 1);
    assert_eq!(got.events[0].sequence, 1);
    assert_eq!(got.events[0].kind, ExperimentEventKind::Created as i32);
    assert_eq!(got.events[0].state, ExperimentState::Pending as i32);

    let all = api
        .list(ListExperimentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = all.experiments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["second", "first"], "newest first");
    let running = api
        .list(ListExperimentsRequest {
            states: vec![ExperimentState::Running as i32],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(running.experiments.is_empty());

    let dup = api
        .create(create_yaml(spec("first", "1m")))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");

    let bad = api
        .create(create_yaml(spec("bad", "5x")))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("spec.duration"), "{}", bad.message());

    let capped = api
        .create(create_yaml(spec("long", "2h")))
        .await
        .unwrap_err();
    assert_eq!(capped.code(), Code::FailedPrecondition);
    assert!(
        capped.message().contains("maxDuration"),
        "{}",
        capped.message()
    );

    let missing = api.get(get("nope")).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let start = api
        .start(StartExperimentRequest {
            name: "first".into(),
        })
        .await
        .unwrap_err();
    // No agent is connected: nothing to target.
    let why = start.message();
    assert_eq!(start.code(), Code::FailedPrecondition, "{why}");
    c.stop().await;
}

#[tokio::test]
async fn abort_then_delete_and_what_is_refused() {
    let dir = TempDir::new("abort");
    let c = Controller::start(dir.path(), Caps::default()).await;
    let mut api = c.experiments();
    api.create(create_yaml(spec("doomed", "5m"))).await.unwrap();

    let refused = api
        .delete(DeleteExperimentRequest {
            name: "doomed".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    let no_reason = api
        .abort(AbortExperimentRequest {
            name: "doomed".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);

    let aborted = api
        .abort(AbortExperimentRequest {
            name: "doomed".into(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(aborted.state, ExperimentState::Aborted as i32);
    assert_eq!(aborted.reason, "changed my mind");
    assert!(aborted.ended_at.is_some());

    let events = api.get(get("doomed")).await.unwrap().into_inner().events;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].sequence, 2);
    assert_eq!(events[1].kind, ExperimentEventKind::Aborted as i32);
    assert_eq!(events[1].state, ExperimentState::Aborted as i32);

    let again = api
        .abort(AbortExperimentRequest {
            name: "doomed".into(),
            reason: "twice".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    api.delete(DeleteExperimentRequest {
        name: "doomed".into(),
    })
    .await
    .unwrap();
    let gone = api.get(get("doomed")).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let gone = api
        .delete(DeleteExperimentRequest {
            name: "doomed".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    c.stop().await;
}

#[tokio::test]
async fn health_serving_reflection_and_registry() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha;

    let dir = TempDir::new("meta");
    let c = Controller::start(dir.path(), Caps::default()).await;

    let mut health = HealthClient::new(c.channel.clone());
    for service in [
        "faultline.v1.ExperimentService",
        "faultline.v1.AgentRegistry",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }

    let mut reflection = ServerReflectionClient::new(c.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "faultline.v1.ExperimentService",
        "faultline.v1.AgentRegistry",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("faultline.testing")),
        "{names:?}"
    );

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(c.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("{answer:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "faultline.v1.ExperimentService")
    );

    let agents = AgentRegistryClient::new(c.channel.clone())
        .list(ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(agents.agents.is_empty());
    c.stop().await;
}

#[tokio::test]
async fn a_restart_on_the_same_data_dir_keeps_the_experiments() {
    let dir = TempDir::new("restart");
    let c = Controller::start(dir.path(), Caps::default()).await;
    let created = c
        .experiments()
        .create(create_yaml(spec("durable", "5m")))
        .await
        .unwrap()
        .into_inner();
    c.stop().await;

    let c = Controller::start(dir.path(), Caps::default()).await;
    let got = c
        .experiments()
        .get(get("durable"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.experiment,
        Some(created),
        "pending stays pending, seed and spec kept"
    );
    c.stop().await;
}

/// Twenty-two malformed specs sent to Create: each is refused with the field named, and the
/// controller stays up and unchanged (nothing created; a valid spec still goes through).
#[tokio::test]
async fn malformed_specs_are_refused_naming_the_field_and_change_nothing() {
    let dir = TempDir::new("malformed");
    let caps = Caps::parse("maxDuration: 1h\n").unwrap();
    let c = Controller::start(dir.path(), caps).await;
    let mut api = c.experiments();
    let good = spec("ok", "5m");
    let cases: Vec<(String, &str)> = vec![
        ("apiVersion: [unclosed".into(), ""),
        (good.replace("kind: Experiment", "kind: Experiment\nextra: 1"), "extra"),
        (good.replace("apiVersion: faultline.dev/v1alpha1", "apiVersion: faultline.dev/v9"), "apiVersion"),
        (good.replace("kind: Experiment", "kind: Pod"), "kind"),
        (good.replace("metadata: {name: ok}", "metadata: {}"), "metadata.name"),
        (good.replace("duration: 5m", "duration: soon"), "spec.duration"),
        (good.replace("duration: 5m", "duration: 2h"), "spec.duration"),
        (good.replace("targets: {all: true}", "targets: {}"), "spec.targets"),
        (good.replace("targets: {all: true}", "targets: {all: true, mode: percent, value: 101}"), "spec.targets.value"),
        (good.replace("targets: {all: true}", "targets: {all: true, mode: count, value: 0}"), "spec.targets.value"),
        (good.replace("targets: {all: true}", "targets: {selector: {matchExpressions: [{key: app, operator: Near, values: [x]}]}}"), "spec.targets.selector.matchExpressions[0].operator"),
        (good.replace("targets: {all: true}", "targets: {selector: {matchExpressions: [{key: app, operator: In}]}}"), "spec.targets.selector.matchExpressions[0]"),
        (good.replace("type: down", "type: meteor"), "spec.faults[0].type"),
        (good.replace("{route: r, type: down}", "{route: r, type: latency, attributes: {latency: -5}}"), "spec.faults[0].attributes.latency"),
        (good.replace("{route: r, type: down}", "{route: r, type: http_abort, percentage: 101, attributes: {status: 503}}"), "spec.faults[0].percentage"),
        (good.replace("{route: r, type: down}", "{route: r, type: http_abort, attributes: {status: 99}}"), "spec.faults[0].attributes.status"),
        (good.replace("{route: r, type: down}", "{route: r, type: http_abort, attributes: {status: 503}, match: {path: {regex: '('}}}"), "spec.faults[0].match.path.regex"),
        (good.replace("{route: r, type: down}", "{type: down}"), "spec.faults[0].route"),
        (good.replace("{route: r, type: down}", "{route: r, type: down}, {route: r, type: down}"), "spec.faults[1]"),
        (good.replace("faults: [{route: r, type: down}]", "faults: []"), "spec.faults"),
        (good.replace("duration: 5m", "duration: 5m\n  guards: [{name: g}]"), "spec.guards[0]"),
        (good.replace("kind: Experiment", "kind: Experiment\nkind: Experiment"), "kind"),
    ];
    assert!(cases.len() >= 20);
    for (text, field) in &cases {
        let status = api
            .create(create_yaml(text.clone()))
            .await
            .expect_err(&format!("accepted: {text}"));
        assert!(
            matches!(
                status.code(),
                Code::InvalidArgument | Code::FailedPrecondition
            ),
            "{text}: {status:?}"
        );
        assert!(
            status.message().contains(field),
            "{text}: the message does not name {field:?}: {}",
            status.message()
        );
    }
    let listed = api
        .list(ListExperimentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.experiments.is_empty(), "{listed:?}");
    let created = api.create(create_yaml(good)).await.unwrap().into_inner();
    assert_eq!(created.name, "ok");
    c.stop().await;
}
