//! The `faultline agent ...` commands, run as the built binary against an agent started in this
//! process: what they print, what they change on the agent (read back through its admin API),
//! and their exit codes (0 ok, 1 agent unreachable or request refused, 2 usage error).

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use support::http;
use support::servers::{self, round_trip};
use tokio::net::TcpStream;
use tokio::process::Command;

// === helpers ===

/// What one run of the CLI did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `faultline agent --agent ADMIN ARGS...`; `args` are split at whitespace.
async fn faultline(admin: SocketAddr, args: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.arg("agent").arg("--agent").arg(admin.to_string());
    cmd.args(args.split_whitespace())
        .env_remove("FAULTLINE_AGENT");
    exec(cmd).await
}

/// Runs the CLI with just `args` (no `agent`, no `--agent`).
async fn faultline_raw(args: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.args(args.split_whitespace())
        .env_remove("FAULTLINE_AGENT");
    exec(cmd).await
}

async fn exec(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the CLI finishes within 30s")
        .expect("the CLI starts");
    Run {
        code: out
            .status
            .code()
            .expect("the CLI exits, not killed by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// Asserts success with nothing on stderr, and returns stdout.
fn ok(run: Run) -> String {
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stderr, "", "{run:#?}");
    run.stdout
}

/// A table's cells: columns are at least two spaces apart, and no cell holds two spaces.
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

/// The faults on `route`, read through the admin API.
async fn toxics(admin: SocketAddr, route: &str) -> Value {
    let r = http::request(admin, "GET", &format!("/proxies/{route}/toxics"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// A route, read through the admin API.
async fn proxy(admin: SocketAddr, route: &str) -> Value {
    let r = http::request(admin, "GET", &format!("/proxies/{route}"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

// === faults ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_add_list_and_remove() {
    let agent = support::agent().await;
    let upstream = servers::echo().await;
    let listen = agent.route("api", upstream);

    let out = ok(faultline(
        agent.admin,
        "fault add api --type latency --name slow --stream upstream --toxicity 0.5 \
         --attr latency=100 --attr jitter=10 --expires-in 1h",
    )
    .await);
    assert_eq!(
        out,
        "fault slow added to route api: latency on upstream, toxicity 0.5\n"
    );

    // The agent holds exactly what the flags said, attribute integers as JSON numbers.
    let on_agent = toxics(agent.admin, "api").await;
    let fault = &on_agent[0];
    assert_eq!(on_agent.as_array().map(Vec::len), Some(1), "{on_agent}");
    assert_eq!(fault["name"], "slow");
    assert_eq!(fault["type"], "latency");
    assert_eq!(fault["stream"], "upstream");
    assert_eq!(fault["toxicity"], 0.5);
    assert_eq!(fault["attributes"], json!({"latency": 100, "jitter": 10}));
    assert!(
        fault["expires_at"].is_string(),
        "--expires-in sets an expiry: {fault}"
    );

    let table = ok(faultline(agent.admin, "faults api").await);
    assert_eq!(
        cells(&table),
        [
            vec!["NAME", "TYPE", "STREAM", "TOXICITY", "ATTRIBUTES"],
            vec![
                "slow",
                "latency",
                "upstream",
                "0.5",
                "jitter=10 latency=100"
            ],
        ],
        "{table}"
    );

    let listed: Value =
        serde_json::from_str(&ok(faultline(agent.admin, "faults api -o json").await))
            .expect("-o json prints JSON");
    assert_eq!(listed[0]["name"], "slow");
    assert_eq!(
        listed[0]["attributes"],
        json!({"latency": 100, "jitter": 10})
    );

    let table = ok(faultline(agent.admin, "routes").await);
    let (listen, upstream) = (listen.to_string(), upstream.to_string());
    assert_eq!(
        cells(&table),
        [
            vec!["NAME", "LISTEN", "UPSTREAM", "ENABLED", "FAULTS"],
            vec!["api", &listen, &upstream, "true", "1"],
        ],
        "{table}"
    );

    let out = ok(faultline(agent.admin, "fault rm api slow").await);
    assert_eq!(out, "fault slow removed from route api\n");
    assert_eq!(toxics(agent.admin, "api").await, json!([]));
    let table = ok(faultline(agent.admin, "faults api").await);
    assert_eq!(table, "NAME  TYPE  STREAM  TOXICITY  ATTRIBUTES\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cidrs_become_a_list_and_defaults_come_from_the_agent() {
    let agent = support::agent().await;
    agent.route("db", servers::echo().await);

    let out = ok(faultline(
        agent.admin,
        "fault add db -t partition -s both -a cidrs=10.0.0.0/8,192.0.2.1 -a action=blackhole",
    )
    .await);
    assert_eq!(
        out,
        "fault partition_both added to route db: partition on both, toxicity 1\n"
    );
    let on_agent = toxics(agent.admin, "db").await;
    assert_eq!(on_agent[0]["name"], "partition_both");
    assert_eq!(on_agent[0]["toxicity"], 1.0);
    assert_eq!(
        on_agent[0]["attributes"],
        json!({"cidrs": ["10.0.0.0/8", "192.0.2.1/32"], "peer": "client", "action": "blackhole"})
    );
    assert!(on_agent[0].get("expires_at").is_none(), "{on_agent}");

    let table = ok(faultline(agent.admin, "faults db").await);
    assert_eq!(
        cells(&table)[1],
        [
            "partition_both",
            "partition",
            "both",
            "1",
            "action=blackhole cidrs=10.0.0.0/8,192.0.2.1/32 peer=client"
        ],
        "{table}"
    );
}

// === routes and reset ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_add_disable_enable_remove() {
    let agent = support::agent().await;
    let upstream = servers::echo().await;

    let out = ok(faultline(
        agent.admin,
        &format!("route add web --listen 127.0.0.1:0 --upstream {upstream}"),
    )
    .await);
    let listen: SocketAddr = out
        .strip_prefix("route web created: listening on ")
        .and_then(|rest| rest.strip_suffix(&format!(", forwarding to {upstream}\n")))
        .unwrap_or_else(|| panic!("unexpected confirmation: {out:?}"))
        .parse()
        .expect("the chosen listen address is printed");
    let mut conn = TcpStream::connect(listen)
        .await
        .expect("the new route listens");
    assert_eq!(round_trip(&mut conn, b"hello").await, b"hello");
    drop(conn);

    assert_eq!(
        ok(faultline(agent.admin, "route disable web").await),
        "route web disabled\n"
    );
    assert_eq!(proxy(agent.admin, "web").await["enabled"], false);
    let refused = TcpStream::connect(listen).await;
    assert!(refused.is_err(), "a disabled route refuses connections");

    assert_eq!(
        ok(faultline(agent.admin, "route enable web").await),
        "route web enabled\n"
    );
    assert_eq!(proxy(agent.admin, "web").await["enabled"], true);
    support::eventually(
        "the re-enabled route to accept",
        Duration::from_secs(5),
        || async { TcpStream::connect(listen).await.ok() },
    )
    .await;

    let listed: Value = serde_json::from_str(&ok(faultline(agent.admin, "routes -o json").await))
        .expect("-o json prints JSON");
    assert_eq!(listed["web"]["listen"], listen.to_string());
    assert_eq!(listed["web"]["upstream"], upstream.to_string());
    assert_eq!(listed["web"]["enabled"], true);

    assert_eq!(
        ok(faultline(agent.admin, "route rm web").await),
        "route web removed\n"
    );
    assert_eq!(
        ok(faultline(agent.admin, "routes").await),
        "NAME  LISTEN  UPSTREAM  ENABLED  FAULTS\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_enables_routes_and_removes_faults() {
    let agent = support::agent().await;
    agent.route("api", servers::echo().await);
    agent
        .toxic(
            "api",
            json!({"type": "latency", "attributes": {"latency": 100}}),
        )
        .await;
    ok(faultline(agent.admin, "route disable api").await);

    let out = ok(faultline(agent.admin, "reset").await);
    assert_eq!(
        out,
        "agent reset: every route enabled, every admin-added fault removed\n"
    );
    let api = proxy(agent.admin, "api").await;
    assert_eq!(api["enabled"], true, "{api}");
    assert_eq!(api["toxics"], json!([]), "{api}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_address_comes_from_the_environment() {
    let agent = support::agent().await;
    agent.route("api", servers::echo().await);

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.args(["agent", "routes"])
        .env("FAULTLINE_AGENT", format!("http://{}/", agent.admin));
    let table = ok(exec(cmd).await);
    assert_eq!(cells(&table)[1][0], "api", "{table}");
}

// === errors and exit codes ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_exits_1_with_the_agents_message() {
    let agent = support::agent().await;
    agent.route("api", servers::echo().await);

    let run = faultline(agent.admin, "fault add api --type latency --toxicity 1.5").await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.stdout, "", "{run:#?}");
    assert_eq!(
        run.stderr,
        "faultline: the agent refused the request (400 Bad Request): \
         bad request body: toxicity: must be between 0 and 1, got 1.5\n"
    );
    assert_eq!(toxics(agent.admin, "api").await, json!([]));

    let run = faultline(agent.admin, "fault add api --type lag").await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("invalid toxic type: \"lag\""),
        "{run:#?}"
    );

    let run = faultline(
        agent.admin,
        "fault add api --type latency --attr latency=-5",
    )
    .await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(run.stderr.contains("attributes.latency"), "{run:#?}");

    let run = faultline(agent.admin, "faults nope").await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stderr,
        "faultline: the agent refused the request (404 Not Found): \
         proxy not found: no route named \"nope\"\n"
    );

    let run = faultline(agent.admin, "fault rm api nope").await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("has no fault named \"nope\""),
        "{run:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_command_lines_exit_2_and_send_nothing() {
    let agent = support::agent().await;
    agent.route("api", servers::echo().await);

    let cases = [
        ("frobnicate", "unrecognized subcommand 'frobnicate'"),
        ("fault add api", "--type <TYPE>"),
        (
            "fault add api -t latency --attr latency",
            "\"latency\" is not KEY=VALUE",
        ),
        (
            "fault add api -t latency -a latency=1 -a latency=2",
            "--attr latency is given more than once",
        ),
        (
            "fault add api -t latency --toxicity half",
            "\"half\" is not a number",
        ),
        (
            "fault add api -t latency --stream sideways",
            "invalid value 'sideways'",
        ),
        (
            "fault add api -t latency --expires-in 30",
            "\"30\" has no unit",
        ),
        ("routes -o yaml", "invalid value 'yaml'"),
    ];
    for (args, message) in cases {
        let run = faultline(agent.admin, args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:#?}");
        assert_eq!(run.stdout, "", "{args:?}: {run:#?}");
        assert!(run.stderr.contains(message), "{args:?}: {run:#?}");
    }
    assert_eq!(toxics(agent.admin, "api").await, json!([]));

    // A check across values still shows the usage of the subcommand at fault.
    let run = faultline(
        agent.admin,
        "fault add api -t latency -a jitter=1 -a jitter=2",
    )
    .await;
    assert!(
        run.stderr
            .contains("Usage: faultline agent fault add [OPTIONS] --type <TYPE> <ROUTE>"),
        "{run:#?}"
    );

    let run = faultline_raw("agent routes --agent localhost").await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("is not HOST:PORT"), "{run:#?}");

    let run = faultline_raw("nope").await;
    assert_eq!(run.code, 2, "{run:#?}");
}

#[tokio::test]
async fn an_unreachable_agent_exits_1_and_says_where_it_looked() {
    let closed = servers::closed_port().await;
    let run = faultline(closed, "routes").await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.stdout, "", "{run:#?}");
    assert!(
        run.stderr
            .starts_with(&format!("faultline: cannot reach the agent at {closed}: ")),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("--agent or FAULTLINE_AGENT"),
        "{run:#?}"
    );
}

#[tokio::test]
async fn an_agent_that_never_answers_times_out_with_exit_1() {
    let silent = servers::sink().await;
    let run = faultline(silent, "--timeout 200ms routes").await;
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(
        run.stderr,
        format!("faultline: the agent at {silent} did not answer GET /proxies within 200ms\n")
    );
}

#[tokio::test]
async fn help_documents_the_exit_codes() {
    let run = faultline_raw("--help").await;
    assert_eq!(run.code, 0, "{run:#?}");
    for line in [
        "Exit codes:",
        "  0  success",
        "  1  the agent could not be reached, or it refused the request",
        "  2  usage error",
    ] {
        assert!(
            run.stdout.contains(line),
            "{line:?} missing from:\n{}",
            run.stdout
        );
    }
}
