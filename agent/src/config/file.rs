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
//! ```

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;
use super::args::check_listen;
use crate::admin::toxiproxy::ToxicInput;
use crate::fault::Fault;
use crate::route::{HttpOptions, Protocol, RouteSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoute {
    name: String,
    listen: String,
    upstream: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    faults: Vec<serde_json::Value>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    header_faults: bool,
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
        let listen = check_listen(&at("listen"), &r.listen)?;
        let protocol: Protocol = match &r.protocol {
            None => Protocol::Tcp,
            Some(p) => p.parse().map_err(|e| ConfigError::new(at("protocol"), e))?,
        };
        if r.header_faults && !protocol.is_http() {
            return Err(ConfigError::new(
                at("header_faults"),
                "needs protocol http or grpc",
            ));
        }
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
                ..HttpOptions::default()
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
