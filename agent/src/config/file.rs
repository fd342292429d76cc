//! The config file: YAML or JSON with routes and their faults, or Toxiproxy's config file
//! (a JSON list of proxies). Faults use the same shape as the admin API's toxics.
//!
//! ```yaml
//! routes:
//!   - name: redis
//!     listen: 127.0.0.1:26379
//!     upstream: 127.0.0.1:6379
//!     faults:
//!       - type: latency
//!         stream: downstream
//!         attributes: { latency: 100, jitter: 10 }
//!   # A captured route: no listener; it takes connections redirected to the agent's
//!   # --capture-outbound listener whose original destination matches.
//!   - name: cache
//!     capture: outbound
//!     match: { destinations: [10.0.0.0/8], ports: [6379] }
//!     upstream: original
//! ```

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;
use super::args::check_listen;
use crate::admin::capture::{self, MatchInput};
use crate::admin::toxiproxy::ToxicInput;
use crate::fault::Fault;
use crate::route::{HttpOptions, Protocol, RouteSpec, parse_response_timeout};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    name: String,
    #[serde(default)]
    listen: Option<String>,
    upstream: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    faults: Vec<serde_json::Value>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    header_faults: bool,
    /// How long the upstream has to start answering (`30s`); http and grpc routes.
    #[serde(default)]
    response_timeout: Option<String>,
    /// `outbound` or `inbound`: a captured route.
    #[serde(default)]
    capture: Option<String>,
    #[serde(default, rename = "match")]
    capture_match: Option<MatchInput>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    routes: Vec<FileRoute>,
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub routes: Vec<RouteSpec>,
    pub faults: Vec<(String, Fault)>,
}

pub fn parse(text: &str, path: &Path) -> Result<Parsed, ConfigError> {
    let setting = format!("{}", path.display());
    let trimmed = text.trim_start();
    let routes = if trimmed.starts_with('[') {
        // Toxiproxy's `-config` file: `[{"name", "listen", "upstream", "enabled"}]`.
        serde_json::from_str::<Vec<FileRoute>>(text).map_err(|e| ConfigError::new(&setting, e))?
    } else if trimmed.starts_with('{') {
        serde_json::from_str::<FileConfig>(text)
            .map_err(|e| ConfigError::new(&setting, e))?
            .routes
    } else {
        serde_saphyr::from_str::<FileConfig>(text)
            .map_err(|e| ConfigError::new(&setting, e))?
            .routes
    };
    let mut out = Parsed::default();
    for (i, r) in routes.into_iter().enumerate() {
        let at = |field: &str| format!("{setting}: routes[{i}].{field}");
        let upstream = r
            .upstream
            .parse()
            .map_err(|e| ConfigError::new(at("upstream"), e))?;
        let capture = match (&r.capture, &r.listen) {
            (Some(direction), None) => Some(
                capture::parse(direction, r.capture_match)
                    .map_err(|(field, message)| ConfigError::new(at(&field), message))?,
            ),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    at("listen"),
                    "a captured route has no listen address",
                ));
            }
            (None, _) if r.capture_match.is_some() => {
                return Err(ConfigError::new(at("match"), "needs capture"));
            }
            (None, None) => {
                return Err(ConfigError::new(at("listen"), "missing (or give capture)"));
            }
            (None, Some(_)) => None,
        };
        let listen = match &r.listen {
            Some(l) => check_listen(&at("listen"), l)?,
            None => String::new(),
        };
        if capture.is_none() && upstream == crate::route::Upstream::Original {
            return Err(ConfigError::new(
                at("upstream"),
                "\"original\" is only for captured routes",
            ));
        }
        let protocol: Protocol = match &r.protocol {
            None if capture.is_some() => Protocol::Auto,
            None => Protocol::Tcp,
            Some(p) => p.parse().map_err(|e| ConfigError::new(at("protocol"), e))?,
        };
        if protocol == Protocol::Auto && capture.is_none() {
            return Err(ConfigError::new(
                at("protocol"),
                "\"auto\" is only for captured routes",
            ));
        }
        if r.header_faults && !protocol.is_http() {
            return Err(ConfigError::new(
                at("header_faults"),
                "needs protocol http or grpc",
            ));
        }
        let response_timeout = match &r.response_timeout {
            None => None,
            Some(_) if !protocol.is_http() => {
                return Err(ConfigError::new(
                    at("response_timeout"),
                    "needs protocol http or grpc",
                ));
            }
            Some(t) => Some(
                parse_response_timeout(t)
                    .map_err(|e| ConfigError::new(at("response_timeout"), e))?,
            ),
        };
        for (j, f) in r.faults.into_iter().enumerate() {
            let input: ToxicInput = serde_json::from_value(f)
                .map_err(|e| ConfigError::new(at(&format!("faults[{j}]")), e))?;
            let fault = input
                .into_fault()
                .map_err(|e| ConfigError::new(at(&format!("faults[{j}]")), e.message))?;
            out.faults.push((r.name.clone(), fault));
        }
        out.routes.push(RouteSpec {
            name: r.name,
            listen,
            upstream,
            enabled: r.enabled,
            protocol,
            http: HttpOptions {
                header_faults: r.header_faults,
                response_timeout,
                ..HttpOptions::default()
            },
            capture,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_timeout_is_an_http_option_named_when_wrong() {
        let route = |extra: &str| {
            format!(
                "routes:\n  - name: api\n    listen: 127.0.0.1:0\n    upstream: 127.0.0.1:80\n{extra}"
            )
        };
        let p = parse(
            &route("    protocol: http\n    response_timeout: 1500ms\n"),
            Path::new("a.yaml"),
        )
        .unwrap();
        assert_eq!(
            p.routes[0].http.response_timeout,
            Some(std::time::Duration::from_millis(1500))
        );
        let e = parse(
            &route("    protocol: http\n    response_timeout: soon\n"),
            Path::new("a.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("routes[0].response_timeout"), "{e}");
        let e = parse(&route("    response_timeout: 1s\n"), Path::new("a.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("routes[0].response_timeout: needs protocol http"),
            "{e}"
        );
    }

    #[test]
    fn yaml_with_faults() {
        let text = "routes:\n  - name: redis\n    listen: 127.0.0.1:0\n    upstream: 127.0.0.1:6379\n    faults:\n      - type: latency\n        attributes: { latency: 100 }\n";
        let p = parse(text, Path::new("a.yaml")).unwrap();
        assert_eq!(p.routes.len(), 1);
        assert_eq!(p.faults[0].0, "redis");
        assert_eq!(p.faults[0].1.name, "latency_downstream");
    }

    #[test]
    fn toxiproxy_json_list() {
        let text =
            r#"[{"name":"db","listen":"127.0.0.1:0","upstream":"localhost:5432","enabled":true}]"#;
        let p = parse(text, Path::new("toxiproxy.json")).unwrap();
        assert_eq!(p.routes[0].name, "db");
    }

    #[test]
    fn errors_name_the_field() {
        let text = "routes:\n  - name: r\n    listen: 127.0.0.1:0\n    upstream: nowhere\n";
        let e = parse(text, Path::new("c.yaml")).unwrap_err();
        assert!(e.setting.ends_with("routes[0].upstream"), "{e}");
        let text = "routes:\n  - name: r\n    listen: 127.0.0.1:0\n    upstream: h:1\n    faults:\n      - type: latency\n        toxicity: 2\n";
        let e = parse(text, Path::new("c.yaml")).unwrap_err();
        assert!(e.to_string().contains("toxicity"), "{e}");
    }

    #[test]
    fn captured_routes_parse_with_their_match() {
        let text = "routes:\n  - name: cache\n    capture: outbound\n    match: { destinations: [10.0.0.0/8, 192.0.2.7/32], ports: [6379] }\n    upstream: original\n    faults:\n      - type: partition\n        attributes: { cidrs: [192.0.2.7/32], peer: upstream }\n  - name: any-in\n    capture: inbound\n    upstream: original\n    protocol: http\n";
        let p = parse(text, Path::new("c.yaml")).unwrap();
        let cache = &p.routes[0];
        assert_eq!(cache.upstream, crate::route::Upstream::Original);
        assert_eq!(cache.protocol, Protocol::Auto);
        assert_eq!(
            cache.capture.as_ref().unwrap().to_string(),
            "capture:outbound:10.0.0.0/8,192.0.2.7/32:6379"
        );
        assert_eq!(p.faults.len(), 1);
        assert_eq!(p.routes[1].protocol, Protocol::Http);
        assert_eq!(
            p.routes[1].capture.as_ref().unwrap().to_string(),
            "capture:inbound"
        );
    }

    #[test]
    fn rules_match_by_destination_and_name_a_bad_one() {
        let route = "routes:\n  - name: egress\n    capture: outbound\n    upstream: original\n    faults:\n      - type: http_abort\n        attributes: { status: 503 }\n";
        let ok = format!(
            "{route}        match: {{ destination: {{ destinations: [192.0.2.7], ports: [8080] }} }}\n"
        );
        let p = parse(&ok, Path::new("c.yaml")).unwrap();
        let d = p.faults[0].1.matcher.as_ref().unwrap().destination.clone();
        assert_eq!(
            d.map(|d| (d.destinations[0].to_string(), d.ports)),
            Some(("192.0.2.7/32".into(), vec![8080]))
        );
        let bad = format!("{route}        match: {{ destination: {{ ports: [0] }} }}\n");
        let e = parse(&bad, Path::new("c.yaml")).unwrap_err();
        assert_eq!(e.setting, "c.yaml: routes[0].faults[0]");
        assert!(e.to_string().contains("match.destination.ports[0]"), "{e}");
    }

    #[test]
    fn captured_route_errors_name_the_field() {
        let cases = [
            (
                "    capture: sideways\n    upstream: original\n",
                "routes[0].capture",
            ),
            (
                "    capture: outbound\n    match: { destinations: [10.0.0.300/8] }\n    upstream: original\n",
                "routes[0].match.destinations[0]",
            ),
            (
                "    capture: outbound\n    match: { ports: [0] }\n    upstream: original\n",
                "routes[0].match.ports[0]",
            ),
            (
                "    capture: outbound\n    listen: 127.0.0.1:0\n    upstream: original\n",
                "routes[0].listen",
            ),
            (
                "    listen: 127.0.0.1:0\n    upstream: original\n",
                "routes[0].upstream",
            ),
            (
                "    listen: 127.0.0.1:0\n    upstream: h:1\n    protocol: auto\n",
                "routes[0].protocol",
            ),
            (
                "    upstream: h:1\n    match: { ports: [1] }\n",
                "routes[0].match",
            ),
        ];
        for (route, field) in cases {
            let text = format!("routes:\n  - name: r\n{route}");
            let e = parse(&text, Path::new("c.yaml")).unwrap_err();
            assert_eq!(e.setting, format!("c.yaml: {field}"), "{route}: {e}");
        }
    }
}

#[cfg(test)]
mod examples {
    use super::*;

    #[test]
    fn the_shipped_examples_parse() {
        let p = parse(
            include_str!("../../../examples/agent.yaml"),
            Path::new("agent.yaml"),
        )
        .unwrap();
        assert_eq!(p.routes.len(), 2);
        assert_eq!(p.faults.len(), 1);
        let p = parse(
            include_str!("../../../examples/toxiproxy-config.json"),
            Path::new("toxiproxy-config.json"),
        )
        .unwrap();
        assert_eq!(p.routes.len(), 2);
        let p = parse(
            include_str!("../../../examples/agent-capture.yaml"),
            Path::new("agent-capture.yaml"),
        )
        .unwrap();
        assert_eq!(p.routes.len(), 3);
        assert!(p.routes.iter().all(|r| r.capture.is_some()));
        assert_eq!(p.faults.len(), 3);
        let scoped = p.faults[2].1.matcher.as_ref().unwrap();
        assert!(scoped.destination.is_some());
    }
}
