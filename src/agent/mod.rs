//! `faultline agent ...`: drive one agent's admin API.
//!
//! - [`args`]: the subcommands and their flags, parsed into typed values.
//! - [`client`]: the HTTP client for the admin API and the agent's address.
//! - [`api`]: the JSON shapes exchanged with the agent (Toxiproxy's), and its error body.
//!
//! This module runs one command: a request through the client, then a table, the agent's JSON
//! or a one-line confirmation on stdout.

pub mod api;
pub mod args;
pub mod client;

use serde_json::Value;

use self::api::{NewProxy, Proxy, Toxic};
use self::args::{AgentArgs, AgentCommand, FaultCommand, RouteCommand};
use self::client::AgentClient;
use crate::output::{self, Format, Table};

/// Runs one `faultline agent` command against the agent named by `--agent`.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let token = match &args.admin_token_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("--admin-token-file: cannot read {}: {e}", path.display())
        })?),
        None => args.admin_token.clone(),
    };
    let client = AgentClient::new(args.agent, args.timeout)
        .with_token(token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()));
    match args.command {
        AgentCommand::Routes { output } => match output {
            Format::Json => output::json(&client.proxies_raw().await?),
            Format::Table => output::table(&routes_table(&client.proxies().await?)),
        },

        AgentCommand::Route(RouteCommand::Add {
            name,
            listen,
            upstream,
        }) => {
            let proxy = client
                .create_proxy(&NewProxy {
                    name: &name,
                    listen: &listen,
                    upstream: &upstream,
                    enabled: true,
                })
                .await?;
            output::line(&format!(
                "route {} created: listening on {}, forwarding to {}",
                proxy.name, proxy.listen, proxy.upstream
            ))
        }
        AgentCommand::Route(RouteCommand::Rm { name }) => {
            client.delete_proxy(&name).await?;
            output::line(&format!("route {name} removed"))
        }
        AgentCommand::Route(RouteCommand::Enable { name }) => {
            let proxy = client.set_enabled(&name, true).await?;
            output::line(&format!("route {} enabled", proxy.name))
        }
        AgentCommand::Route(RouteCommand::Disable { name }) => {
            let proxy = client.set_enabled(&name, false).await?;
            output::line(&format!("route {} disabled", proxy.name))
        }

        AgentCommand::Faults { route, output } => match output {
            Format::Json => output::json(&client.toxics_raw(&route).await?),
            Format::Table => output::table(&faults_table(&client.toxics(&route).await?)),
        },

        AgentCommand::Fault(FaultCommand::Add(add)) => {
            let toxic = client.add_toxic(&add.route, &add.to_request()).await?;
            output::line(&format!(
                "fault {} added to route {}: {} on {}, toxicity {}",
                toxic.name, add.route, toxic.kind, toxic.stream, toxic.toxicity
            ))
        }
        AgentCommand::Fault(FaultCommand::Rm { route, name }) => {
            client.delete_toxic(&route, &name).await?;
            output::line(&format!("fault {name} removed from route {route}"))
        }

        AgentCommand::Reset => {
            client.reset().await?;
            output::line("agent reset: every route enabled, every admin-added fault removed")
        }
    }
}

fn routes_table(proxies: &[Proxy]) -> Table {
    let mut table = Table::new(vec!["NAME", "LISTEN", "UPSTREAM", "ENABLED", "FAULTS"]);
    for p in proxies {
        table.row(vec![
            p.name.clone(),
            p.listen.clone(),
            p.upstream.clone(),
            p.enabled.to_string(),
            p.toxics.len().to_string(),
        ]);
    }
    table
}

fn faults_table(toxics: &[Toxic]) -> Table {
    let mut table = Table::new(vec!["NAME", "TYPE", "STREAM", "TOXICITY", "ATTRIBUTES"]);
    for t in toxics {
        let attributes: Vec<String> = t
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={}", attribute_text(v)))
            .collect();
        table.row(vec![
            t.name.clone(),
            t.kind.clone(),
            t.stream.clone(),
            t.toxicity.to_string(),
            attributes.join(" "),
        ]);
    }
    table
}

/// An attribute value as it would be typed after `--attr KEY=`: strings unquoted, lists
/// comma-separated.
fn attribute_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(attribute_text)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rows_read_like_the_flags_that_made_them() {
        let toxics: Vec<Toxic> = serde_json::from_value(serde_json::json!([
            {"name": "cut", "type": "partition", "stream": "both", "toxicity": 0.25,
             "attributes": {"cidrs": ["10.0.0.0/8", "10.1.2.3/32"], "action": "refuse", "peer": "client"}},
        ]))
        .unwrap();
        let mut out = Vec::new();
        faults_table(&toxics).write_to(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME  TYPE       STREAM  TOXICITY  ATTRIBUTES\n\
             cut   partition  both    0.25      action=refuse cidrs=10.0.0.0/8,10.1.2.3/32 peer=client\n"
        );
    }
}
