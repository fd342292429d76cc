//! Start-up and shutdown of the controller's gRPC server, top to bottom.
//!
//! [`Server::bind`] opens the store, aborts what a previous run left running
//! ([`Store::recover_after_restart`]), and binds the listener; [`Server::run`] serves
//! `ExperimentService`, `AgentRegistry`, gRPC health (each service `SERVING`) and reflection
//! (`v1` and `v1alpha`, so grpcurl 1.8 works too) and `AgentService` through the
//! [`hub`](crate::hub), with the [`schedule`](crate::schedule)r's task firing armed schedules
//! on its [`Clock`] (the system's; tests pass one to [`Server::with_clock`]), until `shutdown`
//! resolves, lets in-flight
//! calls finish, then closes the store. [`Server::bind_metrics`] adds the `/metrics` endpoint
//! on its own address, [`Server::bind_webhook`] the injection [`webhook`](crate::webhook)
//! (HTTPS) on another. [`serve`] is both in one call.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use faultline_proto::v1::agent_registry_server::AgentRegistryServer;
use faultline_proto::v1::experiment_service_server::ExperimentServiceServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

use faultline_proto::v1::agent_service_server::AgentServiceServer;

use crate::api::watch::Changes;
use crate::api::{ExperimentApi, RegistryApi};
use crate::auth::agents::GuardedAgents;
use crate::auth::operator::Guarded;
use crate::auth::{Gate, Trust, TrustError};
use crate::config::{Config, Leases};
use crate::hub::{AgentApi, Hub, LiveRegistry};
use crate::metrics::{self, AbortReason, Metrics};
use crate::schedule::{Clock, ScheduledExperimentApi, Scheduler, SystemClock};
use crate::spec::Caps;
use crate::store::{EventKind, Store, StoreError, StoreHandle, StoreTask};

/// How many store jobs may wait for the store thread.
const STORE_QUEUE: usize = 256;

/// Why the controller could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("{0}")]
    Trust(#[from] TrustError),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A controller with its store open and its listener bound, not yet serving.
#[derive(Debug)]
pub struct Server {
    config: Config,
    listener: TcpListener,
    store: StoreHandle,
    store_task: StoreTask,
    leases: Leases,
    metrics: Arc<Metrics>,
    metrics_listener: Option<TcpListener>,
    /// The injection webhook, when [`Server::bind_webhook`] bound one.
    webhook: Option<(TcpListener, crate::webhook::Webhook)>,
    /// The scheduler's clock: the system's, or a test's ([`Server::with_clock`]).
    clock: Arc<dyn Clock>,
    /// Who may call (default: anyone; see [`Server::with_trust`]).
    trust: Trust,
}

/// The services reflection advertises: those served here. `FILE_DESCRIPTOR_SET` also holds
/// the test-only `Echo`, which is left out.
const ADVERTISED: [&str; 4] = [
    "faultline.v1.ExperimentService",
    "faultline.v1.AgentRegistry",
    "faultline.v1.AgentService",
    "grpc.health.v1.Health",
];
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

fn reflection() -> tonic_reflection::server::Builder<'static> {
    ADVERTISED.into_iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(faultline_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        |b, name| b.with_service_name(name),
    )
}

/// Binds and serves until `shutdown` resolves.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    Server::bind(config).await?.run(shutdown).await
}

// === impl Server ===

impl Server {
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        let store = Store::open(&config.data_dir)?;
        let (store, store_task) = StoreHandle::spawn(store, STORE_QUEUE)?;
        let aborted = store.recover_after_restart(SystemTime::now()).await?;
        close_recovery_watches(&store).await?;
        let metrics = Arc::new(Metrics::default());
        metrics.aborted(AbortReason::ControllerRestarted, aborted.len() as u64);
        if !aborted.is_empty() {
            tracing::warn!(
                count = aborted.len(),
                "experiments left running by the previous controller aborted (controller restarted)"
            );
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Server {
            config,
            listener,
            store,
            store_task,
            leases: Leases::default(),
            metrics,
            metrics_listener: None,
            webhook: None,
            clock: Arc::new(SystemClock),
            trust: Trust::default(),
        })
    }

    /// Also serves `/metrics` (Prometheus text) on `addr`; port 0 picks one. Answers the
    /// address bound (also [`Server::metrics_addr`]).
    pub async fn bind_metrics(&mut self, addr: SocketAddr) -> Result<SocketAddr, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        self.metrics_listener = Some(listener);
        Ok(bound)
    }

    /// The address `/metrics` is served on, if [`Server::bind_metrics`] bound one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|l| {
            l.local_addr()
                .expect("a bound TCP listener has a local address")
        })
    }

    /// Also serves the injection webhook on `addr` (HTTPS); port 0 picks one. Answers the
    /// address bound (also [`Server::webhook_addr`]).
    pub async fn bind_webhook(
        &mut self,
        addr: SocketAddr,
        webhook: crate::webhook::Webhook,
    ) -> Result<SocketAddr, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        self.webhook = Some((listener, webhook));
        Ok(bound)
    }

    /// The address the webhook is served on, if [`Server::bind_webhook`] bound one.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.webhook.as_ref().map(|(l, _)| {
            l.local_addr()
                .expect("a bound TCP listener has a local address")
        })
    }

    /// The lease and heartbeat interval agents get (default: [`Leases::default`]).
    pub fn with_leases(mut self, leases: Leases) -> Self {
        self.leases = leases;
        self
    }

    /// The clock schedules fire by (default: the system's wall clock). For tests.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Serves with mTLS and/or bearer tokens (see [`crate::auth`]). Refuses to serve a
    /// non-loopback address with no authentication unless `trust.insecure`.
    pub fn with_trust(mut self, trust: Trust) -> Result<Self, ServeError> {
        trust.check(self.config.listen)?;
        trust.warn_unprotected(self.config.listen);
        self.trust = trust;
        Ok(self)
    }

    /// The address actually bound (the port chosen when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let addr = self.local_addr();
        let Server {
            config,
            listener,
            store,
            store_task,
            leases,
            metrics,
            metrics_listener,
            webhook,
            clock,
            trust,
        } = self;

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<ExperimentServiceServer<ExperimentApi>>()
            .await;
        health
            .set_serving::<AgentRegistryServer<RegistryApi>>()
            .await;
        let reflection_v1 = reflection().with_service_name(REFLECTION_V1).build_v1()?;
        let reflection_v1alpha = reflection()
            .with_service_name(REFLECTION_V1ALPHA)
            .build_v1alpha()?;

        health.set_serving::<AgentServiceServer<AgentApi>>().await;
        let changes = Changes::default();
        // Specs are checked against this controller's heartbeat (an agents guard's window).
        let caps = Caps {
            heartbeat: leases.heartbeat,
            ..config.caps
        };
        let emergency_stop = store.emergency_stop().await?;
        if let Some(stop) = &emergency_stop {
            tracing::warn!(reason = %stop.reason, "an emergency stop is in force: no experiment starts until `faultline resume`");
        }
        let (hub, hub_task) = Hub::spawn(
            store.clone(),
            caps.clone(),
            leases,
            changes.clone(),
            metrics.clone(),
            emergency_stop.map(|s| s.reason),
        );
        let (stop_hub, hub_task) = hub_task.split();
        let (scheduler, scheduler_task) = Scheduler::spawn(
            store.clone(),
            hub.clone(),
            Arc::new(caps.clone()),
            changes.clone(),
            clock,
        );
        let (stop_scheduler, scheduler_task) = scheduler_task.split();
        let experiments = ExperimentApi::new(store.clone(), Arc::new(caps))
            .with_hub(hub.clone())
            .with_changes(changes.clone())
            .with_metrics(metrics.clone());
        let experiments = ScheduledExperimentApi::new(experiments, scheduler);
        let registry = LiveRegistry::new(RegistryApi::new(store.clone()), hub.clone());
        let agents = AgentApi::new(hub, store.clone());
        // Every call of the operator API and the agents' stream passes the gate.
        let gate = Gate::new(&trust, store.clone());
        let experiments = Guarded::new(experiments, gate.clone());
        let registry = Guarded::new(registry, gate.clone());
        let agents = GuardedAgents::new(agents, gate);
        let (stop_metrics, metrics_stopped) = oneshot::channel::<()>();
        let metrics_task = metrics_listener.map(|listener| {
            tracing::info!(addr = ?listener.local_addr().ok(), "metrics serving");
            tokio::spawn(metrics::http::serve(
                listener,
                metrics,
                store.clone(),
                async move {
                    let _ = metrics_stopped.await;
                },
            ))
        });
        // A tokens file is read again on SIGHUP and every few seconds (rotation without a
        // restart).
        let (stop_tokens, tokens_stopped) = oneshot::channel::<()>();
        if let Some(tokens) = trust.tokens.clone() {
            tokio::spawn(tokens.watch(async move {
                let _ = tokens_stopped.await;
            }));
        }
        let (stop_webhook, webhook_stopped) = oneshot::channel::<()>();
        let webhook_task = webhook.map(|(listener, webhook)| {
            tracing::info!(addr = ?listener.local_addr().ok(), "injection webhook serving");
            tokio::spawn(crate::webhook::server::serve(
                listener,
                webhook,
                async move {
                    let _ = webhook_stopped.await;
                },
            ))
        });
        drop(store);
        // The hub stops with the shutdown signal: it ends every agent stream, so the server's
        // graceful shutdown is not held open by them.
        let shutdown = async move {
            shutdown.await;
            let _ = stop_hub.send(());
            let _ = stop_scheduler.send(());
            let _ = stop_metrics.send(());
            let _ = stop_webhook.send(());
            let _ = stop_tokens.send(());
            changes.close();
        };

        tracing::info!(
            %addr,
            data_dir = %config.data_dir.display(),
            tls = trust.tls.is_some(),
            tokens = trust.tokens.as_ref().map_or(0, |t| t.len()),
            "controller serving"
        );
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &trust.tls {
            builder = builder.tls_config(tls.server_config())?;
        }
        let served = builder
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(ExperimentServiceServer::new(experiments))
            .add_service(AgentRegistryServer::new(registry))
            .add_service(AgentServiceServer::new(agents))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await;
        let _ = hub_task.await;
        let _ = scheduler_task.await;
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        if let Some(task) = webhook_task {
            let _ = task.await;
        }
        // The services (and their store handles) are dropped with the router: the store thread
        // drains its queue and closes the database.
        store_task.finished().await?;
        tracing::info!("controller stopped");
        Ok(served?)
    }
}

/// Experiments whose recovery the previous controller was still watching get their recovery
/// event (not recovered: nobody watched), so their timelines end and `Watch` streams close.
async fn close_recovery_watches(store: &StoreHandle) -> Result<(), StoreError> {
    for e in store.list(None).await? {
        if !e.state.is_finished() || !crate::api::watch::has_guards(&e.spec_json) {
            continue;
        }
        let timeline = store.timeline(e.id).await?;
        let ran = timeline
            .iter()
            .any(|ev| ev.kind == EventKind::STATE_CHANGED && ev.detail["to"] == "running");
        if ran && !timeline.iter().any(|ev| ev.kind == EventKind::RECOVERY) {
            let detail = serde_json::json!({
                "recovered": false,
                "reason": "controller restarted while watching the recovery",
            });
            store
                .append_event(e.id, SystemTime::now(), EventKind::RECOVERY, detail)
                .await?;
        }
    }
    Ok(())
}
