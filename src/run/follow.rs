//! Following an experiment: its `Watch` stream until the controller ends it (after the final
//! state, or after the recovery event of an experiment with guards), with progress on stderr.
//!
//! On a terminal (stderr is a TTY) a small block is redrawn in place, under the event lines: the
//! state with a bar of the time left (`spec.duration` minus the time since the start), and a
//! line per guard with its state and the last value known. Guards report values only when they
//! change state (and at pre-flight), so that value is the last transition's, not a live sample.
//! Elsewhere (CI) it prints one plain line per event, with its time.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use faultline_proto::v1::{
    Experiment, ExperimentEvent, ExperimentEventKind as Kind, WatchExperimentRequest,
};
use serde_json::Value;
use tokio::time::Instant;

use crate::controller::client::{Client, Failure};
use crate::controller::render;
use crate::report::timeline::{Narrator, relation};
use crate::report::{Report, millis, number};

/// How often the terminal block is redrawn between events.
const REDRAW: Duration = Duration::from_millis(250);
/// Cells of the progress bar.
const BAR: usize = 30;

#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// The controller ended the stream: the experiment is over, recovery included.
    Ended,
    /// `--timeout` passed first.
    TimedOut,
}

/// How long following keeps trying to reach the controller again once its stream broke.
const RECONNECT_FOR: Duration = Duration::from_secs(60);
/// First pause before following again; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Follows `experiment` until its watch ends or `deadline` passes.
///
/// A stream that breaks (the controller restarted, a proxy between dropped the connection) is
/// opened again after the last event seen, so nothing is shown twice or missed, for up to
/// [`RECONNECT_FOR`] of failed attempts; refusals (not found, not allowed) end at once.
pub async fn follow(
    client: &mut Client,
    experiment: &Experiment,
    deadline: Option<Instant>,
) -> Result<Followed, Failure> {
    let mut progress = Progress::new(experiment, std::io::stderr().is_terminal());
    let timeout = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let followed = tokio::select! {
        ended = follow_again(client, &experiment.name, &mut progress) => {
            ended?;
            Followed::Ended
        }
        () = timeout => Followed::TimedOut,
    };
    progress.draw(None);
    Ok(followed)
}

/// Follows the stream to its end, opening it again after the last event seen when it breaks.
async fn follow_again(
    client: &mut Client,
    name: &str,
    progress: &mut Progress,
) -> Result<(), Failure> {
    let mut redraw = tokio::time::interval(REDRAW);
    let mut after_sequence = 0;
    // Since when, and how long to pause next, while the controller cannot be followed.
    let mut lost: Option<(Instant, Duration)> = None;
    loop {
        let broke = match stream_events(
            client,
            name,
            &mut after_sequence,
            progress,
            &mut redraw,
            &mut lost,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(status) => status,
        };
        if !worth_retrying(&broke) {
            return Err(broke.into());
        }
        let (since, pause) = *lost.get_or_insert_with(|| {
            progress.note(&format!(
                "lost the controller's stream ({}); following again",
                broke.message()
            ));
            (Instant::now(), BACKOFF_MIN)
        });
        if since.elapsed() >= RECONNECT_FOR {
            return Err(broke.into());
        }
        lost = Some((since, (pause * 2).min(BACKOFF_MAX)));
        tokio::time::sleep(pause).await;
    }
}

/// Opens the stream after `after_sequence` and shows its events until it ends (`Ok`) or
/// breaks; `after_sequence` follows the events shown.
async fn stream_events(
    client: &mut Client,
    name: &str,
    after_sequence: &mut u64,
    progress: &mut Progress,
    redraw: &mut tokio::time::Interval,
    lost: &mut Option<(Instant, Duration)>,
) -> Result<(), tonic::Status> {
    let request = WatchExperimentRequest {
        name: name.to_owned(),
        after_sequence: *after_sequence,
    };
    let mut stream = client.experiments.watch(request).await?.into_inner();
    if lost.take().is_some() {
        progress.note("following the controller again");
    }
    loop {
        tokio::select! {
            message = stream.message() => match message? {
                Some(event) => {
                    *after_sequence = event.sequence;
                    progress.event(&event);
                }
                None => return Ok(()),
            },
            _ = redraw.tick(), if progress.live => progress.draw(None),
        }
    }
}

/// A broken stream or an unreachable controller, not a refusal of the call.
fn worth_retrying(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::Aborted
            | Code::DeadlineExceeded
    )
}

/// What the progress display knows.
struct Progress {
    live: bool,
    name: String,
    state: String,
    narrator: Narrator,
    guards: Vec<GuardLine>,
    duration: Option<Duration>,
    started: Option<SystemTime>,
    /// The recovery event arrived: nothing more is watched.
    recovery_over: bool,
    /// Lines of the block drawn last (terminal only).
    drawn: usize,
}

struct GuardLine {
    name: String,
    state: String,
    value: Option<f64>,
    threshold: Option<f64>,
}

impl Progress {
    fn new(experiment: &Experiment, live: bool) -> Progress {
        // The spec's guards and duration, read the way reports read them.
        let base = Report::build(experiment, &[]);
        Progress {
            live,
            name: experiment.name.clone(),
            state: base.state,
            narrator: Narrator::default(),
            guards: base
                .guards
                .into_iter()
                .map(|g| GuardLine {
                    name: g.name,
                    state: "-".into(),
                    value: None,
                    threshold: g.threshold,
                })
                .collect(),
            duration: base.duration_ms.map(Duration::from_millis),
            started: None,
            recovery_over: false,
            drawn: 0,
        }
    }

    fn event(&mut self, ev: &ExperimentEvent) {
        let at = ev
            .at
            .as_ref()
            .map(|t| UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32));
        let line = format!(
            "{} {}",
            render::time(ev.at.as_ref().map(|t| (t.seconds, t.nanos))),
            self.narrator.line(ev)
        );
        self.state = render::state(ev.state);
        let detail: Value = serde_json::from_str(&ev.detail_json).unwrap_or(Value::Null);
        match ev.kind() {
            Kind::Started => self.started = at,
            Kind::Preflight => {
                for g in detail["guards"].as_array().into_iter().flatten() {
                    self.guard(&g["guard"], &g["state"], &g["value"]);
                }
            }
            Kind::GuardChanged => self.guard(&detail["guard"], &detail["to"], &detail["value"]),
            Kind::GuardTripped => self.guard(&detail["guard"], &"tripped".into(), &detail["value"]),
            Kind::Recovery => {
                self.recovery_over = true;
                for g in detail["guards"].as_array().into_iter().flatten() {
                    self.guard(&g["guard"], &g["state"], &g["value"]);
                }
            }
            _ => {}
        }
        if self.live {
            self.draw(Some(&line));
        } else {
            eprintln!("{line}");
        }
    }

    /// A line about following itself (not an event of the experiment).
    fn note(&mut self, text: &str) {
        let line = format!("faultline: {text}");
        if self.live {
            self.draw(Some(&line));
        } else {
            eprintln!("{line}");
        }
    }

    fn guard(&mut self, name: &Value, state: &Value, value: &Value) {
        if let Some(g) = self.guards.iter_mut().find(|g| *name == *g.name) {
            g.state = state.as_str().unwrap_or("no_data").to_owned();
            if let Some(v) = value.as_f64() {
                g.value = Some(v);
            }
        }
    }

    /// Terminal only: clears the block, prints `event` above it, draws the block again.
    fn draw(&mut self, event: Option<&str>) {
        if !self.live {
            return;
        }
        let mut text = String::new();
        if self.drawn > 0 {
            // To the start of the block's first line, then clear to the end of the screen.
            text.push_str(&format!("\x1b[{}F\x1b[J", self.drawn));
        }
        if let Some(line) = event {
            text.push_str(line);
            text.push('\n');
        }
        let block = self.block();
        self.drawn = block.len();
        for line in block {
            text.push_str(&line);
            text.push('\n');
        }
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
    }

    fn block(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "experiment/{} {}  {}",
            self.name,
            self.state,
            self.time_left()
        )];
        let width = self.guards.iter().map(|g| g.name.len()).max().unwrap_or(0);
        for g in &self.guards {
            let reading = match (g.value, g.threshold) {
                (Some(v), Some(t)) => {
                    format!("value {} {} {}", number(v), relation(v, t), number(t))
                }
                (Some(v), None) => format!("value {}", number(v)),
                (None, _) => "no value yet".into(),
            };
            lines.push(format!(
                "  guard {:<width$}  {:<9} {reading}",
                g.name, g.state
            ));
        }
        lines
    }

    /// `[#######-----------]  1m20s left`, once started and while running.
    fn time_left(&self) -> String {
        let (Some(started), Some(duration)) = (self.started, self.duration) else {
            return String::new();
        };
        if self.state != "running" {
            return if self.guards.is_empty() || self.recovery_over {
                String::new()
            } else {
                "(watching recovery)".into()
            };
        }
        let elapsed = SystemTime::now()
            .duration_since(started)
            .unwrap_or_default()
            .min(duration);
        let done = if duration.is_zero() {
            BAR
        } else {
            (elapsed.as_secs_f64() / duration.as_secs_f64() * BAR as f64) as usize
        };
        format!(
            "[{}{}]  {} left",
            "#".repeat(done),
            "-".repeat(BAR - done),
            millis((duration - elapsed).as_millis().div_ceil(1000) as u64 * 1000)
        )
    }
}
