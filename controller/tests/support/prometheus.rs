//! A real Prometheus (Debian's `prometheus`) for guard tests: started on a free loopback port
//! with a one-second scrape of the given targets, polled until ready, killed by its PID on drop.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use faultline_controller::guard::http::Http;
use faultline_controller::guard::probe;
use faultline_controller::spec::ProbeSource;
use tokio::time::Instant;

/// The `prometheus` binary; `None` (the test skips) only when it is missing and
/// `FAULTLINE_REQUIRE_PROMETHEUS` is not set.
pub fn prometheus_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("FAULTLINE_REQUIRE_PROMETHEUS").is_some_and(|v| !v.is_empty()) {
            panic!(
                "FAULTLINE_REQUIRE_PROMETHEUS is set but no `prometheus` is on PATH \
                 (scripts/test.sh installs Debian's package)"
            );
        }
        eprintln!(
            "SKIPPED: no `prometheus` on PATH (apt-get install prometheus); set \
             FAULTLINE_REQUIRE_PROMETHEUS=1 to make this a failure"
        );
    }
    found
}

/// A Prometheus process and its directory; dropping it kills the process (by its PID), waits
/// for it and removes the directory.
pub struct PrometheusProcess {
    child: Child,
    dir: PathBuf,
    pub addr: SocketAddr,
}

impl PrometheusProcess {
    /// Starts Prometheus on a free loopback port, scraping `targets`' `/metrics` every second.
    pub fn start(binary: &Path, targets: &[SocketAddr], tag: &str) -> PrometheusProcess {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{tag}-prometheus-{}", std::process::id()));
        let targets = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: guard-test\n    static_configs:\n      \
                 - targets: [{targets}]\n"
            ),
        )
        .unwrap();
        // A free port: bound, then released for Prometheus to take.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        PrometheusProcess { child, dir, addr }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Polls `/-/ready` until it answers 200.
    pub async fn ready(&mut self, http: &Http) {
        let probe = ProbeSource {
            method: "GET".into(),
            url: format!("http://{}/-/ready", self.addr),
            headers: Default::default(),
            expect_status: (200, 299),
            body: None,
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            failures: 1,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            match probe::probe(http, &probe).await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("prometheus not ready after 60s: {e}\n{}", self.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
