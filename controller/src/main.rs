//! `faultline-controller`: the control plane's binary. Logging, then the configuration parsed
//! to types (bad settings exit 64 naming the setting), then the runtime, then serve until
//! SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use faultline_controller::auth::{ServerTls, Tokens, Trust};
use faultline_controller::config::{
    self, Config, DEFAULT_METRICS, ENV_CAPS, ENV_DATA_DIR, ENV_HEARTBEAT, ENV_LEASE, ENV_LISTEN,
    ENV_METRICS, Leases,
};
use faultline_controller::store::DEFAULT_DATA_DIR;
use faultline_controller::webhook::{self, Webhook};

/// EX_USAGE: the configuration is wrong.
const EX_USAGE: u8 = 64;

/// The faultline controller: experiments, agents and their leased faults, over gRPC.
#[derive(Debug, Parser)]
#[command(name = "faultline-controller", version)]
struct Args {
    /// The gRPC listen address.
    #[arg(long, env = ENV_LISTEN, default_value = "127.0.0.1:7070")]
    listen: SocketAddr,
    /// The HTTP listen address of `/metrics` (Prometheus text).
    #[arg(long, env = ENV_METRICS, default_value = DEFAULT_METRICS)]
    metrics: SocketAddr,
    /// The directory of the SQLite store; created if missing.
    #[arg(long, env = ENV_DATA_DIR, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// A YAML file of server-side caps (maxDuration, maxPercentOfAgents, allowedSelectors).
    #[arg(long, env = ENV_CAPS)]
    caps: Option<PathBuf>,
    /// How long an agent keeps controller-issued faults without hearing from the controller.
    #[arg(long, env = ENV_LEASE, default_value = "3s", value_name = "DURATION")]
    lease: humantime::Duration,
    /// How often the controller and the agents send heartbeats (at most half the lease).
    #[arg(long, env = ENV_HEARTBEAT, default_value = "1s", value_name = "DURATION")]
    heartbeat: humantime::Duration,
    /// The controller's TLS certificate (PEM, chain first), with --tls-key and
    /// --tls-client-ca: gRPC is then served over TLS only, and agents must present a client
    /// certificate of role agent issued by the client CA.
    #[arg(long, env = "FAULTLINE_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "FAULTLINE_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The CA (PEM) whose certificates agents and operators present.
    #[arg(long, env = "FAULTLINE_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// Operators' bearer tokens: one `NAME TOKEN` per line, `#` comments; read at start.
    /// Operator calls then need `authorization: Bearer TOKEN` (or an operator certificate).
    #[arg(long, env = "FAULTLINE_TOKENS_FILE", value_name = "FILE")]
    tokens_file: Option<PathBuf>,
    /// Serve a non-loopback --listen address with neither TLS nor tokens (anyone who can
    /// reach it may run experiments). Without it such a controller refuses to start.
    #[arg(long, env = "FAULTLINE_INSECURE")]
    insecure: bool,
    #[command(flatten)]
    webhook: WebhookArgs,
}

/// The Kubernetes injection webhook (off unless --webhook-listen is given).
#[derive(Debug, clap::Args)]
struct WebhookArgs {
    /// Serve the injection webhook (HTTPS) on this address; needs the three flags below.
    #[arg(long, env = webhook::ENV_LISTEN, value_name = "ADDR", requires_all = ["webhook_cert", "webhook_key", "inject_config"])]
    webhook_listen: Option<SocketAddr>,
    /// The webhook's certificate chain (PEM).
    #[arg(long, env = webhook::ENV_CERT, value_name = "FILE", requires = "webhook_listen")]
    webhook_cert: Option<PathBuf>,
    /// The webhook certificate's private key (PEM).
    #[arg(long, env = webhook::ENV_KEY, value_name = "FILE", requires = "webhook_listen")]
    webhook_key: Option<PathBuf>,
    /// What the webhook injects: the agent's image, ports, resources... (YAML).
    #[arg(long, env = webhook::ENV_INJECT_CONFIG, value_name = "FILE", requires = "webhook_listen")]
    inject_config: Option<PathBuf>,
}

impl WebhookArgs {
    /// The webhook, loaded, if one was asked for.
    fn load(&self) -> Result<Option<(SocketAddr, Webhook)>, webhook::WebhookError> {
        let (Some(addr), Some(cert), Some(key), Some(inject)) = (
            self.webhook_listen,
            &self.webhook_cert,
            &self.webhook_key,
            &self.inject_config,
        ) else {
            return Ok(None);
        };
        Ok(Some((addr, Webhook::load(cert, key, inject)?)))
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let parsed = match parse_config() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    match run(parsed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed::Usage(message)) => {
            eprintln!("faultline-controller: {message}");
            ExitCode::from(EX_USAGE)
        }
        Err(Failed::Other(e)) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Why the controller stopped: a setting that cannot be used (exit 64), or anything else.
enum Failed {
    Usage(String),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed::Other(e.into())
    }
}

/// Flags and environment to a [`Config`]; on error, the message names the setting.
fn parse_config() -> Result<Parsed, ExitCode> {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return Err(ExitCode::SUCCESS);
        }
        Err(e) => {
            let _ = e.print();
            return Err(ExitCode::from(EX_USAGE));
        }
    };
    let caps = match &args.caps {
        Some(path) => config::load_caps(path).map_err(|e| {
            eprintln!("faultline-controller: {e}");
            ExitCode::from(EX_USAGE)
        })?,
        None => Default::default(),
    };
    let leases = Leases::new(args.lease.into(), args.heartbeat.into()).map_err(|e| {
        eprintln!("faultline-controller: {e}");
        ExitCode::from(EX_USAGE)
    })?;
    let usage = |e: &dyn std::fmt::Display| {
        eprintln!("faultline-controller: {e}");
        ExitCode::from(EX_USAGE)
    };
    let tls = ServerTls::load(
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
        args.tls_client_ca.as_deref(),
    )
    .map_err(|e| usage(&e))?;
    let tokens = match &args.tokens_file {
        Some(path) => Some(std::sync::Arc::new(Tokens::load(path).map_err(|e| {
            usage(&format!("--tokens-file / FAULTLINE_TOKENS_FILE: {e}"))
        })?)),
        None => None,
    };
    let trust = Trust {
        tls,
        tokens,
        insecure: args.insecure,
    };
    let webhook = args.webhook.load().map_err(|e| usage(&e))?;
    // Before anything is bound.
    trust.check(args.listen).map_err(|e| usage(&e))?;
    Ok(Parsed {
        config: Config {
            listen: args.listen,
            data_dir: args.data_dir,
            caps,
        },
        leases,
        metrics: args.metrics,
        trust,
        webhook,
    })
}

/// Everything the flags and environment say, validated.
struct Parsed {
    config: Config,
    leases: Leases,
    metrics: SocketAddr,
    trust: Trust,
    webhook: Option<(SocketAddr, Webhook)>,
}

fn run(parsed: Parsed) -> Result<(), Failed> {
    let Parsed {
        config,
        leases,
        metrics,
        trust,
        webhook,
    } = parsed;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut server = faultline_controller::server::Server::bind(config)
            .await?
            .with_leases(leases)
            .with_trust(trust)
            .map_err(|e| Failed::Usage(e.to_string()))?;
        if let Err(e) = server.bind_metrics(metrics).await {
            return Err(Failed::Usage(format!("--metrics / {ENV_METRICS}: {e}")));
        }
        if let Some((addr, webhook)) = webhook
            && let Err(e) = server.bind_webhook(addr, webhook).await
        {
            let env = webhook::ENV_LISTEN;
            return Err(Failed::Usage(format!("--webhook-listen / {env}: {e}")));
        }
        server.run(shutdown_signal()).await?;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received; draining");
}
