//! The emergency stop: `StopAll` aborts every running experiment (each target's faults
//! withdrawn at once) and refuses every start until `Resume`. The controller runs in-process;
//! the agent is played by the test on its stream, so what it receives is checked exactly.

mod support;

use std::time::Duration;

use faultline_controller::config::Leases;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use faultline_proto::v1::{
    CreateExperimentRequest, ExperimentState, GetExperimentRequest, Protocol, ResumeRequest,
    StartExperimentRequest, StopAllRequest, create_experiment_request,
};
use support::InProcess;
use support::fake_agent::FakeAgent;
use tonic::transport::Channel;

fn spec(name: &str, route: &str) -> CreateExperimentRequest {
    let yaml = format!(
        "apiVersion: faultline.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: {name}}}\n\
         spec:\n  targets: {{selector: {{matchLabels: {{app: shop}}}}}}\n  faults:\n    \
         - {{route: {route}, name: down, type: down}}\n  duration: 10m\n"
    );
    CreateExperimentRequest {
        spec: Some(create_experiment_request::Spec::SpecYaml(yaml)),
    }
}

async fn state(
    api: &mut ExperimentServiceClient<Channel>,
    name: &str,
) -> (ExperimentState, String) {
    let e = api
        .get(GetExperimentRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .experiment
        .unwrap();
    (e.state(), e.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_all_aborts_what_runs_and_refuses_starts_until_resume() {
    let controller = InProcess::start(
        "emergency-stop",
        Leases::new(Duration::from_secs(2), Duration::from_millis(500)).unwrap(),
        false,
    )
    .await;
    let channel = controller.channel().await;
    let mut agent = FakeAgent::connect(
        channel.clone(),
        "agent-a",
        &[("api", Protocol::Tcp), ("db", Protocol::Tcp)],
    )
    .await;
    assert!(agent.next_desired().await.faults.is_empty());
    let mut api = ExperimentServiceClient::new(channel);

    // Two experiments run, one on each route.
    for (name, route) in [("one", "api"), ("two", "db")] {
        api.create(spec(name, route)).await.unwrap();
        api.start(StartExperimentRequest { name: name.into() })
            .await
            .unwrap();
    }
    assert_eq!(agent.next_desired().await.faults.len(), 1);
    assert_eq!(agent.next_desired().await.faults.len(), 2);

    let stopped = api
        .stop_all(StopAllRequest {
            reason: "incident 42".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut aborted = stopped.aborted.clone();
    aborted.sort();
    assert_eq!(aborted, ["one", "two"]);
    assert!(stopped.since.is_some());
    // Both experiments' faults leave the agent in one desired state.
    assert!(agent.next_desired().await.faults.is_empty());
    for name in ["one", "two"] {
        assert_eq!(
            state(&mut api, name).await,
            (
                ExperimentState::Aborted,
                "emergency stop: incident 42".into()
            )
        );
    }

    // A third experiment may be created but not started.
    api.create(spec("three", "api")).await.unwrap();
    let refused = api
        .start(StartExperimentRequest {
            name: "three".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("emergency stop is in force (incident 42)")
            && refused.message().contains("faultline resume"),
        "{}",
        refused.message()
    );
    assert_eq!(state(&mut api, "three").await.0, ExperimentState::Pending);
    // A reason is required.
    let e = api
        .stop_all(StopAllRequest { reason: " ".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // Resume: the third starts.
    let resumed = api.resume(ResumeRequest {}).await.unwrap().into_inner();
    assert!(resumed.was_stopped);
    let started = api
        .start(StartExperimentRequest {
            name: "three".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.state(), ExperimentState::Running);
    assert_eq!(agent.next_desired().await.faults.len(), 1);
    assert!(
        !api.resume(ResumeRequest {})
            .await
            .unwrap()
            .into_inner()
            .was_stopped
    );
    drop(agent);
    controller.stop().await;
}
