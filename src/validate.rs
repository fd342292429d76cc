//! `faultline validate -f FILE [--caps FILE] [--heartbeat DURATION] [-o json]`: checks an experiment spec offline,
//! exactly as the controller will (the same parser, `faultline_controller::spec`), and reports
//! the first error as `FILE:LINE:COL: FIELD: message`.
//!
//! Exit codes: 0 the spec is valid; 2 the spec (or the caps file) is invalid; 1 a file cannot
//! be read or the result cannot be written.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use faultline_controller::spec::{self, Caps, ErrorKind, Experiment, Mode, SpecError};
use serde_json::{Value, json};

use crate::duration;

/// The spec or the caps file is invalid.
const EXIT_INVALID: u8 = 2;
/// A file cannot be read, or stdout cannot be written.
const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The experiment spec to check: YAML or JSON (`-` reads standard input).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,

    /// Server-side caps to check the spec against, in the controller's caps format (YAML or
    /// JSON: maxDuration, maxPercentOfAgents, allowedSelectors).
    #[arg(long, value_name = "FILE")]
    pub caps: Option<PathBuf>,

    /// The controller's heartbeat interval (its --heartbeat): an agents guard's window must be
    /// at least this long.
    #[arg(
        long,
        value_name = "DURATION",
        env = "FAULTLINE_HEARTBEAT",
        default_value = "1s",
        value_parser = duration::parse
    )]
    pub heartbeat: Duration,

    /// Output format (json: one object with the result or the error's field, line, column).
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// `FILE: valid (...)` on stdout, or `FILE:LINE:COL: FIELD: message` on stderr.
    #[default]
    Text,
    /// A JSON object on stdout, valid or not.
    Json,
}

/// Which input an error is about.
struct Refusal<'a> {
    source: &'a str,
    error: SpecError,
}

/// Runs `faultline validate`; the exit code is the result.
pub fn run(args: &ValidateArgs) -> ExitCode {
    match check(args) {
        Ok(Ok(exp)) => finish(print_valid(args, &exp), ExitCode::SUCCESS),
        Ok(Err(refusal)) => finish(print_invalid(args, &refusal), ExitCode::from(EXIT_INVALID)),
        Err(e) => {
            eprintln!("faultline: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn finish(printed: anyhow::Result<()>, code: ExitCode) -> ExitCode {
    match printed {
        Ok(()) => code,
        Err(e) => {
            eprintln!("faultline: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Reads the caps (if any) and the spec, and validates. The outer error is I/O.
fn check(args: &ValidateArgs) -> anyhow::Result<Result<Experiment, Refusal<'_>>> {
    let caps = match &args.caps {
        Some(path) => match Caps::parse(&read(path)?) {
            Ok(caps) => caps,
            Err(error) => {
                return Ok(Err(Refusal {
                    source: display_name(path),
                    error,
                }));
            }
        },
        None => Caps::default(),
    };
    let caps = Caps {
        heartbeat: args.heartbeat,
        ..caps
    };
    let text = read(&args.file)?;
    Ok(spec::validate(&text, &caps).map_err(|error| Refusal {
        source: display_name(&args.file),
        error,
    }))
}

fn read(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the spec from standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn display_name(path: &Path) -> &str {
    if path == Path::new("-") {
        "<stdin>"
    } else {
        path.to_str().unwrap_or("<file>")
    }
}

fn print_valid(args: &ValidateArgs, exp: &Experiment) -> anyhow::Result<()> {
    let name = display_name(&args.file);
    let text = match args.output {
        Output::Text => format!("{name}: valid ({})", summary(exp)),
        Output::Json => json!({
            "file": name,
            "valid": true,
            "experiment": experiment_json(exp),
        })
        .to_string(),
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

fn print_invalid(args: &ValidateArgs, refusal: &Refusal<'_>) -> anyhow::Result<()> {
    match args.output {
        Output::Text => {
            let mut err = io::stderr().lock();
            writeln!(err, "{}", refusal.error.render(refusal.source))
                .context("cannot write to stderr")
        }
        Output::Json => {
            let e = &refusal.error;
            let (kind, cap) = match e.kind {
                ErrorKind::Syntax => ("syntax", None),
                ErrorKind::Invalid => ("invalid", None),
                ErrorKind::NotSupported => ("not_supported", None),
                ErrorKind::Cap(cap) => ("cap", Some(cap.as_str())),
            };
            let body = json!({
                "file": display_name(&args.file),
                "valid": false,
                "error": {
                    "source": refusal.source,
                    "field": e.path.to_string(),
                    "line": e.location.map(|l| l.line),
                    "column": e.location.map(|l| l.column),
                    "kind": kind,
                    "cap": cap,
                    "message": e.message,
                },
            });
            let mut out = io::stdout().lock();
            writeln!(out, "{body}")
                .and_then(|()| out.flush())
                .context("cannot write to stdout")
        }
    }
}

/// `2 faults, targets 20% of agents matching track=canary on route api, for 10m`, then
/// `, 2 guards` and `, in 4 phases` when there are any.
fn summary(exp: &Experiment) -> String {
    let n = exp.faults.len();
    let mut s = format!(
        "{n} fault{}, targets {}, for {}",
        if n == 1 { "" } else { "s" },
        exp.targets,
        humantime::format_duration(exp.duration)
    );
    match exp.guards.len() {
        0 => {}
        1 => s.push_str(", 1 guard"),
        g => s.push_str(&format!(", {g} guards")),
    }
    if !exp.phases.is_empty() {
        s.push_str(&format!(", in {} phases", exp.phases.len()));
    }
    s
}

fn experiment_json(exp: &Experiment) -> Value {
    let (mode, value) = match exp.targets.mode {
        Mode::All => ("all", Value::Null),
        Mode::Count(n) => ("count", json!(n.get())),
        Mode::Percent(p) => ("percent", json!(p.get())),
    };
    let selector = &exp.targets.selector;
    json!({
        "name": exp.name,
        "labels": exp.labels,
        "targets": {
            "selector": if selector.is_everything() { Value::Null } else { json!(selector.to_string()) },
            "all": selector.is_everything(),
            "routes": exp.targets.routes,
            "mode": mode,
            "value": value,
            "includeNewAgents": exp.targets.include_new_agents,
        },
        "faults": exp.faults.iter().map(|(route, f)| json!({
            "route": route,
            "name": f.name,
            "type": f.kind.tag().name(),
        })).collect::<Vec<_>>(),
        "duration": humantime::format_duration(exp.duration).to_string(),
        "durationMs": u64::try_from(exp.duration.as_millis()).unwrap_or(u64::MAX),
        "seed": exp.seed,
        "allowOverlap": exp.allow_overlap,
        "guards": exp.guards.iter().map(|g| json!({
            "name": g.name,
            "source": g.source.kind(),
            "condition": format!("{} {}", g.condition.symbol(), g.condition.threshold()),
        })).collect::<Vec<_>>(),
        "recovery": {
            "stable": humantime::format_duration(exp.recovery.stable).to_string(),
            "timeout": humantime::format_duration(exp.recovery.timeout).to_string(),
        },
        "requireTraffic": exp.require_traffic,
        "phases": exp.phases.iter().map(|p| json!({
            "name": p.name,
            "duration": humantime::format_duration(p.duration).to_string(),
        })).collect::<Vec<_>>(),
        "stopAtBreakingPoint": exp.stop_at_breaking_point,
    })
}
