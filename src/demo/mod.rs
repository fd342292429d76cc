//! `faultline demo`: a whole game day on one machine, in one process, in under a minute.
//!
//! It starts an embedded controller (its SQLite store in a temp dir, or `--data-dir`), a small
//! sample "API" service with a capacity (`service`), an agent in front of it connected to the
//! controller, and callers that send steady traffic and retry failures (`traffic`). Then it
//! runs `examples/api-outage-gameday.yaml` (or `--spec`): the API starts answering 503 and
//! slowing down for a growing share of requests; the callers' retries overload the service;
//! the error-rate guard trips and the faults are withdrawn at once; the callers back off and
//! the service recovers, and the recovery time is measured. The timeline prints as it
//! happens, then the verdict, and the HTML report is written.
//!
//! Exit code: 0 when the game day ran as designed (a guard stopped the outage and the service
//! recovered), 1 otherwise (with what happened instead).

mod service;
mod traffic;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use faultline_agent::app::Agent;
use faultline_agent::config::{AgentConfig, ControllerConfig};
use faultline_agent::route::{Protocol, RouteSpec, Upstream};
use faultline_controller::config::{Config, Leases};
use faultline_controller::server::Server;
use faultline_proto::v1::{
    CreateExperimentRequest, DeleteExperimentRequest, StartExperimentRequest,
    create_experiment_request,
};
use tokio::sync::oneshot;

use self::service::{Capacity, Service};
use self::traffic::Traffic;
use crate::controller::args::ControllerAddr;
use crate::controller::client::Client;
use crate::output;
use crate::report::{self, Outcome, ReportFiles};

/// The game day the demo runs unless `--spec` names another.
const GAMEDAY: &str = include_str!("../../examples/api-outage-gameday.yaml");
/// New requests a second from the callers.
const TRAFFIC: u32 = 60;
/// What the sample service takes before it sheds load.
const CAPACITY: Capacity = Capacity {
    per_second: 75,
    cool_down: Duration::from_secs(3),
};
/// Steady traffic before the experiment, so pre-flight judges a healthy service.
const WARM_UP: u64 = 120;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to write the HTML report.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "faultline-demo-report.html"
    )]
    pub report: PathBuf,
    /// Keep the controller's store here (default: a temp dir, removed afterwards).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Run this experiment spec instead of examples/api-outage-gameday.yaml. Its targets must
    /// select `app: api` and its faults go on route `api`.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
}

/// Runs the demo; the exit code says whether the game day ran as designed.
pub async fn run(args: DemoArgs) -> ExitCode {
    match demo(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("faultline: demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn demo(args: DemoArgs) -> anyhow::Result<bool> {
    let spec = match &args.spec {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => GAMEDAY.to_owned(),
    };
    let temp = TempDir::new()?;
    let data_dir = args.data_dir.clone().unwrap_or_else(|| temp.0.clone());

    // The controller, with its embedded store.
    let server = Server::bind(Config {
        listen: "127.0.0.1:0".parse().expect("a valid address"),
        data_dir: data_dir.clone(),
        caps: Default::default(),
    })
    .await
    .context("cannot start the controller")?
    .with_leases(Leases::new(
        Duration::from_secs(1),
        Duration::from_millis(100),
    )?);
    let controller_addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let controller = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    // The service, and the agent in front of it.
    let service = Service::start(CAPACITY)
        .await
        .context("cannot start the sample service")?;
    let mut route = RouteSpec::tcp("api", "127.0.0.1:0", Upstream::Addr(service.addr));
    route.protocol = Protocol::Http;
    let agent = Agent::start(&AgentConfig {
        routes: vec![route],
        controller: Some(ControllerConfig::new(
            &format!("http://{controller_addr}"),
            "demo-api-agent",
            BTreeMap::from([("app".to_owned(), "api".to_owned())]),
        )?),
        ..AgentConfig::embedded()
    })
    .await
    .context("cannot start the agent")?;
    let through = agent.table.get("api").context("the agent's route")?.listen;
    output::line(&format!(
        "demo: controller {controller_addr} (store {}), API service {}, agent {through} in front of it",
        data_dir.display(),
        service.addr
    ))?;

    // Steady traffic; the experiment starts once the agent is connected and has seen some.
    let traffic = Traffic::start(through, TRAFFIC);
    wait_for(
        Duration::from_secs(20),
        "the agent and steady traffic",
        || agent.table.lease().is_some() && traffic.counts.ok.load(Ordering::Relaxed) >= WARM_UP,
    )
    .await?;
    output::line(&format!(
        "demo: {TRAFFIC} requests a second flowing through the agent; starting the game day"
    ))?;

    let mut client = Client::connect(&ControllerAddr::plain(format!("http://{controller_addr}")))
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let outcome = game_day(&mut client, &spec, &args.report).await;
    let c = &traffic.counts;
    output::line(&format!(
        "demo: callers saw {} ok, {} failed, {} retries, {} cut short by their breaker",
        c.ok.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
        c.retried.load(Ordering::Relaxed),
        c.short_circuited.load(Ordering::Relaxed),
    ))?;

    drop(traffic);
    agent.shutdown(Duration::from_secs(1)).await;
    let _ = stop.send(());
    let _ = controller.await;
    drop(service);
    outcome
}

/// Creates, starts and follows the experiment; writes the report. True when a guard stopped
/// the outage and the service recovered.
async fn game_day(
    client: &mut Client,
    spec: &str,
    report_file: &std::path::Path,
) -> anyhow::Result<bool> {
    let request = CreateExperimentRequest {
        spec: Some(create_experiment_request::Spec::SpecYaml(spec.to_owned())),
    };
    let created = client.experiments.create(request).await;
    let experiment = match created {
        Ok(e) => e.into_inner(),
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            // A kept store from an earlier demo: that run's record makes way for this one.
            let name = status
                .message()
                .split('"')
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            client
                .experiments
                .delete(DeleteExperimentRequest { name })
                .await
                .context("cannot delete the earlier demo's experiment")?;
            client
                .experiments
                .create(CreateExperimentRequest {
                    spec: Some(create_experiment_request::Spec::SpecYaml(spec.to_owned())),
                })
                .await?
                .into_inner()
        }
        Err(status) => return Err(anyhow::anyhow!("the game day's spec: {}", status.message())),
    };
    let started = client
        .experiments
        .start(StartExperimentRequest {
            name: experiment.name.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("the game day did not start: {}", s.message()))?
        .into_inner();
    crate::run::follow::follow(client, &started, None)
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let report = report::fetch(client, &experiment.name)
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let files = ReportFiles {
        html: Some(report_file.to_owned()),
        ..Default::default()
    };
    files.write(&report)?;
    output::line(&report.verdict_line())?;
    output::line(&format!(
        "demo: report written to {}",
        report_file.display()
    ))?;
    let as_designed = report.verdict.outcome == Outcome::Tripped;
    if !as_designed {
        output::line(
            "demo: the game day did not run as designed (a guard should stop the outage and \
             the service recover)",
        )?;
    }
    Ok(as_designed)
}

async fn wait_for(
    within: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while !ready() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: not ready within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("faultline-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
