//! `faultline report NAME`, and the model every report format is written from.
//!
//! A [`Report`] is built once from an `Experiment` and its timeline (`Get`): the verdict, each
//! guard with its series, the trip, the recovery, the rules' counters, the targets, the seed and
//! the timeline in words. The formats only lay it out:
//!
//! - [`junit`]: JUnit XML for CI, a testsuite per experiment, a testcase per guard, per phase and
//!   for recovery (and one for the run itself).
//! - [`json`]: the model as JSON.
//! - [`html`]: one self-contained page with an SVG chart per guard ([`chart`]).
//! - [`model`]: the model's types; [`timeline`]: events in words, shared with `run`'s progress.

pub mod chart;
pub mod html;
pub mod json;
pub mod junit;
pub mod model;
pub mod timeline;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use faultline_proto::v1::GetExperimentRequest;

pub use self::model::{Outcome, Report};
use crate::cli::Misuse;
use crate::controller::args::ControllerAddr;
use crate::controller::client::{Client, Failure};
use crate::output;

/// One format: the report as the file's text.
type Render = fn(&Report) -> String;

/// The report files a command writes (`run --wait` and `report`).
#[derive(Debug, Args, Default)]
pub struct ReportFiles {
    /// Write JUnit XML: a testsuite per experiment, a testcase per guard, per phase, for
    /// recovery and for the run; failures carry the numbers.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the whole report as JSON: verdict, timeline, guard series, per-rule counters,
    /// targets, seed.
    #[arg(long = "report", value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one self-contained HTML page: the verdict, and per guard an SVG chart of its value
    /// over time with the fault window, phases, trip, abort and recovery marked.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl ReportFiles {
    pub fn any(&self) -> bool {
        self.junit.is_some() || self.json.is_some() || self.html.is_some()
    }

    /// Writes every file asked for.
    pub fn write(&self, report: &Report) -> anyhow::Result<()> {
        let outputs: [(&Option<PathBuf>, Render); 3] = [
            (&self.junit, junit::render),
            (&self.json, json::render),
            (&self.html, html::render),
        ];
        for (path, render) in outputs {
            if let Some(path) = path {
                write_file(path, &render(report))?;
            }
        }
        Ok(())
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `faultline report NAME`: the report files of an experiment, from the controller's store.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The experiment's name.
    pub name: String,
    #[command(flatten)]
    pub files: ReportFiles,
    #[command(flatten)]
    pub controller: ControllerAddr,
}

impl ReportArgs {
    /// At least one file must be asked for.
    pub fn check(&self) -> Result<(), Misuse> {
        if self.files.any() {
            Ok(())
        } else {
            Err(Misuse {
                command: &["report"],
                message: "nothing to write: give --junit FILE, --report FILE or --html FILE".into(),
            })
        }
    }
}

/// Runs `faultline report`: 0 when the files are written, whatever the verdict (`run` turns
/// verdicts into exit codes); 1 when the controller cannot be reached or refuses.
pub async fn run(args: ReportArgs) -> ExitCode {
    match execute(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.exit(),
    }
}

async fn execute(args: ReportArgs) -> Result<(), Failure> {
    let mut client = Client::connect(&args.controller).await?;
    let report = fetch(&mut client, &args.name).await?;
    args.files.write(&report)?;
    output::line(&report.verdict_line())?;
    Ok(())
}

/// Gets an experiment with its timeline and builds its report.
pub async fn fetch(client: &mut Client, name: &str) -> Result<Report, Failure> {
    let got = client
        .experiments
        .get(GetExperimentRequest { name: name.into() })
        .await?
        .into_inner();
    let experiment = got
        .experiment
        .ok_or_else(|| anyhow::anyhow!("the controller answered without the experiment"))?;
    Ok(Report::build(&experiment, &got.events))
}

/// Escapes text for XML and HTML (content and attribute values); drops the control characters
/// XML 1.0 cannot carry.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// A number as people read it: at most four decimals, no trailing zeros.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Milliseconds as `350ms`, `1.2s` or `2m5s`.
pub fn millis(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{}s", number(ms as f64 / 1000.0)),
        _ => format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}
