//! Prometheus guards: an instant PromQL query (`GET {url}/api/v1/query?query=...`) polled at
//! the guard's interval. The answer must be a scalar or a vector of exactly one series; its
//! value (`"0.6"`, `"NaN"`, `"+Inf"`) is the reading.
//!
//! A failed query (unreachable, timed out, rejected, no series or several) is "no data" until
//! `tripAfterErrors` of them in a row; from then on the source reports the objective broken,
//! with the count as its value, until a query succeeds again.

use std::time::Duration;

use hyper::{Request, StatusCode, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::http::{Http, Poll, chain, read_prefix, spawn_poller};
use super::{Reading, Sample};
use crate::spec::PrometheusSource;

/// The largest answer read: one series is a few hundred bytes; this leaves room for many
/// series, which are an error anyway (their count is still reported).
const MAX_ANSWER: usize = 4 << 20;
/// How much of a non-Prometheus error body an error message quotes.
const MAX_QUOTE: usize = 200;
/// Characters left as they are in the query parameter (RFC 3986 unreserved).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a query gave no value. `url` is the Prometheus base URL as configured.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SourceError {
    #[error("prometheus URL {url:?} is not usable: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("query to {url} failed: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("query to {url} timed out after {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },
    #[error("{url} answered HTTP {status}{}", .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        url: String,
        status: StatusCode,
        /// Prometheus' `errorType: error`, or the start of a body that is not Prometheus'.
        detail: Option<String>,
    },
    #[error("{url} rejected the query: {error_type}: {error}")]
    Rejected {
        url: String,
        error_type: String,
        error: String,
    },
    #[error("{url} sent an answer that is not Prometheus' query API: {reason}")]
    Malformed { url: String, reason: String },
    #[error("the query returned no series ({url})")]
    NoSeries { url: String },
    #[error("the query returned {count} series ({url}); a guard needs exactly one: aggregate it")]
    ManySeries { url: String, count: usize },
    #[error("the query returned a {result_type} ({url}); a guard needs a scalar or one series")]
    Unsupported { url: String, result_type: String },
    #[error("{url} returned the value {value:?}, which is not a number")]
    BadValue { url: String, value: String },
}

/// Runs `source`'s query once.
pub async fn query(http: &Http, source: &PrometheusSource) -> Result<f64, SourceError> {
    let uri = query_uri(&source.url, &source.query)?;
    query_at(http, &uri, source).await
}

/// Polls `source` every `source.interval` (the first time at once) and sends the guard's
/// readings on `tx` until `stop` is cancelled or the receiver is dropped.
pub fn spawn(
    http: Http,
    experiment: String,
    guard: String,
    source: PrometheusSource,
    tx: mpsc::Sender<Sample>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let interval = source.interval;
    let poller = Poller {
        uri: query_uri(&source.url, &source.query),
        errors: Errors::new(source.trip_after_errors),
        http,
        source,
    };
    spawn_poller(poller, interval, experiment, guard, tx, stop)
}

/// `{base}/api/v1/query?query={query}`, whether `base` ends in `/` or has a path prefix.
fn query_uri(base: &str, query: &str) -> Result<Uri, SourceError> {
    let invalid = |reason: String| SourceError::InvalidUrl {
        url: base.to_owned(),
        reason,
    };
    let parsed: Uri = base.parse().map_err(|e| invalid(format!("{e}")))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("it must start with http:// or https://".into())),
    }
    if parsed.query().is_some() {
        return Err(invalid("it must not have a query string".into()));
    }
    let encoded = utf8_percent_encode(query, QUERY_VALUE);
    let full = format!(
        "{}/api/v1/query?query={encoded}",
        base.trim_end_matches('/')
    );
    full.parse().map_err(|e| invalid(format!("{e}")))
}

async fn query_at(http: &Http, uri: &Uri, source: &PrometheusSource) -> Result<f64, SourceError> {
    let url = &source.url;
    let exchange = async {
        let request = Request::get(uri.clone())
            .header(hyper::header::ACCEPT, "application/json")
            .body(Default::default())
            .expect("a GET with a parsed URI is a valid request");
        let response =
            http.client()
                .request(request)
                .await
                .map_err(|e| SourceError::Unreachable {
                    url: url.clone(),
                    reason: chain(&e),
                })?;
        let status = response.status();
        let (body, truncated) = read_prefix(response.into_body(), MAX_ANSWER)
            .await
            .map_err(|e| SourceError::Unreachable {
                url: url.clone(),
                reason: format!("reading the answer: {}", chain(&e)),
            })?;
        if truncated && status.is_success() {
            return Err(SourceError::Malformed {
                url: url.clone(),
                reason: format!("the answer is larger than {MAX_ANSWER} bytes"),
            });
        }
        Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(source.timeout, exchange)
        .await
        .map_err(|_| SourceError::Timeout {
            url: url.clone(),
            after: source.timeout,
        })??;
    parse(url, status, &body)
}

/// Reads a query API answer: the value, or what went wrong.
fn parse(url: &str, status: StatusCode, body: &[u8]) -> Result<f64, SourceError> {
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        answer
            .as_ref()
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (error_type, error) = (field("errorType"), field("error"));
    if !status.is_success() {
        let detail = match (&error_type, &error) {
            (Some(t), Some(e)) => Some(format!("{t}: {e}")),
            (None, Some(e)) => Some(e.clone()),
            _ => quote(body),
        };
        return Err(SourceError::Status {
            url: url.to_owned(),
            status,
            detail,
        });
    }
    let malformed = |reason: &str| SourceError::Malformed {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(answer) = answer else {
        return Err(malformed("the body is not JSON"));
    };
    match answer.get("status").and_then(Value::as_str) {
        Some("success") => {}
        Some("error") => {
            return Err(SourceError::Rejected {
                url: url.to_owned(),
                error_type: error_type.unwrap_or_else(|| "error".into()),
                error: error.unwrap_or_default(),
            });
        }
        _ => return Err(malformed("no \"status\": \"success\"")),
    }
    let data = answer.get("data").ok_or_else(|| malformed("no \"data\""))?;
    let result_type = data
        .get("resultType")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no \"data.resultType\""))?;
    let result = data
        .get("result")
        .ok_or_else(|| malformed("no \"data.result\""))?;
    let sample = match result_type {
        "scalar" => result,
        "vector" => {
            let series = result
                .as_array()
                .ok_or_else(|| malformed("\"data.result\" is not a list"))?;
            match series.as_slice() {
                [] => {
                    return Err(SourceError::NoSeries {
                        url: url.to_owned(),
                    });
                }
                [one] => one.get("value").ok_or_else(|| {
                    if one.get("histogram").is_some() {
                        SourceError::Unsupported {
                            url: url.to_owned(),
                            result_type: "native histogram".into(),
                        }
                    } else {
                        malformed("a series has no \"value\"")
                    }
                })?,
                many => {
                    return Err(SourceError::ManySeries {
                        url: url.to_owned(),
                        count: many.len(),
                    });
                }
            }
        }
        other => {
            return Err(SourceError::Unsupported {
                url: url.to_owned(),
                result_type: other.to_owned(),
            });
        }
    };
    // A sample is `[<unix time>, "<value>"]`.
    let value = sample
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("a sample is not [time, \"value\"]"))?;
    parse_value(value).ok_or_else(|| SourceError::BadValue {
        url: url.to_owned(),
        value: value.to_owned(),
    })
}

/// Prometheus' float format: decimal, `NaN`, `+Inf`, `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// The start of a body, as text, for an error message; `None` if empty.
fn quote(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_QUOTE)]);
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

// === impl Poller ===

struct Poller {
    http: Http,
    source: PrometheusSource,
    /// Parsed once; a bad URL is reported at every poll like any other error.
    uri: Result<Uri, SourceError>,
    errors: Errors,
}

impl Poll for Poller {
    async fn poll(&mut self) -> (Reading, Option<String>) {
        let result = match &self.uri {
            Ok(uri) => query_at(&self.http, uri, &self.source).await,
            Err(e) => Err(e.clone()),
        };
        self.errors.reading(result)
    }
}

/// Counts consecutive query errors and turns results into readings.
#[derive(Debug)]
struct Errors {
    consecutive: u32,
    trip_after: Option<u32>,
}

impl Errors {
    fn new(trip_after: Option<u32>) -> Errors {
        Errors {
            consecutive: 0,
            trip_after,
        }
    }

    fn reading(&mut self, result: Result<f64, SourceError>) -> (Reading, Option<String>) {
        match result {
            Ok(v) => {
                self.consecutive = 0;
                (Reading::Value(v), None)
            }
            Err(e) => {
                self.consecutive = self.consecutive.saturating_add(1);
                let why = e.to_string();
                let reading = match self.trip_after {
                    Some(n) if self.consecutive >= n => Reading::Broken {
                        value: f64::from(self.consecutive),
                        why: format!("{} query errors in a row: {why}", self.consecutive),
                    },
                    _ => Reading::NoData { why: why.clone() },
                };
                (reading, Some(why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://prom:9090";

    fn ok(body: &str) -> Result<f64, SourceError> {
        parse(URL, StatusCode::OK, body.as_bytes())
    }

    #[test]
    fn query_uri_joins_base_and_encodes_the_query() {
        let q = r#"sum(rate(x{a="b c"}[30s])) / 2"#;
        let enc = "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B30s%5D%29%29%20%2F%202";
        for base in ["http://h:9090", "http://h:9090/"] {
            assert_eq!(
                query_uri(base, q).unwrap().to_string(),
                format!("http://h:9090/api/v1/query?query={enc}")
            );
        }
        for base in ["https://h/prom", "https://h/prom/"] {
            assert_eq!(
                query_uri(base, "up").unwrap().to_string(),
                "https://h/prom/api/v1/query?query=up"
            );
        }
        for bad in ["h:9090", "ftp://h", "http://h/?x=1", "http://a b"] {
            let e = query_uri(bad, "up").unwrap_err();
            assert!(matches!(e, SourceError::InvalidUrl { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn one_series_or_a_scalar_is_the_value() {
        let one = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"x"},"value":[1700000000.5,"0.6"]}]}}"#;
        assert_eq!(ok(one).unwrap(), 0.6);
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1.0,"42"]}}"#;
        assert_eq!(ok(scalar).unwrap(), 42.0);
        let v = |s: &str| {
            ok(&format!(
                r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{s}"]}}}}"#
            ))
            .unwrap()
        };
        assert_eq!(v("+Inf"), f64::INFINITY);
        assert_eq!(v("-Inf"), f64::NEG_INFINITY);
        assert!(v("NaN").is_nan());
        assert_eq!(v("1e-3"), 0.001);
    }

    #[test]
    fn no_series_several_series_and_other_types_are_errors() {
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(
            ok(empty).unwrap_err().to_string(),
            "the query returned no series (http://prom:9090)"
        );
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}}"#;
        let e = ok(two).unwrap_err();
        assert!(matches!(e, SourceError::ManySeries { count: 2, .. }), "{e}");
        assert!(e.to_string().contains("returned 2 series"), "{e}");
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(
            ok(matrix)
                .unwrap_err()
                .to_string()
                .contains("returned a matrix")
        );
        let bad = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"x"]}}"#;
        assert!(matches!(ok(bad).unwrap_err(), SourceError::BadValue { .. }));
        assert!(matches!(
            ok("<html>").unwrap_err(),
            SourceError::Malformed { .. }
        ));
    }

    #[test]
    fn http_errors_name_the_status_and_prometheus_message() {
        let body =
            br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}"#;
        let e = parse(URL, StatusCode::BAD_REQUEST, body).unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://prom:9090 answered HTTP 400 Bad Request: bad_data: 1:5: parse error: unexpected"
        );
        let e = parse(URL, StatusCode::NOT_FOUND, b"404 page not found\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://prom:9090 answered HTTP 404 Not Found: 404 page not found"
        );
        let e = parse(URL, StatusCode::BAD_GATEWAY, b"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://prom:9090 answered HTTP 502 Bad Gateway"
        );
    }

    #[test]
    fn consecutive_errors_are_no_data_then_broken_until_a_success() {
        let err = || Err(SourceError::NoSeries { url: URL.into() });
        let mut errors = Errors::new(Some(2));
        let (r, note) = errors.reading(err());
        assert!(matches!(r, Reading::NoData { .. }), "{r:?}");
        assert_eq!(
            note.as_deref(),
            Some("the query returned no series (http://prom:9090)")
        );
        for n in [2.0, 3.0] {
            let (r, _) = errors.reading(err());
            assert!(
                matches!(r, Reading::Broken { value, .. } if value == n),
                "{r:?}"
            );
        }
        assert_eq!(errors.reading(Ok(0.5)), (Reading::Value(0.5), None));
        assert!(matches!(errors.reading(err()).0, Reading::NoData { .. }));

        let mut ignore = Errors::new(None);
        for _ in 0..5 {
            assert!(matches!(ignore.reading(err()).0, Reading::NoData { .. }));
        }
    }
}
