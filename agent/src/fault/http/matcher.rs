//! Which requests a fault applies to. Compiled once when the fault is created (regexes
//! included); matching a request reads only the request head.

use http::{HeaderName, Method, Request};
use regex::Regex;

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
}

impl RequestMatch {
    pub fn matches<B>(&self, req: &Request<B>) -> bool {
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
        assert!(m.matches(&req(
            "GET",
            "/api/x",
            &[("x-user", "u12"), ("host", "api.local")]
        )));
        assert!(!m.matches(&req(
            "POST",
            "/api/x",
            &[("x-user", "u12"), ("host", "api.local")]
        )));
        assert!(!m.matches(&req(
            "GET",
            "/other",
            &[("x-user", "u12"), ("host", "api.local")]
        )));
        assert!(!m.matches(&req(
            "GET",
            "/api/x",
            &[("x-user", "bob"), ("host", "api.local")]
        )));
        assert!(!m.matches(&req(
            "GET",
            "/api/x",
            &[("x-user", "u1"), ("x-skip", "1"), ("host", "api.local")]
        )));
        assert!(!m.matches(&req(
            "GET",
            "/api/x",
            &[("x-user", "u1"), ("host", "other")]
        )));
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
        assert!(svc.matches(&r) && svc.matches(&s));
        assert!(one.matches(&r) && !one.matches(&s));
        assert!(!svc.matches(&req("POST", "/pkg.Other/Say", &[])));
    }
}
