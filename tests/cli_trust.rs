//! The `faultline` CLI against a controller with mTLS and tokens, with certificates the CLI
//! itself made (`faultline certs init | issue`): the controller (in-process on 127.0.0.1:0)
//! and the agent load them with the loaders their binaries use. Also `faultline agent`
//! against an admin API with a token.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use faultline_agent::admin::auth::AdminToken;
use faultline_agent::app::Agent;
use faultline_agent::config::{AgentConfig, ClientTls, ControllerConfig};
use faultline_agent::route::{RouteSpec, Upstream};
use faultline_controller::auth::{ServerTls, Tokens, Trust};
use faultline_controller::config::Config;
use faultline_controller::server::Server;

use support::controller::Run;
use support::eventually;

const TOKEN: &str = "cli-token-0123456789abcdef";

/// Runs the built CLI with `envs` and none of the caller's FAULTLINE_* credentials.
async fn cli(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
    for var in [
        "FAULTLINE_TOKEN",
        "FAULTLINE_TOKEN_FILE",
        "FAULTLINE_CA",
        "FAULTLINE_CERT",
        "FAULTLINE_KEY",
        "FAULTLINE_ADMIN_TOKEN",
        "FAULTLINE_ADMIN_TOKEN_FILE",
    ] {
        command.env_remove(var);
    }
    let out = command
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .await
        .expect("run faultline");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("faultline-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `faultline certs init` and `issue` for a controller, an agent and an operator in `dir`.
async fn make_certs(dir: &Path) {
    let ok = |r: Run| assert_eq!(r.code, 0, "{r:?}");
    ok(cli(&["certs", "init", "--out", s(dir)], &[]).await);
    for (name, role) in [
        ("ctl", "controller"),
        ("agent-a", "agent"),
        ("ops", "operator"),
    ] {
        ok(cli(
            &[
                "certs",
                "issue",
                "--ca-dir",
                s(dir),
                "--out",
                s(dir),
                name,
                "--role",
                role,
            ],
            &[],
        )
        .await);
    }
}

#[tokio::test]
async fn the_cli_needs_a_valid_token_or_operator_certificate_and_certs_made_by_it_work() {
    let dir = temp_dir("cli-trust");
    make_certs(&dir).await;
    let again = cli(&["certs", "init", "--out", s(&dir)], &[]).await;
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("already exists") && again.stderr.contains("--force"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("agent-a-key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "key files are private");

    // The controller and the agent load what the CLI wrote, as their binaries do.
    let f = |name: &str| dir.join(name);
    std::fs::write(f("tokens"), format!("# operators\nci {TOKEN}\n")).unwrap();
    let trust = Trust {
        tls: ServerTls::load(
            Some(&f("ctl.pem")),
            Some(&f("ctl-key.pem")),
            Some(&f("ca.pem")),
        )
        .unwrap(),
        tokens: Some(Arc::new(Tokens::load(&f("tokens")).unwrap())),
        insecure: false,
    };
    let server = Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: f("data"),
        caps: Default::default(),
    })
    .await
    .unwrap()
    .with_trust(trust)
    .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    let url = format!("https://{addr}");
    let tls = ClientTls::load(
        &f("ca.pem"),
        Some(&f("agent-a.pem")),
        Some(&f("agent-a-key.pem")),
    )
    .unwrap();
    let agent = Agent::start(&AgentConfig {
        routes: vec![RouteSpec::tcp(
            "r",
            "127.0.0.1:0",
            Upstream::Addr("127.0.0.1:9".parse().unwrap()),
        )],
        controller: Some(
            ControllerConfig::with_tls(&url, "agent-a", BTreeMap::new(), tls).unwrap(),
        ),
        ..AgentConfig::embedded()
    })
    .await
    .unwrap();
    eventually(
        "the agent to connect over mTLS",
        Duration::from_secs(10),
        || async { agent.table.lease().map(|_| ()) },
    )
    .await;

    let ca = s(&f("ca.pem")).to_owned();
    let base = [
        ("FAULTLINE_CONTROLLER", url.as_str()),
        ("FAULTLINE_CA", ca.as_str()),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };

    let none = cli(&["get", "agents"], &base).await;
    assert_eq!(none.code, 1, "{none:?}");
    assert!(
        none.stderr.contains("UNAUTHENTICATED") && none.stderr.contains("--token-file"),
        "{none:?}"
    );
    let wrong = cli(
        &["get", "agents"],
        &with(&[("FAULTLINE_TOKEN", "not-the-token-0123456789")]),
    )
    .await;
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(
        wrong
            .stderr
            .contains("UNAUTHENTICATED: the bearer token is not valid"),
        "{wrong:?}"
    );

    std::fs::write(f("my-token"), format!("{TOKEN}\n")).unwrap();
    let token_file = s(&f("my-token")).to_owned();
    let good = cli(&["get", "agents", "--token-file", &token_file], &base).await;
    assert_eq!(good.code, 0, "{good:?}");
    assert!(good.stdout.contains("agent-a"), "{good:?}");
    let by_env = cli(
        &["get", "experiments"],
        &with(&[("FAULTLINE_TOKEN", TOKEN)]),
    )
    .await;
    assert_eq!(by_env.code, 0, "{by_env:?}");

    let (cert, key) = (s(&f("ops.pem")).to_owned(), s(&f("ops-key.pem")).to_owned());
    let by_cert = cli(&["get", "agents", "--cert", &cert, "--key", &key], &base).await;
    assert_eq!(by_cert.code, 0, "{by_cert:?}");
    let (cert, key) = (
        s(&f("agent-a.pem")).to_owned(),
        s(&f("agent-a-key.pem")).to_owned(),
    );
    let as_agent = cli(&["get", "agents", "--cert", &cert, "--key", &key], &base).await;
    assert_eq!(as_agent.code, 1, "{as_agent:?}");
    assert!(
        as_agent.stderr.contains("PERMISSION_DENIED"),
        "{as_agent:?}"
    );

    let plain_url = format!("http://{addr}");
    let plain = cli(
        &["get", "agents"],
        &[
            ("FAULTLINE_CONTROLLER", plain_url.as_str()),
            ("FAULTLINE_TOKEN", TOKEN),
        ],
    )
    .await;
    assert_ne!(plain.code, 0, "{plain:?}");
    assert!(plain.stderr.contains("https://"), "{plain:?}");

    // The audit log, through the CLI: every call above, oldest first.
    let refused = cli(&["audit"], &base).await;
    assert_eq!(
        refused.code, 1,
        "the audit log is for operators too: {refused:?}"
    );
    let audit = cli(
        &["audit", "-o", "json"],
        &with(&[("FAULTLINE_TOKEN", TOKEN)]),
    )
    .await;
    assert_eq!(audit.code, 0, "{audit:?}");
    let doc: serde_json::Value = serde_json::from_str(&audit.stdout).unwrap();
    let rows = doc["records"].as_array().unwrap();
    let first = &rows[0];
    assert_eq!(
        (&first["principal"], &first["action"], &first["outcome"]),
        (
            &"unauthenticated".into(),
            &"AgentRegistry/List".into(),
            &"denied".into()
        ),
        "{first}"
    );
    assert!(
        first["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{first}"
    );
    let who: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["principal"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("unauthenticated", "denied"),
            ("invalid-token", "denied"),
            ("token:ci", "ok"),
            ("token:ci", "ok"),
            ("operator:ops", "ok"),
            ("agent:agent-a", "denied"),
            ("unauthenticated", "denied"),
            // This very call, read while it runs.
            ("token:ci", "allowed"),
        ]
    );
    let table = cli(&["audit"], &with(&[("FAULTLINE_TOKEN", TOKEN)])).await;
    assert!(table.stdout.starts_with("AT "), "{table:?}");

    agent.shutdown(Duration::from_secs(1)).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn faultline_agent_sends_the_admin_token() {
    let agent = Agent::start(&AgentConfig {
        admin_token: Some(AdminToken::new("admin-token-0123456789").unwrap()),
        ..AgentConfig::embedded()
    })
    .await
    .unwrap();
    let admin = agent.admin_addr.to_string();
    let refused = cli(&["agent", "--agent", &admin, "routes"], &[]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("401") || refused.stderr.contains("bearer token"),
        "{refused:?}"
    );
    let ok = cli(
        &["agent", "--agent", &admin, "routes"],
        &[("FAULTLINE_ADMIN_TOKEN", "admin-token-0123456789")],
    )
    .await;
    assert_eq!(ok.code, 0, "{ok:?}");
    agent.shutdown(Duration::from_secs(1)).await;
}
