//! A controller serving in-process on 127.0.0.1:0 over a temp data dir, one agent dialling it
//! (label app=shop, a TCP route `r` that no traffic crosses), and the built `faultline` binary
//! run against it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use faultline_agent::app::Agent;
use faultline_agent::config::{AgentConfig, ControllerConfig};
use faultline_agent::route::{RouteSpec, Upstream};
use faultline_controller::config::Config;
use faultline_controller::server::Server;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The controller, its agent and their temp dir; [`Rig::stop`] ends them.
pub struct Rig {
    pub url: String,
    pub dir: PathBuf,
    agent: Agent,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// What one CLI run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Rig {
    /// Starts both and waits until the agent runs the controller's (empty) desired state.
    pub async fn start(tag: &str) -> Rig {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("faultline-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = Server::bind(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.join("data"),
            caps: Default::default(),
        })
        .await
        .expect("the controller binds");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            server.run(shutdown).await.expect("the controller serves");
        });
        let labels = BTreeMap::from([("app".to_owned(), "shop".to_owned())]);
        let route = RouteSpec::tcp(
            "r",
            "127.0.0.1:0",
            Upstream::Addr("127.0.0.1:9".parse().unwrap()),
        );
        let agent = Agent::start(&AgentConfig {
            routes: vec![route],
            controller: Some(
                ControllerConfig::new(&format!("http://{addr}"), "agent-a", labels).unwrap(),
            ),
            ..AgentConfig::embedded()
        })
        .await
        .expect("the agent starts");
        super::eventually("the agent to connect", Duration::from_secs(10), || async {
            agent.table.lease().map(|_| ())
        })
        .await;
        Rig {
            url: format!("http://{addr}"),
            dir,
            agent,
            stop,
            task,
        }
    }

    /// A path in the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a file in the temp dir.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs the CLI against this controller (through FAULTLINE_CONTROLLER).
    pub async fn cli(&self, args: &[&str]) -> Run {
        cli(&self.url, args).await
    }

    pub async fn stop(self) {
        self.agent.shutdown(Duration::from_secs(1)).await;
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the built CLI with FAULTLINE_CONTROLLER set to `url`.
pub async fn cli(url: &str, args: &[&str]) -> Run {
    let out: Output = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env("FAULTLINE_CONTROLLER", url)
        .output()
        .await
        .expect("run faultline");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Reads a file the CLI wrote.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
