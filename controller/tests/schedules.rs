//! Schedules end to end, on a clock the test moves: a cron template fires at its instants,
//! `Forbid` skips a fire while the previous run still runs, finished runs beyond the history
//! limit are deleted, `startAt` fires once, and an armed schedule survives a restart.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use faultline_controller::config::Config;
use faultline_controller::schedule::ManualClock;
use faultline_controller::server::Server;
use faultline_proto::v1::experiment_service_client::ExperimentServiceClient;
use faultline_proto::v1::{
    AbortExperimentRequest, CreateExperimentRequest, Experiment, ExperimentEventKind,
    ExperimentState, GetExperimentRequest, GetExperimentResponse, Protocol, StartExperimentRequest,
    create_experiment_request,
};
use serde_json::Value;
use support::fake_agent::FakeAgent;
use support::{TempDir, eventually};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

const WITHIN: Duration = Duration::from_secs(10);

/// A controller on `data_dir` whose schedules fire by `clock`.
struct Controller {
    channel: Channel,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Controller {
    async fn start(data_dir: &Path, clock: Arc<ManualClock>) -> Controller {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.to_owned(),
            caps: Default::default(),
        };
        let server = Server::bind(config).await.expect("bind").with_clock(clock);
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

    fn api(&self) -> ExperimentServiceClient<Channel> {
        ExperimentServiceClient::new(self.channel.clone())
    }

    async fn stop(self) {
        drop(self.channel);
        let _ = self.stop.send(());
        tokio::time::timeout(WITHIN, self.task)
            .await
            .expect("the controller stops")
            .unwrap();
    }
}

/// A controller on a fresh data dir, its clock at 08:58 UTC on Monday 2026-03-02.
async fn fresh(tag: &str) -> (TempDir, Arc<ManualClock>, Controller) {
    let dir = TempDir::new(tag);
    let clock = Arc::new(ManualClock::new(at("2026-03-02T08:58:00Z")));
    let c = Controller::start(dir.path(), clock.clone()).await;
    (dir, clock, c)
}

fn at(rfc3339: &str) -> SystemTime {
    SystemTime::from(chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap())
}

/// A template on route `r` of every agent.
fn template(name: &str, schedule: &str, duration: &str) -> CreateExperimentRequest {
    let yaml = format!(
        "\
apiVersion: faultline.dev/v1alpha1
kind: Experiment
metadata: {{name: {name}}}
spec:
  targets: {{all: true}}
  faults: [{{route: r, type: down}}]
  duration: {duration}
  schedule: {schedule}
"
    );
    CreateExperimentRequest {
        spec: Some(create_experiment_request::Spec::SpecYaml(yaml)),
    }
}

/// Creates the template and starts it (which arms its schedule); answers what Start did.
async fn arm_template(
    api: &mut ExperimentServiceClient<Channel>,
    name: &str,
    schedule: &str,
    duration: &str,
) -> Experiment {
    api.create(template(name, schedule, duration))
        .await
        .unwrap();
    start(api, name).await.unwrap()
}

async fn start(
    api: &mut ExperimentServiceClient<Channel>,
    name: &str,
) -> Result<Experiment, tonic::Status> {
    api.start(StartExperimentRequest { name: name.into() })
        .await
        .map(|r| r.into_inner())
}

async fn get(
    api: &mut ExperimentServiceClient<Channel>,
    name: &str,
) -> Result<GetExperimentResponse, tonic::Status> {
    api.get(GetExperimentRequest { name: name.into() })
        .await
        .map(|r| r.into_inner())
}

async fn state(api: &mut ExperimentServiceClient<Channel>, name: &str) -> Option<ExperimentState> {
    Some(get(api, name).await.ok()?.experiment?.state())
}

/// The template's handled fires, in order: `(fireAt, "run NAME" | "skipped: REASON")`.
async fn fires(
    api: &mut ExperimentServiceClient<Channel>,
    template: &str,
) -> Vec<(String, String)> {
    get(api, template)
        .await
        .unwrap()
        .events
        .iter()
        .filter_map(|ev| {
            let d = serde_json::from_str::<Value>(&ev.detail_json).ok()?;
            let fire_at = d["fireAt"].as_str()?.to_owned();
            // Each fire is on the wire with its own kind.
            let what = match ev.kind() {
                ExperimentEventKind::ScheduleFired => format!("run {}", d["run"].as_str()?),
                ExperimentEventKind::ScheduleSkipped => {
                    format!("skipped: {}", d["reason"].as_str()?)
                }
                other => panic!("an event with a fireAt is {other:?}"),
            };
            Some((fire_at, what))
        })
        .collect()
}

/// Waits until the template has handled `n` fires; answers them.
async fn wait_fires(
    api: &ExperimentServiceClient<Channel>,
    template: &str,
    n: usize,
) -> Vec<(String, String)> {
    eventually(WITHIN, &format!("{template} handled {n} fires"), || {
        let mut api = api.clone();
        async move { Some(fires(&mut api, template).await).filter(|f| f.len() >= n) }
    })
    .await
}

async fn abort(api: &mut ExperimentServiceClient<Channel>, name: &str) {
    api.abort(AbortExperimentRequest {
        name: name.into(),
        reason: "test".into(),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_schedule_fires_at_its_instants_and_forbid_skips_an_overlap() {
    let (_dir, clock, c) = fresh("schedule-cron").await;
    let mut agent = FakeAgent::connect(c.channel.clone(), "agent-a", &[("r", Protocol::Tcp)]).await;
    assert!(agent.next_desired().await.faults.is_empty());
    let mut api = c.api();

    // Each run lasts an hour: longer than the five minutes between fires.
    let started = arm_template(&mut api, "gameday", "{cron: \"*/5 * * * *\"}", "1h").await;
    assert_eq!(
        started.state(),
        ExperimentState::Pending,
        "a template stays pending"
    );
    let spec: Value = serde_json::from_str(&started.spec).unwrap();
    assert_eq!(
        spec["spec"]["schedule"],
        serde_json::json!({
            "cron": "*/5 * * * *", "timeZone": "UTC",
            "concurrencyPolicy": "Forbid", "historyLimit": 10,
        }),
        "defaults filled in"
    );
    let again = start(&mut api, "gameday").await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    // 09:00: the first run starts, with the template's faults and without its schedule.
    clock.set(at("2026-03-02T09:00:00Z"));
    let fired = wait_fires(&api, "gameday", 1).await;
    assert_eq!(
        fired,
        [(
            "2026-03-02T09:00:00.000Z".into(),
            "run gameday-202603020900".into()
        )]
    );
    eventually(WITHIN, "the 09:00 run is running", || {
        let mut api = api.clone();
        async move {
            (state(&mut api, "gameday-202603020900").await == Some(ExperimentState::Running))
                .then_some(())
        }
    })
    .await;
    assert_eq!(agent.next_desired().await.faults.len(), 1);
    let run = get(&mut api, "gameday-202603020900").await.unwrap();
    let run_spec: Value = serde_json::from_str(&run.experiment.unwrap().spec).unwrap();
    assert_eq!(run_spec["spec"].get("schedule"), None);
    assert_eq!(run_spec["spec"]["duration"], "1h");

    // 09:05: the 09:00 run still runs, so Forbid skips this fire.
    clock.set(at("2026-03-02T09:05:00Z"));
    let fired = wait_fires(&api, "gameday", 2).await;
    assert_eq!(fired[1].0, "2026-03-02T09:05:00.000Z");
    assert!(
        fired[1]
            .1
            .starts_with("skipped: run \"gameday-202603020900\" is still running"),
        "{fired:?}"
    );
    let missing = get(&mut api, "gameday-202603020905").await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // The run ends; 09:10 fires again.
    abort(&mut api, "gameday-202603020900").await;
    clock.set(at("2026-03-02T09:10:00Z"));
    let fired = wait_fires(&api, "gameday", 3).await;
    assert_eq!(
        fired[2],
        (
            "2026-03-02T09:10:00.000Z".into(),
            "run gameday-202603020910".into()
        )
    );

    // Aborting the template disarms its schedule.
    abort(&mut api, "gameday").await;
    eventually(WITHIN, "the schedule is disarmed", || {
        let mut api = api.clone();
        async move {
            let events = get(&mut api, "gameday").await.ok()?.events;
            events
                .iter()
                .any(|e| {
                    e.kind() == ExperimentEventKind::ScheduleDisarmed
                        && e.detail_json.contains("the template is aborted")
                })
                .then_some(())
        }
    })
    .await;
    drop(agent);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_armed_schedule_survives_a_restart_and_resumes_at_its_next_fire() {
    let dir = TempDir::new("schedule-restart");
    let c = Controller::start(
        dir.path(),
        Arc::new(ManualClock::new(at("2026-03-02T08:58:00Z"))),
    )
    .await;
    let mut api = c.api();
    arm_template(&mut api, "nightly", "{cron: \"*/5 * * * *\"}", "1m").await;
    drop(api);
    c.stop().await;

    // Down from 08:58 to 09:02: the 09:00 fire was missed, and fires once at start-up.
    let clock = Arc::new(ManualClock::new(at("2026-03-02T09:02:00Z")));
    let c = Controller::start(dir.path(), clock.clone()).await;
    let mut api = c.api();
    let fired = wait_fires(&api, "nightly", 1).await;
    assert_eq!(
        fired,
        [(
            "2026-03-02T09:00:00.000Z".into(),
            "run nightly-202603020900".into()
        )]
    );
    // No agent is connected: the run was made and failed to start, with the hub's reason.
    let run = eventually(WITHIN, "the late run failed to start", || {
        let mut api = api.clone();
        async move {
            let e = get(&mut api, "nightly-202603020900")
                .await
                .ok()?
                .experiment?;
            (e.state() == ExperimentState::Failed).then_some(e)
        }
    })
    .await;
    assert!(
        run.reason.starts_with("scheduled start failed"),
        "{}",
        run.reason
    );

    // It resumes at 09:05, not before.
    clock.set(at("2026-03-02T09:04:59Z"));
    clock.set(at("2026-03-02T09:05:00Z"));
    let fired = wait_fires(&api, "nightly", 2).await;
    assert_eq!(
        fired[1],
        (
            "2026-03-02T09:05:00.000Z".into(),
            "run nightly-202603020905".into()
        )
    );
    assert_eq!(
        state(&mut api, "nightly").await,
        Some(ExperimentState::Pending)
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_runs_beyond_the_history_limit_are_deleted() {
    let (_dir, clock, c) = fresh("schedule-history").await;
    let mut api = c.api();
    arm_template(
        &mut api,
        "hourly",
        "{cron: \"0 * * * *\", historyLimit: 2}",
        "1m",
    )
    .await;
    // Without agents every run fails at once, so each is finished before the next fire.
    for (n, hour) in ["09", "10", "11"].into_iter().enumerate() {
        clock.set(at(&format!("2026-03-02T{hour}:00:00Z")));
        wait_fires(&api, "hourly", n + 1).await;
    }
    eventually(WITHIN, "the oldest run is deleted", || {
        let mut api = api.clone();
        async move {
            get(&mut api, "hourly-202603020900")
                .await
                .err()
                .filter(|s| s.code() == Code::NotFound)
        }
    })
    .await;
    for kept in ["hourly-202603021000", "hourly-202603021100"] {
        assert!(get(&mut api, kept).await.is_ok(), "{kept} is kept");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_at_in_the_past_fires_once_at_once() {
    let (_dir, clock, c) = fresh("schedule-once").await;
    let mut api = c.api();
    arm_template(
        &mut api,
        "once",
        "{startAt: \"2026-03-01T12:30:00+01:00\"}",
        "1m",
    )
    .await;
    let fired = wait_fires(&api, "once", 1).await;
    assert_eq!(
        fired,
        [(
            "2026-03-01T11:30:00.000Z".into(),
            "run once-202603011130".into()
        )]
    );
    // Spent, not re-armed: a second Start is refused.
    let again = start(&mut api, "once").await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    clock.set(at("2026-03-09T00:00:00Z"));
    assert_eq!(fires(&mut api, "once").await.len(), 1);
    c.stop().await;
}

#[test]
fn the_game_day_example_is_a_weekly_template_in_berlin_time() {
    use faultline_controller::spec::{self, ConcurrencyPolicy, Schedule};
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/experiments/gameday-cron.yaml"
    );
    let e = spec::validate(&std::fs::read_to_string(path).unwrap(), &Default::default()).unwrap();
    let Some(Schedule::Cron(c)) = e.schedule else {
        panic!("a cron schedule: {:?}", e.schedule)
    };
    assert_eq!(
        (c.expression.as_str(), c.time_zone.name()),
        ("0 10 * * 2", "Europe/Berlin")
    );
    assert_eq!(
        (c.concurrency, c.history_limit),
        (ConcurrencyPolicy::Forbid, 8)
    );
}
