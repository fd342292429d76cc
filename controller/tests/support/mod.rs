//! What the controller's end-to-end tests share: a temp data dir, the one retry helper, and an
//! echo upstream.
#![allow(dead_code)] // each test file uses a different part

pub mod fake_agent;
pub mod prometheus;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::time::Instant;

/// A unique directory under the system temp dir, created now and removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "faultline-controller-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `within`. The one
/// retry of these tests.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
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

/// An echo server on a free loopback port.
pub async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A controller serving in-process on 127.0.0.1:0 over a temp data dir, until [`stop`].
///
/// [`stop`]: InProcess::stop
pub struct InProcess {
    pub addr: std::net::SocketAddr,
    /// The `/metrics` address, when asked for.
    pub metrics: Option<std::net::SocketAddr>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    dir: TempDir,
}

impl InProcess {
    /// Binds and serves with `leases`; with `metrics`, `/metrics` on a port of its own too.
    pub async fn start(
        tag: &str,
        leases: faultline_controller::config::Leases,
        metrics: bool,
    ) -> InProcess {
        Self::start_with_trust(tag, leases, metrics, Default::default()).await
    }

    /// [`InProcess::start`] with `trust` (TLS, tokens) instead of an open controller.
    pub async fn start_with_trust(
        tag: &str,
        leases: faultline_controller::config::Leases,
        metrics: bool,
        trust: faultline_controller::auth::Trust,
    ) -> InProcess {
        let dir = TempDir::new(tag);
        let mut server =
            faultline_controller::server::Server::bind(faultline_controller::config::Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                data_dir: dir.0.clone(),
                caps: Default::default(),
            })
            .await
            .expect("controller binds")
            .with_leases(leases)
            .with_trust(trust)
            .expect("trust accepted");
        let metrics = match metrics {
            true => Some(
                server
                    .bind_metrics("127.0.0.1:0".parse().unwrap())
                    .await
                    .expect("metrics binds"),
            ),
            false => None,
        };
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("the controller stops cleanly");
        });
        InProcess {
            addr,
            metrics,
            stop,
            task,
            dir,
        }
    }

    /// The store's data directory.
    #[allow(dead_code)] // not every test binary reads the store
    pub fn data_dir(&self) -> &std::path::Path {
        &self.dir.0
    }

    /// A gRPC channel to it.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops it and waits (at most 10 s) for it to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the controller stops within 10 s")
            .expect("the controller task does not panic");
    }
}
