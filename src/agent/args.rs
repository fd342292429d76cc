//! The arguments of `faultline agent ...`, parsed into typed values: the agent's address,
//! durations, a toxicity, `KEY=VALUE` attributes already turned into JSON values.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::api::{NewToxic, Stream};
use super::client::AgentAddr;
use crate::cli::Misuse;
use crate::duration;
use crate::output::Format;

#[derive(Debug, Args)]
#[command(subcommand_required = true, arg_required_else_help = true)]
pub struct AgentArgs {
    /// Admin API address of the agent, HOST:PORT (an http:// prefix is accepted).
    #[arg(
        long,
        global = true,
        env = "FAULTLINE_AGENT",
        default_value = "127.0.0.1:8474",
        value_name = "ADDR"
    )]
    pub agent: AgentAddr,

    /// Give up when the agent has not answered within this long (e.g. 500ms, 10s).
    #[arg(
        long,
        global = true,
        default_value = "10s",
        value_parser = duration::parse,
        value_name = "DURATION"
    )]
    pub timeout: Duration,

    /// The agent's admin token (its --admin-token-file), sent as `Authorization: Bearer`;
    /// best given as FAULTLINE_ADMIN_TOKEN, since a command line shows in `ps`.
    #[arg(
        long,
        global = true,
        env = "FAULTLINE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,

    /// A file holding the agent's admin token; takes precedence over --admin-token.
    #[arg(
        long,
        global = true,
        env = "FAULTLINE_ADMIN_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub admin_token_file: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List routes: name, listen and upstream addresses, whether enabled, number of faults.
    Routes {
        /// Output format (json: the agent's response as is).
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },

    /// Create, remove, enable or disable a route.
    #[command(subcommand)]
    Route(RouteCommand),

    /// List the faults on a route: name, type, stream, toxicity, attributes.
    Faults {
        /// The route whose faults to list.
        route: String,

        /// Output format (json: the agent's response as is).
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },

    /// Add or remove a fault on a route.
    #[command(subcommand)]
    Fault(FaultCommand),

    /// Enable every route and remove every fault added through the admin API.
    Reset,
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Create a route: the agent listens on --listen and forwards connections to --upstream.
    Add {
        /// Name of the route, unique on the agent.
        name: String,

        /// Address to listen on, HOST:PORT (port 0 picks a free port; the chosen address is
        /// printed).
        #[arg(long, value_name = "ADDR")]
        listen: String,

        /// Address to forward connections to, HOST:PORT.
        #[arg(long, value_name = "ADDR")]
        upstream: String,
    },

    /// Remove a route.
    #[command(visible_alias = "remove")]
    Rm {
        /// Name of the route.
        name: String,
    },

    /// Enable a route: the agent accepts connections on its listen address again.
    Enable {
        /// Name of the route.
        name: String,
    },

    /// Disable a route: the agent stops listening, so new connections are refused.
    Disable {
        /// Name of the route.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Add a fault to a route.
    Add(FaultAdd),

    /// Remove a fault from a route.
    #[command(visible_alias = "remove")]
    Rm {
        /// The route the fault is on.
        route: String,

        /// Name of the fault.
        name: String,
    },
}

/// Add a fault to a route.
#[derive(Debug, Args)]
#[command(after_long_help = FAULT_TYPES)]
pub struct FaultAdd {
    /// The route to add the fault to.
    pub route: String,

    /// Fault type (see the list below; the agent checks it).
    #[arg(long = "type", short = 't', value_name = "TYPE")]
    pub kind: String,

    /// Name of the fault, unique on the route [default: TYPE_STREAM, e.g. latency_downstream].
    #[arg(long, short, value_name = "NAME")]
    pub name: Option<String>,

    /// Which direction of the connection the fault acts on [default: downstream].
    #[arg(long, short, value_enum)]
    pub stream: Option<Stream>,

    /// Probability, from 0 to 1, that a connection is affected [default: 1].
    #[arg(
        long,
        value_parser = parse_toxicity,
        allow_negative_numbers = true,
        value_name = "P"
    )]
    pub toxicity: Option<f64>,

    /// A fault attribute, KEY=VALUE; repeat for several. Integers are sent as numbers,
    /// `cidrs` as a list (comma-separated), anything else as a string.
    #[arg(long = "attr", short = 'a', value_parser = parse_attr, value_name = "KEY=VALUE")]
    pub attrs: Vec<Attr>,

    /// Remove the fault by itself after this long (e.g. 30s, 5m, 1h30m).
    #[arg(long, value_parser = duration::parse, value_name = "DURATION")]
    pub expires_in: Option<Duration>,
}

const FAULT_TYPES: &str = "\
Fault types and their attributes (Toxiproxy's names and units; an agent may know
more types, and its error for an unknown one lists them all):
  latency      latency, jitter (ms)
  bandwidth    rate (KB/s)
  slicer       average_size, size_variation (bytes), delay (µs)
  slow_close   delay (ms)
  timeout      timeout (ms; 0 holds the connection until the fault is removed)
  reset_peer   timeout (ms)
  limit_data   bytes
  down         (none)
  partition    cidrs (list), peer (client|upstream), action (refuse|blackhole)

Request-level types, on http and grpc routes (toxicity is then per request; a `match` or
`cohort` needs the admin API's JSON, e.g. POST /faultline/v1/routes/ROUTE/rules):
  http_abort     status (200..599), body
  http_delay     delay, jitter (ms), phase (request|response)
  http_throttle  bytes_per_second
  http_reset     phase (before_response|mid_response), after_bytes
  grpc_abort     code (1..16 or a name such as UNAVAILABLE), message
  grpc_stream    after_messages, after (ms), action (reset|status), code, message, message_delay (ms)

Examples:
  faultline agent fault add api --type latency --attr latency=200 --attr jitter=50
  faultline agent fault add db --type partition --attr cidrs=10.0.0.0/8,10.1.2.3 --expires-in 5m";

/// One `--attr KEY=VALUE`, with the value already in its JSON form.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub key: String,
    pub value: Value,
}

// === impl AgentArgs ===

impl AgentArgs {
    /// Checks across values what clap checks one value at a time.
    pub fn check(&self) -> Result<(), Misuse> {
        match &self.command {
            AgentCommand::Fault(FaultCommand::Add(add)) => add.check().map_err(|message| Misuse {
                command: &["agent", "fault", "add"],
                message,
            }),
            _ => Ok(()),
        }
    }
}

// === impl FaultAdd ===

impl FaultAdd {
    fn check(&self) -> Result<(), String> {
        for (i, attr) in self.attrs.iter().enumerate() {
            if self.attrs[..i].iter().any(|a| a.key == attr.key) {
                return Err(format!("--attr {} is given more than once", attr.key));
            }
        }
        Ok(())
    }

    /// The body of `POST /proxies/{route}/toxics`.
    pub fn to_request(&self) -> NewToxic {
        let attributes: Map<String, Value> = self
            .attrs
            .iter()
            .map(|a| (a.key.clone(), a.value.clone()))
            .collect();
        NewToxic {
            name: self.name.clone(),
            kind: self.kind.clone(),
            stream: self.stream,
            toxicity: self.toxicity,
            attributes,
            expires_in: self
                .expires_in
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

// === value parsers ===

/// A number; whether it lies in 0..=1 is the agent's to say (its error names `toxicity`).
fn parse_toxicity(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if p.is_finite() => Ok(p),
        _ => Err(format!("{s:?} is not a number (expected e.g. 0.5)")),
    }
}

/// `KEY=VALUE`: integers become JSON numbers, `cidrs` a list of strings, the rest strings.
fn parse_attr(s: &str) -> Result<Attr, String> {
    let (key, raw) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("{s:?} has no key (expected KEY=VALUE)"));
    }
    let value = if key == "cidrs" {
        Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| Value::String(c.to_string()))
                .collect(),
        )
    } else if let Ok(n) = raw.parse::<i64>() {
        Value::from(n)
    } else if let Ok(n) = raw.parse::<u64>() {
        Value::from(n)
    } else {
        Value::String(raw.to_string())
    };
    Ok(Attr {
        key: key.to_string(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attr(s: &str) -> (String, Value) {
        let a = parse_attr(s).unwrap();
        (a.key, a.value)
    }

    #[test]
    fn attribute_values_take_their_json_type() {
        assert_eq!(attr("latency=100"), ("latency".into(), json!(100)));
        assert_eq!(attr("latency=-5"), ("latency".into(), json!(-5)));
        assert_eq!(
            attr("bytes=18446744073709551615"),
            ("bytes".into(), json!(u64::MAX))
        );
        assert_eq!(
            attr("action=blackhole"),
            ("action".into(), json!("blackhole"))
        );
        assert_eq!(attr("rate=1.5"), ("rate".into(), json!("1.5")));
        assert_eq!(attr("peer="), ("peer".into(), json!("")));
        assert_eq!(attr("note=a=b"), ("note".into(), json!("a=b")));
        assert_eq!(
            attr("cidrs=10.0.0.0/8, 192.168.1.1"),
            ("cidrs".into(), json!(["10.0.0.0/8", "192.168.1.1"]))
        );
        assert_eq!(
            attr("cidrs=127.0.0.1"),
            ("cidrs".into(), json!(["127.0.0.1"]))
        );
    }

    #[test]
    fn malformed_attributes_are_refused() {
        assert!(parse_attr("latency").is_err());
        assert!(parse_attr("=100").is_err());
    }

    #[test]
    fn toxicity_must_be_a_finite_number() {
        assert_eq!(parse_toxicity("0.25"), Ok(0.25));
        assert_eq!(parse_toxicity("1.5"), Ok(1.5));
        for bad in ["half", "", "NaN", "inf"] {
            assert!(parse_toxicity(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fault_add_becomes_a_toxiproxy_body() {
        let add = FaultAdd {
            route: "api".into(),
            kind: "latency".into(),
            name: Some("slow".into()),
            stream: Some(Stream::Upstream),
            toxicity: Some(0.5),
            attrs: vec![parse_attr("latency=100").unwrap()],
            expires_in: Some(Duration::from_secs(30)),
        };
        assert_eq!(add.check(), Ok(()));
        assert_eq!(
            serde_json::to_value(add.to_request()).unwrap(),
            json!({
                "name": "slow",
                "type": "latency",
                "stream": "upstream",
                "toxicity": 0.5,
                "attributes": {"latency": 100},
                "expires_in": 30000,
            })
        );
    }

    #[test]
    fn defaults_are_left_to_the_agent() {
        let add = FaultAdd {
            route: "api".into(),
            kind: "down".into(),
            name: None,
            stream: None,
            toxicity: None,
            attrs: vec![],
            expires_in: None,
        };
        assert_eq!(
            serde_json::to_value(add.to_request()).unwrap(),
            json!({"type": "down", "attributes": {}})
        );
    }

    #[test]
    fn a_repeated_attribute_is_a_usage_error() {
        let add = FaultAdd {
            route: "api".into(),
            kind: "latency".into(),
            name: None,
            stream: None,
            toxicity: None,
            attrs: vec![
                parse_attr("latency=1").unwrap(),
                parse_attr("latency=2").unwrap(),
            ],
            expires_in: None,
        };
        assert!(add.check().unwrap_err().contains("--attr latency"));
    }
}
