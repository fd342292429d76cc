//! Which faults a request gets: the route's request-level faults are matched against the
//! request head, each matching fault is sampled (per request, or sticky by cohort key), and the
//! chosen ones are combined into a [`Chosen`]. Header-triggered faults (`x-faultline-*`) are
//! added when the route allows them, up to its cap of concurrently active ones.
//!
//! The request's cohort [`Arm`] is decided here too: the first fault on the route (in snapshot
//! order) that has a cohort and matches the request decides it from the request's key, with the
//! same hash that samples the fault; a request without the key header is in neither arm.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};

use crate::fault::http::{Abort, Arm, DelayPhase, GrpcAbort, GrpcStream, ResetPhase, grpc_abort};
use crate::fault::{FaultKind, KindTag};
use crate::metrics::RouteMetrics;
use crate::route::RouteSnapshot;

pub const HEADER_ABORT: &str = "x-faultline-abort";
pub const HEADER_DELAY: &str = "x-faultline-delay";
pub const HEADER_GRPC_STATUS: &str = "x-faultline-grpc-status";

/// What ends a request without (or instead of) the upstream's answer.
#[derive(Debug, Clone)]
pub enum Terminal {
    Abort(Abort),
    GrpcAbort(GrpcAbort),
    Reset,
}

/// The faults chosen for one request, combined.
#[derive(Debug, Default)]
pub struct Chosen {
    pub request_delay: Duration,
    pub response_delay: Duration,
    pub terminal: Option<Terminal>,
    pub throttle: Option<u64>,
    pub reset_after: Option<u64>,
    pub stream: Option<GrpcStream>,
    /// The first fault that acted (for the optional response header).
    pub fired: Option<Arc<str>>,
    /// Holds a header-triggered fault's place under the route's cap.
    pub slot: Option<HeaderSlot>,
    /// The cohort arm the request's outcome is also counted in.
    pub arm: Arm,
}

impl Chosen {
    pub fn injected(&self) -> bool {
        self.fired.is_some()
    }

    /// Faults that act on the response body.
    pub fn shapes_body(&self) -> bool {
        self.throttle.is_some() || self.reset_after.is_some() || self.stream.is_some()
    }
}

/// A place among the route's concurrently active header-triggered faults.
#[derive(Debug)]
pub struct HeaderSlot(Arc<RouteMetrics>);

impl Drop for HeaderSlot {
    fn drop(&mut self) {
        self.0.header_faults_active.fetch_sub(1, Relaxed);
    }
}

/// A header-triggered fault whose value cannot be read: the client gets a 400 naming it.
#[derive(Debug)]
pub struct BadHeader {
    pub header: &'static str,
    pub message: String,
    /// The request's cohort arm, for counting the 400.
    pub arm: Arm,
}

/// `original` is the connection's original destination when it was captured (for rules with
/// a `destination` condition).
pub fn choose<B>(
    snap: &RouteSnapshot,
    req: &Request<B>,
    original: Option<SocketAddr>,
    grpc: bool,
) -> Result<Chosen, BadHeader> {
    let mut c = Chosen::default();
    let mut arm_decided = false;
    for af in snap.faults.iter() {
        let f = &af.fault;
        let tag = f.kind.tag();
        if !tag.is_request_level() {
            continue;
        }
        if matches!(tag, KindTag::GrpcAbort | KindTag::GrpcStream) && !grpc {
            continue;
        }
        if f.matcher
            .as_ref()
            .is_some_and(|m| !m.matches(req, original))
        {
            continue;
        }
        let hit = match &f.cohort {
            Some(cohort) => {
                let arm = req
                    .headers()
                    .get(&cohort.header)
                    .map(|key| cohort.arm(key.as_bytes(), f.toxicity));
                if !arm_decided {
                    arm_decided = true;
                    c.arm = arm.unwrap_or_default();
                }
                match arm {
                    Some(arm) => arm == Arm::Treatment,
                    None => f.toxicity.admits(fastrand::u64(..)),
                }
            }
            None => f.toxicity.admits(fastrand::u64(..)),
        };
        af.counters.record(hit);
        if !hit {
            continue;
        }
        snap.metrics.injected(tag);
        let mut acted = true;
        match &f.kind {
            FaultKind::HttpAbort(a) => set_terminal(&mut c, Terminal::Abort(a.clone()), &mut acted),
            FaultKind::GrpcAbort(g) => {
                set_terminal(&mut c, Terminal::GrpcAbort(g.clone()), &mut acted)
            }
            FaultKind::HttpReset(r) => match r.phase {
                ResetPhase::BeforeResponse => set_terminal(&mut c, Terminal::Reset, &mut acted),
                ResetPhase::MidResponse { after_bytes } => {
                    c.reset_after = Some(c.reset_after.map_or(after_bytes, |b| b.min(after_bytes)));
                }
            },
            FaultKind::HttpDelay(d) => {
                let t = d.sample(fastrand::u64(..));
                match d.phase {
                    DelayPhase::Request => c.request_delay += t,
                    DelayPhase::Response => c.response_delay += t,
                }
            }
            FaultKind::HttpThrottle(t) => {
                c.throttle = Some(
                    c.throttle
                        .map_or(t.bytes_per_sec, |r| r.min(t.bytes_per_sec)),
                );
            }
            FaultKind::GrpcStream(s) => {
                if c.stream.is_none() {
                    c.stream = Some(s.clone());
                } else {
                    acted = false;
                }
            }
            _ => acted = false,
        }
        if acted && c.fired.is_none() {
            c.fired = Some(f.name.as_str().into());
        }
    }
    if snap.http.header_faults {
        let arm = c.arm;
        header_faults(
            &mut c,
            req.headers(),
            snap.http.max_header_faults,
            &snap.metrics,
        )
        .map_err(|bad| BadHeader { arm, ..bad })?;
    }
    Ok(c)
}

fn set_terminal(c: &mut Chosen, t: Terminal, acted: &mut bool) {
    if c.terminal.is_none() {
        c.terminal = Some(t);
    } else {
        *acted = false;
    }
}

fn header_faults(
    c: &mut Chosen,
    h: &HeaderMap,
    cap: u32,
    metrics: &Arc<RouteMetrics>,
) -> Result<(), BadHeader> {
    let abort = h.get(HEADER_ABORT);
    let delay = h.get(HEADER_DELAY);
    let grpc = h.get(HEADER_GRPC_STATUS);
    if abort.is_none() && delay.is_none() && grpc.is_none() {
        return Ok(());
    }
    fn text<'a>(v: &'a http::HeaderValue, header: &'static str) -> Result<&'a str, BadHeader> {
        v.to_str().map(str::trim).map_err(|_| BadHeader {
            header,
            message: "is not text".into(),
            arm: Arm::Neither,
        })
    }
    let abort = abort
        .map(|v| {
            let s = text(v, HEADER_ABORT)?;
            s.parse::<u16>()
                .ok()
                .filter(|n| (200..=599).contains(n))
                .and_then(|n| StatusCode::from_u16(n).ok())
                .ok_or_else(|| BadHeader {
                    header: HEADER_ABORT,
                    message: format!("{s:?} is not an HTTP status 200..599"),
                    arm: Arm::Neither,
                })
        })
        .transpose()?;
    let delay = delay
        .map(|v| {
            let s = text(v, HEADER_DELAY)?;
            s.parse::<u64>()
                .map(Duration::from_millis)
                .or_else(|_| humantime::parse_duration(s))
                .map_err(|_| BadHeader {
                    header: HEADER_DELAY,
                    message: format!("{s:?} is not a duration (\"200ms\" or milliseconds)"),
                    arm: Arm::Neither,
                })
        })
        .transpose()?;
    let grpc = grpc
        .map(|v| {
            let s = text(v, HEADER_GRPC_STATUS)?;
            grpc_abort::parse_code(s).ok_or_else(|| BadHeader {
                header: HEADER_GRPC_STATUS,
                message: format!("{s:?} is not a gRPC status code 1..16"),
                arm: Arm::Neither,
            })
        })
        .transpose()?;
    // Take a place under the cap, or let the request through untouched.
    let active = &metrics.header_faults_active;
    if active.fetch_add(1, Relaxed) >= cap {
        active.fetch_sub(1, Relaxed);
        return Ok(());
    }
    c.slot = Some(HeaderSlot(metrics.clone()));
    if let Some(d) = delay {
        c.request_delay += d;
    }
    let mut acted = true;
    if let Some(code) = grpc {
        set_terminal(
            c,
            Terminal::GrpcAbort(GrpcAbort {
                code,
                message: "injected by x-faultline-grpc-status".into(),
            }),
            &mut acted,
        );
    } else if let Some(status) = abort {
        let body = Bytes::from(format!(
            "faultline: injected {status} (x-faultline-abort)\n"
        ));
        set_terminal(
            c,
            Terminal::Abort(Abort {
                status,
                body,
                headers: Vec::new(),
            }),
            &mut acted,
        );
    }
    if c.fired.is_none() {
        c.fired = Some("x-faultline-headers".into());
    }
    Ok(())
}

/// Removes the `x-faultline-*` directives before the request goes upstream.
pub fn strip_directives(h: &mut HeaderMap) {
    h.remove(HEADER_ABORT);
    h.remove(HEADER_DELAY);
    h.remove(HEADER_GRPC_STATUS);
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, Method};
    use tokio::time::Instant;

    use super::*;
    use crate::fault::http::{Cohort, RequestMatch};
    use crate::fault::{Direction, Fault, Origin, Probability};
    use crate::route::{ActiveFault, Protocol, RouteState, Upstream};

    fn abort(name: &str, header: &'static str, p: f64, matcher: Option<RequestMatch>) -> Fault {
        Fault {
            name: name.into(),
            kind: FaultKind::HttpAbort(Abort {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: Bytes::new(),
                headers: Vec::new(),
            }),
            direction: Direction::Both,
            toxicity: Probability::new(p).unwrap(),
            expires_at: None,
            origin: Origin::Admin,
            matcher: matcher.map(Arc::new),
            cohort: Some(Cohort {
                header: HeaderName::from_static(header),
                seed: 1,
            }),
        }
    }

    fn snap(faults: Vec<Fault>) -> RouteSnapshot {
        RouteSnapshot {
            name: "r".into(),
            upstream: Upstream::Addr("127.0.0.1:1".parse().unwrap()),
            protocol: Protocol::Http,
            http: Default::default(),
            state: RouteState::Serving,
            faults: faults
                .into_iter()
                .enumerate()
                .map(|(i, fault)| ActiveFault {
                    key: i as u64 + 1,
                    since: Instant::now(),
                    fault,
                    counters: Default::default(),
                })
                .collect(),
            metrics: Default::default(),
        }
    }

    fn get(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_first_matching_cohort_fault_decides_the_arm() {
        let only_posts = RequestMatch {
            methods: vec![Method::POST],
            ..Default::default()
        };
        // The first fault does not match a GET; the second decides by `x-user` at p = 0.5,
        // which puts every key in one arm or the other; the third, by `x-org`, is not asked.
        let s = snap(vec![
            abort("posts", "x-user", 0.0, Some(only_posts)),
            abort("users", "x-user", 0.5, None),
            abort("orgs", "x-org", 1.0, None),
        ]);
        let cohort = s.faults[1].fault.cohort.clone().unwrap();
        let p = Probability::new(0.5).unwrap();
        let mut seen = (0, 0);
        for i in 0..200 {
            let user = format!("user-{i}");
            let c = choose(&s, &get(&[("x-user", &user), ("x-org", "o")]), None, false).unwrap();
            let want = cohort.arm(user.as_bytes(), p);
            assert_eq!(c.arm, want, "{user}");
            match want {
                Arm::Treatment => seen.0 += 1,
                Arm::Control => seen.1 += 1,
                Arm::Neither => panic!("at p = 0.5 every key is in an arm"),
            }
        }
        assert!(seen.0 > 50 && seen.1 > 50, "{seen:?}");
    }

    #[test]
    fn a_request_without_the_key_is_in_neither_arm() {
        let s = snap(vec![
            abort("users", "x-user", 0.5, None),
            abort("orgs", "x-org", 0.5, None),
        ]);
        let c = choose(&s, &get(&[("x-org", "o")]), None, false).unwrap();
        assert_eq!(c.arm, Arm::Neither);
        let no_cohort = snap(vec![Fault {
            cohort: None,
            ..abort("any", "x-user", 1.0, None)
        }]);
        let c = choose(&no_cohort, &get(&[("x-user", "u")]), None, false).unwrap();
        assert_eq!(c.arm, Arm::Neither);
        assert!(c.injected());
    }
}
