//! Test support: start an agent in-process on port 0, small upstream servers, a minimal HTTP
//! client for the admin API, and the one retry helper (`eventually`).
#![allow(dead_code)]

pub mod controller;
pub mod grpc;
pub mod http;
pub mod http_upstream;
pub mod python;
pub mod servers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use faultline_agent::app::Agent;
use faultline_agent::config::AgentConfig;
use faultline_agent::route::{HttpOptions, Protocol, RouteSpec, RouteTable, Upstream};

/// An agent running inside the test process.
pub struct TestAgent {
    pub agent: Agent,
    pub admin: SocketAddr,
}

impl TestAgent {
    pub fn table(&self) -> &Arc<RouteTable> {
        &self.agent.table
    }

    /// Creates a route to `upstream` on a free loopback port and returns its listen address.
    pub fn route(&self, name: &str, upstream: SocketAddr) -> SocketAddr {
        self.route_on(name, "127.0.0.1:0", upstream)
    }

    pub fn route_on(&self, name: &str, listen: &str, upstream: SocketAddr) -> SocketAddr {
        self.agent
            .table
            .create(RouteSpec::tcp(name, listen, Upstream::Addr(upstream)))
            .expect("create route")
            .listen
    }

    /// Creates an `http` or `grpc` route on a free loopback port.
    pub fn route_with(
        &self,
        name: &str,
        upstream: SocketAddr,
        protocol: Protocol,
        http: HttpOptions,
    ) -> SocketAddr {
        let mut spec = RouteSpec::tcp(name, "127.0.0.1:0", Upstream::Addr(upstream));
        spec.protocol = protocol;
        spec.http = http;
        self.agent.table.create(spec).expect("create route").listen
    }

    /// Adds a rule through the native API; panics unless it is accepted.
    pub async fn rule(&self, route: &str, body: serde_json::Value) -> serde_json::Value {
        let r = http::request(
            self.admin,
            "POST",
            &format!("/faultline/v1/routes/{route}/rules"),
            Some(&body),
        )
        .await;
        assert_eq!(r.status, 201, "adding rule {body}: {}", r.body);
        r.json()
    }

    /// Adds a fault through the admin API (Toxiproxy JSON); panics unless it is accepted.
    pub async fn toxic(&self, route: &str, body: serde_json::Value) {
        let r = http::request(
            self.admin,
            "POST",
            &format!("/proxies/{route}/toxics"),
            Some(&body),
        )
        .await;
        assert_eq!(r.status, 200, "adding toxic {body}: {}", r.body);
    }

    pub async fn remove_toxic(&self, route: &str, name: &str) {
        let r = http::request(
            self.admin,
            "DELETE",
            &format!("/proxies/{route}/toxics/{name}"),
            None,
        )
        .await;
        assert_eq!(r.status, 204, "removing toxic {name}: {}", r.body);
    }
}

/// Starts an agent with no routes and its admin API on a free loopback port.
pub async fn agent() -> TestAgent {
    agent_with_threads(None).await
}

/// [`agent`] with `threads` data-plane worker threads (`None`: one per core).
pub async fn agent_with_threads(threads: Option<usize>) -> TestAgent {
    let config = AgentConfig {
        threads,
        ..AgentConfig::embedded()
    };
    let agent = Agent::start(&config).await.expect("agent starts");
    let admin = agent.admin_addr;
    TestAgent { agent, admin }
}

/// The path of a binary built by this workspace (`cargo test --workspace` builds them).
pub fn binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test executable path");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` (or `cargo test --workspace`)",
        path.display()
    );
    path
}

/// Retries `check` every 10 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
