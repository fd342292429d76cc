//! Which requests a fault applies to. Compiled once when the fault is created (regexes
//! included); matching a request reads only the request head and, for a captured connection,
//! its original destination.

use std::net::SocketAddr;

use http::{HeaderName, Method, Request};
use regex::Regex;

pub use crate::route::capture::DestinationMatch;

/// How a string is compared.
#[derive(Clone, Debug)]
pub enum StrMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl StrMatch {
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StrMatch::Exact(e) => s == e,
            StrMatch::Prefix(p) => s.starts_with(p.as_str()),
            StrMatch::Regex(r) => r.is_match(s),
        }
    }

    fn describe(&self) -> (&'static str, &str) {
        match self {
            StrMatch::Exact(e) => ("exact", e),
            StrMatch::Prefix(p) => ("prefix", p),
            StrMatch::Regex(r) => ("regex", r.as_str()),
        }
    }
}

impl PartialEq for StrMatch {
    fn eq(&self, other: &Self) -> bool {
        self.describe() == other.describe()
    }
}

/// A condition on one request header.
#[derive(Clone, Debug, PartialEq)]
pub enum HeaderCond {
    /// The header is present with exactly this value, or a value matching.
    Value(StrMatch),
    Present,
    Absent,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub cond: HeaderCond,
}

/// A gRPC method selector: `/package.Service/Method`. `method: None` selects every method of
/// the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcSelector {
    pub service: String,
    pub method: Option<String>,
}

/// Every condition must hold (empty lists hold trivially).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestMatch {
    pub methods: Vec<Method>,
    pub path: Option<StrMatch>,
    pub grpc: Option<GrpcSelector>,
    pub headers: Vec<HeaderMatch>,
    pub authority: Option<StrMatch>,
    /// The connection's original destination. Only a captured connection has one: on a
    /// listener route (whose upstream is not a destination) a rule with this condition never
    /// matches.
    pub destination: Option<DestinationMatch>,
}

impl RequestMatch {
    /// Whether `req`, on a connection whose original destination is `original` (captured
    /// connections only), meets every condition.
    pub fn matches<B>(&self, req: &Request<B>, original: Option<SocketAddr>) -> bool {
        if let Some(d) = &self.destination
            && !original.is_some_and(|dst| d.matches(dst))
        {
            return false;
        }
        if !self.methods.is_empty() && !self.methods.contains(req.method()) {
            return false;
        }
        let path = req.uri().path();
        if let Some(p) = &self.path
            && !p.matches(path)
        {
            return false;
        }
        if let Some(g) = &self.grpc {
            // `/package.Service/Method`
            let Some(rest) = path.strip_prefix('/') else {
                return false;
            };
            let Some((service, method)) = rest.split_once('/') else {
                return false;
            };
            if service != g.service || g.method.as_deref().is_some_and(|m| m != method) {
                return false;
            }
        }
        if let Some(a) = &self.authority {
            let authority = req
                .uri()
                .authority()
                .map(|a| a.as_str())
                .or_else(|| {
                    req.headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                })
                .unwrap_or("");
            if !a.matches(authority) {
                return false;
            }
        }
        self.headers.iter().all(|h| {
            let value = req.headers().get(&h.name);
            match &h.cond {
                HeaderCond::Present => value.is_some(),
                HeaderCond::Absent => value.is_none(),
                HeaderCond::Value(m) => value
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| m.matches(v)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn all_conditions_must_hold() {
        let m = RequestMatch {
            methods: vec![Method::GET],
            path: Some(StrMatch::Prefix("/api/".into())),
            headers: vec![
                HeaderMatch {
                    name: HeaderName::from_static("x-user"),
                    cond: HeaderCond::Value(StrMatch::Regex(Regex::new("^u[0-9]+$").unwrap())),
                },
                HeaderMatch {
                    name: HeaderName::from_static("x-skip"),
                    cond: HeaderCond::Absent,
                },
            ],
            authority: Some(StrMatch::Exact("api.local".into())),
            ..Default::default()
        };
        assert!(m.matches(
            &req("GET", "/api/x", &[("x-user", "u12"), ("host", "api.local")]),
            None
        ));
        assert!(!m.matches(
            &req(
                "POST",
                "/api/x",
                &[("x-user", "u12"), ("host", "api.local")]
            ),
            None
        ));
        assert!(!m.matches(
            &req("GET", "/other", &[("x-user", "u12"), ("host", "api.local")]),
            None
        ));
        assert!(!m.matches(
            &req("GET", "/api/x", &[("x-user", "bob"), ("host", "api.local")]),
            None
        ));
        assert!(!m.matches(
            &req(
                "GET",
                "/api/x",
                &[("x-user", "u1"), ("x-skip", "1"), ("host", "api.local")]
            ),
            None
        ));
        assert!(!m.matches(
            &req("GET", "/api/x", &[("x-user", "u1"), ("host", "other")]),
            None
        ));
    }

    #[test]
    fn destination_needs_a_captured_connection_going_there() {
        let m = RequestMatch {
            destination: Some(DestinationMatch {
                destinations: vec![
                    "10.0.0.0/8".parse().unwrap(),
                    "2001:db8::7/128".parse().unwrap(),
                ],
                ports: vec![6379],
            }),
            path: Some(StrMatch::Prefix("/v1/".into())),
            ..Default::default()
        };
        let r = req("GET", "/v1/x", &[]);
        let at = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert!(m.matches(&r, at("10.1.2.3:6379")));
        assert!(m.matches(&r, at("[2001:db8::7]:6379")));
        assert!(!m.matches(&r, at("10.1.2.3:6380")), "other port");
        assert!(!m.matches(&r, at("192.0.2.1:6379")), "other network");
        assert!(!m.matches(&r, at("[2001:db8::8]:6379")), "other v6 host");
        assert!(
            !m.matches(&req("GET", "/v2/x", &[]), at("10.1.2.3:6379")),
            "the other conditions still hold"
        );
        // A listener route's connection has no original destination: no match, even for a
        // condition that lists no network or port.
        assert!(!m.matches(&r, None));
        let any = RequestMatch {
            destination: Some(DestinationMatch::default()),
            ..Default::default()
        };
        assert!(!any.matches(&r, None));
        assert!(any.matches(&r, at("127.0.0.1:1")));
        // Without the condition, the original destination plays no part.
        assert!(RequestMatch::default().matches(&r, None));
    }

    #[test]
    fn grpc_service_and_method() {
        let svc = RequestMatch {
            grpc: Some(GrpcSelector {
                service: "pkg.Echo".into(),
                method: None,
            }),
            ..Default::default()
        };
        let one = RequestMatch {
            grpc: Some(GrpcSelector {
                service: "pkg.Echo".into(),
                method: Some("Say".into()),
            }),
            ..Default::default()
        };
        let r = req("POST", "/pkg.Echo/Say", &[]);
        let s = req("POST", "/pkg.Echo/Stream", &[]);
        assert!(svc.matches(&r, None) && svc.matches(&s, None));
        assert!(one.matches(&r, None) && !one.matches(&s, None));
        assert!(!svc.matches(&req("POST", "/pkg.Other/Say", &[]), None));
    }
}
