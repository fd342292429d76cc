//! Probe guards: one HTTP(S) request polled at the guard's interval. A probe passes when the
//! answer comes within the timeout, its status is in `expectStatus` and its body (the first
//! 64 KiB) passes the body check.
//!
//! The reading is the number of consecutive failed probes (0 after a pass); the spec parser
//! sets the guard's condition to `above: failures - 1`, so the guard breaks at the
//! `failures`-th failure in a row. The note says why the last probe failed.

use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::http::{Http, Poll, chain, read_prefix, spawn_poller};
use super::{Reading, Sample};
use crate::spec::{BodyCheck, ProbeSource};

/// How much of the body is read and checked.
pub const MAX_BODY: usize = 64 << 10;

/// Why a probe failed; its message is the guard's note.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProbeFailure {
    #[error("the probe is not a valid request: {reason}")]
    Invalid { reason: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("timed out after {} ({url})", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },
    #[error("status {status} from {url}")]
    Status { status: u16, url: String },
    #[error("reading the body from {url} failed: {reason}")]
    Body { url: String, reason: String },
    #[error("body does not contain {needle:?} ({url})")]
    BodyMissing { url: String, needle: String },
    #[error("body does not match /{regex}/ ({url})")]
    BodyMismatch { url: String, regex: String },
}

/// Runs one probe.
pub async fn probe(http: &Http, source: &ProbeSource) -> Result<(), ProbeFailure> {
    let request = request(source)?;
    let url = &source.url;
    let exchange = async {
        let response =
            http.client()
                .request(request)
                .await
                .map_err(|e| ProbeFailure::Unreachable {
                    url: url.clone(),
                    reason: chain(&e),
                })?;
        let status = response.status().as_u16();
        let (lo, hi) = source.expect_status;
        if !(lo..=hi).contains(&status) {
            return Err(ProbeFailure::Status {
                status,
                url: url.clone(),
            });
        }
        let Some(check) = &source.body else {
            return Ok(());
        };
        let (body, _truncated) =
            read_prefix(response.into_body(), MAX_BODY)
                .await
                .map_err(|e| ProbeFailure::Body {
                    url: url.clone(),
                    reason: chain(&e),
                })?;
        let body = String::from_utf8_lossy(&body);
        match check {
            BodyCheck::Contains(needle) if !body.contains(needle.as_str()) => {
                Err(ProbeFailure::BodyMissing {
                    url: url.clone(),
                    needle: needle.clone(),
                })
            }
            BodyCheck::Regex(re) if !re.is_match(&body) => Err(ProbeFailure::BodyMismatch {
                url: url.clone(),
                regex: re.as_str().to_owned(),
            }),
            _ => Ok(()),
        }
    };
    tokio::time::timeout(source.timeout, exchange)
        .await
        .map_err(|_| ProbeFailure::Timeout {
            url: url.clone(),
            after: source.timeout,
        })?
}

/// Polls `source` every `source.interval` (the first time at once) and sends the guard's
/// readings, consecutive failures, on `tx` until `stop` is cancelled or the receiver is dropped.
pub fn spawn(
    http: Http,
    experiment: String,
    guard: String,
    source: ProbeSource,
    tx: mpsc::Sender<Sample>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let interval = source.interval;
    let poller = Poller {
        http,
        source,
        failures: 0,
    };
    spawn_poller(poller, interval, experiment, guard, tx, stop)
}

/// The request a probe sends (no body).
fn request(
    source: &ProbeSource,
) -> Result<Request<http_body_util::Empty<hyper::body::Bytes>>, ProbeFailure> {
    let invalid = |reason: String| ProbeFailure::Invalid { reason };
    let uri: Uri = source
        .url
        .parse()
        .map_err(|e| invalid(format!("URL {:?}: {e}", source.url)))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid(format!(
            "URL {:?}: it must start with http:// or https://",
            source.url
        )));
    }
    let method = Method::from_bytes(source.method.as_bytes())
        .map_err(|_| invalid(format!("method {:?}", source.method)))?;
    let mut request = Request::new(Default::default());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    for (name, value) in &source.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("header {name}: value {value:?}")))?;
        request.headers_mut().append(name, value);
    }
    Ok(request)
}

// === impl Poller ===

struct Poller {
    http: Http,
    source: ProbeSource,
    /// Consecutive failed probes.
    failures: u32,
}

impl Poll for Poller {
    async fn poll(&mut self) -> (Reading, Option<String>) {
        match probe(&self.http, &self.source).await {
            Ok(()) => {
                self.failures = 0;
                (Reading::Value(0.0), None)
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                (
                    Reading::Value(f64::from(self.failures)),
                    Some(e.to_string()),
                )
            }
        }
    }
}
