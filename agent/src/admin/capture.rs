//! Captured routes in JSON and YAML (the admin API and the config file share this shape):
//! `"capture": "outbound"` with an optional `"match": {"destinations": [...], "ports": [...]}`.
//! HTTP rules take the same `{"destinations", "ports"}` object as `match.destination`.

use serde::{Deserialize, Serialize};

use crate::route::capture::{DestinationMatch, parse_destination};
use crate::route::{CaptureDirection, CaptureMatch};

/// `match` of a captured route: original destinations by network (a bare address is one host)
/// and port; an empty or absent list matches any.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchInput {
    #[serde(default)]
    pub destinations: Vec<String>,
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// A field path (under the route) and what is wrong with it.
pub type FieldError = (String, String);

/// Validates a captured route's `capture` and `match` fields.
pub fn parse(direction: &str, m: Option<MatchInput>) -> Result<CaptureMatch, FieldError> {
    let direction: CaptureDirection = direction.parse().map_err(|e| ("capture".into(), e))?;
    let destination =
        destinations(m.unwrap_or_default()).map_err(|(f, e)| (format!("match.{f}"), e))?;
    Ok(CaptureMatch {
        direction,
        destination,
    })
}

/// Validates original destinations and ports (a captured route's `match`, an HTTP rule's
/// `match.destination`); the error's field is relative (`destinations[1]`, `ports[0]`).
pub fn destinations(m: MatchInput) -> Result<DestinationMatch, FieldError> {
    let mut destinations = Vec::with_capacity(m.destinations.len());
    for (i, d) in m.destinations.iter().enumerate() {
        destinations.push(parse_destination(d).map_err(|e| (format!("destinations[{i}]"), e))?);
    }
    if let Some(i) = m.ports.iter().position(|p| *p == 0) {
        return Err((format!("ports[{i}]"), "port 0 matches nothing".into()));
    }
    Ok(DestinationMatch {
        destinations,
        ports: m.ports,
    })
}

/// The JSON shape of original destinations, for views.
pub fn destinations_input(m: &DestinationMatch) -> MatchInput {
    MatchInput {
        destinations: m.destinations.iter().map(ToString::to_string).collect(),
        ports: m.ports.clone(),
    }
}

/// The JSON shape of a route's match, for views.
pub fn to_input(m: &CaptureMatch) -> MatchInput {
    destinations_input(&m.destination)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_networks_hosts_and_ports_and_names_bad_fields() {
        let m = parse(
            "outbound",
            Some(MatchInput {
                destinations: vec![
                    "10.1.0.0/16".into(),
                    "192.0.2.7".into(),
                    "10.9.9.9/8".into(),
                ],
                ports: vec![6379],
            }),
        )
        .unwrap();
        assert_eq!(
            m.to_string(),
            "capture:outbound:10.1.0.0/16,192.0.2.7/32,10.0.0.0/8:6379"
        );
        assert_eq!(parse("sideways", None).unwrap_err().0, "capture");
        let bad = |destinations: Vec<String>, ports: Vec<u16>| {
            parse(
                "inbound",
                Some(MatchInput {
                    destinations,
                    ports,
                }),
            )
            .unwrap_err()
            .0
        };
        assert_eq!(
            bad(vec!["10.0.0.0/33".into()], vec![]),
            "match.destinations[0]"
        );
        assert_eq!(bad(vec![], vec![80, 0]), "match.ports[1]");
    }
}
