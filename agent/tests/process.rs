//! The `faultline-agent` binary as a process: configuration errors, signals and draining,
//! and file descriptors under connection churn.

#[path = "../../tests/support/http.rs"]
#[allow(dead_code)] // shared with the root package's tests, which use all of it
mod http;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const AGENT: &str = env!("CARGO_BIN_EXE_faultline-agent");

/// A running agent process, killed (by its PID) if the test ends early.
struct Proc {
    child: Child,
    admin: SocketAddr,
    /// The fields of its "agent started" log line (the addresses it bound).
    started: serde_json::Value,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    async fn listen_addr(&self, route: &str) -> SocketAddr {
        let r = http::request(self.admin, "GET", &format!("/proxies/{route}"), None).await;
        r.json()["listen"].as_str().unwrap().parse().unwrap()
    }
}

/// Starts the agent with `args`, waits for its "agent started" log line and reads the admin
/// address from it.
fn start(args: &[&str]) -> Proc {
    start_with(args, &[])
}

fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let mut child = Command::new(AGENT)
        .envs(envs.iter().copied())
        .args([
            "--admin",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--drain-grace",
            "5s",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start faultline-agent");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = loop {
        let line = lines.next().expect("agent exited before starting").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "agent started" {
            break v["fields"].clone();
        }
    };
    let admin = started["admin"].as_str().unwrap().parse().unwrap();
    // Keep draining stderr so the agent never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc {
        child,
        admin,
        started,
    }
}

async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[test]
fn bad_configuration_exits_64_naming_the_setting() {
    let cases: &[(&[&str], &str)] = &[
        (&["--route", "nope"], "--route"),
        (
            &["--listen", "127.0.0.1:0", "--upstream", "nowhere"],
            "--upstream",
        ),
        (
            &[
                "--route",
                "a=127.0.0.1:0=127.0.0.1:1",
                "--route",
                "a=127.0.0.1:0=127.0.0.1:2",
            ],
            "defined twice",
        ),
        (&["--config", "/nonexistent/faultline.yaml"], "--config"),
        (&["--threads", "0"], "--threads"),
    ];
    for (args, needle) in cases {
        let out = Command::new(AGENT)
            .args(*args)
            .args(["--admin", "127.0.0.1:0"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_listen_port_already_taken_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let out = Command::new(AGENT)
        .args([
            "--admin",
            "127.0.0.1:0",
            "--listen",
            &port.to_string(),
            "--upstream",
            "127.0.0.1:9",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("listen") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_come_from_the_environment_too() {
    let agent = start_with(
        &[],
        &[(
            "FAULTLINE_ROUTES",
            "cache=127.0.0.1:0=127.0.0.1:6379,api=127.0.0.1:0=127.0.0.1:8080=http",
        )],
    );
    let all = http::request(agent.admin, "GET", "/proxies", None)
        .await
        .json();
    assert_eq!(all["cache"]["upstream"], "127.0.0.1:6379");
    assert_eq!(all["cache"]["protocol"], "tcp");
    assert_eq!(all["api"]["protocol"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_drains_open_connections() {
    let upstream = echo_server().await;
    let agent = start(&["--route", &format!("svc=127.0.0.1:0={upstream}")]);
    let addr = agent.listen_addr("svc").await;
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    open.read_exact(&mut buf).await.unwrap();

    kill(agent.pid(), Signal::SIGTERM).unwrap();
    // New connections are refused once the listener closes...
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...while the open one keeps working until its client is done.
    open.write_all(b"during").await.unwrap();
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"during");
    drop(open);
    let mut agent = agent;
    let status = tokio::task::spawn_blocking(move || {
        let s = agent.child.wait();
        (s, agent)
    })
    .await
    .unwrap()
    .0
    .unwrap();
    assert!(status.success(), "{status:?}");
}

/// 10,000 connections cut by reset_peer and timeout faults leave no descriptor behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_faulted_connections_leak_no_file_descriptors() {
    let upstream = echo_server().await;
    let agent = start(&[
        "--route",
        &format!("rst=127.0.0.1:0={upstream}"),
        "--route",
        &format!("tmo=127.0.0.1:0={upstream}"),
    ]);
    let rst = agent.listen_addr("rst").await;
    let tmo = agent.listen_addr("tmo").await;
    let baseline = agent.open_fds();
    for (route, body) in [
        (
            "rst",
            json!({"type": "reset_peer", "attributes": {"timeout": 0}}),
        ),
        (
            "tmo",
            json!({"type": "timeout", "stream": "upstream", "attributes": {"timeout": 1}}),
        ),
    ] {
        let r = http::request(
            agent.admin,
            "POST",
            &format!("/proxies/{route}/toxics"),
            Some(&body),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..50 {
        tasks.spawn(async move {
            for i in 0..200 {
                let addr = if (worker + i) % 2 == 0 { rst } else { tmo };
                if let Ok(mut s) = TcpStream::connect(addr).await {
                    let _ = s.write_all(b"x").await;
                    let mut b = [0u8; 16];
                    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(120));
    let metrics = http::request(agent.admin, "GET", "/metrics", None)
        .await
        .body;
    let total: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("faultline_route_connections_total"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 10_000, "{metrics}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = agent.open_fds();
        if now <= baseline {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{now} descriptors open, {baseline} before the churn"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn an_admin_api_off_loopback_needs_a_token_file() {
    // Refused before anything is bound: no traffic leaves loopback.
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--admin", "0.0.0.0:0"],
            &["--admin", "0.0.0.0:0", "--admin-token-file"],
        ),
        (
            &[
                "--admin",
                "127.0.0.1:0",
                "--admin-token-file",
                "/nonexistent/token",
            ],
            &["--admin-token-file", "/nonexistent/token"],
        ),
    ];
    for (args, needles) in cases {
        let out = Command::new(AGENT).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        for needle in *needles {
            assert!(stderr.contains(needle), "{args:?}: {needle}: {stderr}");
        }
    }
}

#[tokio::test]
async fn with_a_token_the_admin_api_answers_401_without_it() {
    let dir = std::env::temp_dir().join(format!("faultline-admin-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "admin-token-0123456789\n").unwrap();
    let agent = start(&["--admin-token-file", token_file.to_str().unwrap()]);

    let none = http::request(agent.admin, "GET", "/proxies", None).await;
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    let wrong = http::raw(
        agent.admin,
        "POST",
        "/reset",
        None,
        &[("Authorization", "Bearer admin-token-012345678")],
    )
    .await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let good = http::raw(
        agent.admin,
        "GET",
        "/proxies",
        None,
        &[("Authorization", "Bearer admin-token-0123456789")],
    )
    .await;
    assert_eq!(good.status, 200, "{good:?}");
    assert_eq!(good.json(), json!({}));
    // Probes and scrapes need no token.
    let ready = http::request(agent.admin, "GET", "/ready", None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_health_listener_serves_probes_only() {
    let agent = start(&["--health", "127.0.0.1:0"]);
    let health: SocketAddr = agent.started["health"].as_str().unwrap().parse().unwrap();

    for path in ["/ready", "/version", "/metrics"] {
        let r = http::request(health, "GET", path, None).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
    // Nothing that reads routes or changes the agent is served there.
    for (method, path) in [
        ("GET", "/proxies"),
        ("POST", "/reset"),
        ("GET", "/faultline/v1/routes"),
    ] {
        let r = http::request(health, method, path, None).await;
        assert_eq!(r.status, 404, "{method} {path}: {r:?}");
    }
    let r = http::request(
        health,
        "POST",
        "/proxies",
        Some(&json!({"name": "x", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"})),
    )
    .await;
    assert_eq!(r.status, 404, "{r:?}");
    let proxies = http::request(agent.admin, "GET", "/proxies", None).await;
    assert_eq!(
        proxies.json(),
        json!({}),
        "the probe listener created nothing"
    );
}
