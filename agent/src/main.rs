//! The `faultline-agent` binary: parse configuration, start logging, build the runtime, start
//! the agent, wait for SIGTERM/SIGINT, drain, exit.

use std::process::ExitCode;

use clap::Parser;
use faultline_agent::app::Agent;
use faultline_agent::config::{AgentConfig, Args, CaptureConfig, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// Exit code for bad configuration (sysexits' EX_USAGE).
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Command::InitIptables(iptables)) = args.command.take() {
        return match faultline_agent::capture::iptables::run(iptables) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("faultline-agent: {e}");
                ExitCode::from(EX_USAGE)
            }
        };
    }
    let capture = match CaptureConfig::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("faultline-agent: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let config = match AgentConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("faultline-agent: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    init_logging(config.log_format);

    // The control side (admin API, expiry, signals) runs here; the data plane runs on its own
    // worker threads, started by the agent (see `tcp::workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faultline-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let agent = match Agent::start_with_capture(&config, &capture).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("faultline-agent: {e}");
                return ExitCode::from(EX_USAGE);
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        let dropped = agent.shutdown(config.drain_grace).await;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "connections still open after the drain grace period"
            );
        }
        ExitCode::SUCCESS
    })
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("FAULTLINE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
