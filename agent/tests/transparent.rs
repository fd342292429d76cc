//! Transparent capture for real: two network namespaces joined by a veth pair, the agent and
//! its iptables rules in namespace A, servers in namespace B, and an app in A that calls B
//! without knowing about the agent. Needs root; without it each test prints why and passes.

mod netns;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netns::{Pair, admin, echo_server, get_in, http_server, metric, metric_sum, ping_in};

const AGENT: &str = env!("CARGO_BIN_EXE_faultline-agent");
/// The agent's admin API inside namespace A (the namespace is the test's own, so fixed ports
/// cannot collide with anything).
const ADMIN: &str = "127.0.0.1:8474";
const MARK: &str = "0x1e7";

/// The agent running in namespace A, killed (by its PID) when the test ends.
struct AgentProc {
    child: Child,
    admin: SocketAddr,
    config: std::path::PathBuf,
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

fn start_agent(pair: &Pair, config: &str, extra: &[&str]) -> AgentProc {
    start_agent_on(pair, config, "0.0.0.0:15001", "0.0.0.0:15006", extra)
}

fn start_agent_on(
    pair: &Pair,
    config: &str,
    outbound: &str,
    inbound: &str,
    extra: &[&str],
) -> AgentProc {
    let path = std::env::temp_dir().join(format!("{}-agent.yaml", pair.a));
    std::fs::write(&path, config).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &pair.a, AGENT])
        .args(["--admin", ADMIN, "--threads", "1", "--config"])
        .arg(&path)
        .args(["--capture-outbound", outbound, "--capture-inbound", inbound])
        .args(extra)
        .env("FAULTLINE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the agent starts");
    let agent = AgentProc {
        child,
        admin: ADMIN.parse().unwrap(),
        config: path,
    };
    netns::wait_ready(&pair.a, agent.admin);
    agent
}

fn init_iptables(pair: &Pair, flags: &[&str]) {
    let mut args = vec!["init-iptables"];
    args.extend_from_slice(flags);
    let (ok, out) = pair.exec(&pair.a, AGENT, &args);
    assert!(ok, "init-iptables {flags:?}: {out}");
}

fn iptables_save(pair: &Pair, program: &str) -> String {
    let (ok, out) = pair.exec(&pair.a, program, &[]);
    assert!(ok, "{program}: {out}");
    out
}

fn metrics(pair: &Pair, agent: &AgentProc) -> String {
    admin(&pair.a, agent.admin, "GET", "/metrics", "").body
}

fn add_fault(pair: &Pair, agent: &AgentProc, route: &str, json: &str) {
    let a = admin(
        &pair.a,
        agent.admin,
        "POST",
        &format!("/proxies/{route}/toxics"),
        json,
    );
    assert_eq!(a.status, 200, "add fault to {route}: {}", a.body);
}

fn remove_fault(pair: &Pair, agent: &AgentProc, route: &str, name: &str) {
    let path = format!("/proxies/{route}/toxics/{name}");
    let a = admin(&pair.a, agent.admin, "DELETE", &path, "");
    assert_eq!(a.status, 204, "remove {name}: {}", a.body);
}

/// Captured routes: B's HTTP API on .2:8080, TCP on port 9090 of B's subnet, and calls into
/// A's port 7070.
fn config(pair: &Pair) -> String {
    let s = pair.subnet;
    format!(
        "routes:
  - name: b-api
    capture: outbound
    match: {{ destinations: [10.77.{s}.2/32], ports: [8080] }}
    upstream: original
  - name: b-tcp
    capture: outbound
    match: {{ destinations: [10.77.{s}.0/24], ports: [9090] }}
    upstream: original
    protocol: tcp
  - name: a-in
    capture: inbound
    match: {{ ports: [7070] }}
    upstream: original
"
    )
}

#[test]
fn outbound_capture_exempted_by_mark_injects_http_and_tcp_faults_per_destination() {
    let Some(pair) = Pair::new() else { return };
    let api = pair.addr(2, 8080);
    let excluded = pair.addr(2, 8081);
    let unrouted = pair.addr(2, 8082);
    let api_seen = http_server(&pair.b, api);
    let excluded_seen = http_server(&pair.b, excluded);
    http_server(&pair.b, unrouted);
    echo_server(&pair.b, pair.addr(2, 9090));
    echo_server(&pair.b, pair.addr(3, 9090));
    let agent = start_agent(&pair, &config(&pair), &["--mark", MARK]);
    init_iptables(
        &pair,
        &[
            "--mark",
            MARK,
            "--exclude-outbound-ports",
            "8081",
            "--no-inbound",
        ],
    );

    // Untouched through the agent first: the app's call reaches B, from the agent's connection.
    let a = get_in(&pair.a, api).expect("the call goes through");
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, &*format!("hello from {api}"))
    );
    let m = metrics(&pair, &agent);
    assert_eq!(metric(&m, "faultline_route_connections_total", "b-api"), 1);
    assert_eq!(api_seen.count(), 1);

    // An HTTP fault on a connection detected as HTTP.
    add_fault(
        &pair,
        &agent,
        "b-api",
        r#"{"name":"abort","type":"http_abort","attributes":{"status":503}}"#,
    );
    let a = get_in(&pair.a, api).expect("the agent answers");
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(api_seen.count(), 1, "an aborted call never reaches B");
    remove_fault(&pair, &agent, "b-api", "abort");

    add_fault(
        &pair,
        &agent,
        "b-api",
        r#"{"name":"slow","type":"http_delay","attributes":{"delay":300}}"#,
    );
    let a = get_in(&pair.a, api).expect("the delayed call goes through");
    assert_eq!(a.status, 200);
    assert!(a.took >= Duration::from_millis(300), "took {:?}", a.took);
    println!("delayed call took {:?} (fault: 300ms)", a.took);
    remove_fault(&pair, &agent, "b-api", "slow");

    // A partition from one destination only: .3 is cut, .2 on the same port still answers.
    add_fault(
        &pair,
        &agent,
        "b-tcp",
        &format!(
            r#"{{"name":"cut","type":"partition","attributes":{{"cidrs":["10.77.{}.3/32"],"peer":"upstream","action":"refuse"}}}}"#,
            pair.subnet
        ),
    );
    assert_eq!(ping_in(&pair.a, pair.addr(2, 9090)).expect("echo"), b"ping");
    let cut = ping_in(&pair.a, pair.addr(3, 9090));
    assert!(
        cut.as_ref().is_err() || cut.as_ref().is_ok_and(Vec::is_empty),
        "partitioned destination answered: {cut:?}"
    );

    // The excluded port passes beside the agent: it sees no connection at all.
    let before = metric_sum(&metrics(&pair, &agent), "faultline_route_connections_total");
    let a = get_in(&pair.a, excluded).expect("the excluded call goes through");
    assert_eq!(a.status, 200);
    assert_eq!(excluded_seen.count(), 1);
    let after = metrics(&pair, &agent);
    assert_eq!(
        metric_sum(&after, "faultline_route_connections_total"),
        before
    );

    // A captured call no route matches is passed through untouched, and counted.
    let a = get_in(&pair.a, unrouted).expect("the unrouted call goes through");
    assert_eq!(a.body, format!("hello from {unrouted}"));
    let m = metrics(&pair, &agent);
    assert_eq!(
        metric(
            &m,
            "faultline_route_connections_total",
            "passthrough:outbound"
        ),
        1
    );

    // Cleanup leaves no rule or chain behind.
    init_iptables(&pair, &["--cleanup"]);
    let saved = iptables_save(&pair, "iptables-save");
    assert!(!saved.contains("FAULTLINE"), "{saved}");
    drop(agent);
}

#[test]
fn a_rule_matching_one_destination_faults_only_calls_to_it_on_a_catch_all_route() {
    let Some(pair) = Pair::new() else { return };
    // One dependency (.2:8080) among three on B: another address on the same port, and
    // another port on the same address.
    let target = pair.addr(2, 8080);
    let other_host = pair.addr(3, 8080);
    let other_port = pair.addr(2, 8081);
    let target_seen = http_server(&pair.b, target);
    let other_host_seen = http_server(&pair.b, other_host);
    let other_port_seen = http_server(&pair.b, other_port);
    let config = "routes:
  - name: egress
    capture: outbound
    upstream: original
    protocol: auto
";
    let agent = start_agent(&pair, config, &["--mark", MARK]);
    init_iptables(&pair, &["--mark", MARK, "--no-inbound"]);

    let rule = format!(
        r#"{{"name":"b1-down","type":"http_abort","attributes":{{"status":503}},"match":{{"destination":{{"destinations":["{}"],"ports":[{}]}}}}}}"#,
        target.ip(),
        target.port()
    );
    let a = admin(
        &pair.a,
        agent.admin,
        "POST",
        "/faultline/v1/routes/egress/rules",
        &rule,
    );
    assert!(a.status == 200 || a.status == 201, "add rule: {}", a.body);

    let a = get_in(&pair.a, target).expect("the agent answers");
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(target_seen.count(), 0, "an aborted call never reaches B");
    for (addr, seen) in [
        (other_host, &other_host_seen),
        (other_port, &other_port_seen),
    ] {
        let a = get_in(&pair.a, addr).expect("the call goes through");
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, &*format!("hello from {addr}")),
            "{addr}"
        );
        assert_eq!(seen.count(), 1, "{addr}");
    }
    // Every call went through the one route: the rule, not the route, told them apart.
    let m = metrics(&pair, &agent);
    assert_eq!(metric(&m, "faultline_route_connections_total", "egress"), 3);
    let rules = admin(
        &pair.a,
        agent.admin,
        "GET",
        "/faultline/v1/routes/egress/rules",
        "",
    );
    assert!(
        rules.body.contains(&format!(
            r#""destination":{{"destinations":["{}/32"],"ports":[8080]}}"#,
            target.ip()
        )),
        "{}",
        rules.body
    );

    init_iptables(&pair, &["--cleanup"]);
    assert!(!iptables_save(&pair, "iptables-save").contains("FAULTLINE"));
    drop(agent);
}

#[test]
fn inbound_capture_reaches_the_pods_own_server_with_faults() {
    let Some(pair) = Pair::new() else { return };
    let server = pair.addr(1, 7070);
    let seen = http_server(&pair.a, "0.0.0.0:7070".parse().unwrap());
    let agent = start_agent(&pair, &config(&pair), &["--mark", MARK]);
    init_iptables(&pair, &["--mark", MARK, "--inbound-ports", "7070"]);

    let a = get_in(&pair.b, server).expect("the call into A goes through");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(seen.count(), 1);
    let m = metrics(&pair, &agent);
    assert_eq!(metric(&m, "faultline_route_connections_total", "a-in"), 1);
    // The agent's connection to the pod's own address was not captured again as outbound
    // (it carries the mark): exactly one connection on the inbound route, none passed through.
    assert_eq!(
        metric(
            &m,
            "faultline_route_connections_total",
            "passthrough:outbound"
        ),
        0
    );

    add_fault(
        &pair,
        &agent,
        "a-in",
        r#"{"name":"abort","type":"http_abort","attributes":{"status":503}}"#,
    );
    let a = get_in(&pair.b, server).expect("the agent answers");
    assert_eq!(a.status, 503);
    assert_eq!(seen.count(), 1);

    init_iptables(&pair, &["--cleanup"]);
    assert!(!iptables_save(&pair, "iptables-save").contains("FAULTLINE"));
}

#[test]
fn uid_exemption_captures_another_users_app_but_not_the_agent() {
    let Some(pair) = Pair::new() else { return };
    let api = pair.addr(2, 8080);
    let seen = http_server(&pair.b, api);
    let config = format!(
        "{}    faults:\n      - name: abort\n        type: http_abort\n        attributes: {{ status: 503 }}\n",
        config(&pair).split("  - name: b-tcp").next().unwrap()
    );
    // No --mark: the agent (UID 0) is exempt by owner only.
    let agent = start_agent(&pair, &config, &[]);
    init_iptables(&pair, &["--uid", "0", "--no-inbound"]);

    // The app, as another user, is captured and gets the injected 503.
    let url = format!("http://{api}/");
    let (ok, out) = pair.exec(
        &pair.a,
        "setpriv",
        &[
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            &url,
        ],
    );
    assert!(ok, "curl as nobody: {out}");
    assert_eq!(out.trim(), "503");
    assert_eq!(seen.count(), 0);
    // UID 0 (like the agent) goes straight to B.
    let a = get_in(&pair.a, api).expect("root's call goes through");
    assert_eq!(a.status, 200);
    assert_eq!(seen.count(), 1);
    let m = metrics(&pair, &agent);
    assert_eq!(metric(&m, "faultline_route_connections_total", "b-api"), 1);

    init_iptables(&pair, &["--cleanup"]);
    assert!(!iptables_save(&pair, "iptables-save").contains("FAULTLINE"));
}

#[test]
fn ipv6_capture_reads_the_ip6tables_original_destination() {
    let Some(pair) = Pair::new() else { return };
    if !pair.add_ipv6() {
        println!("skipped: IPv6 is not available in network namespaces");
        return;
    }
    let api = pair.addr6(2, 8080);
    let seen = http_server(&pair.b, api);
    let config = format!(
        "routes:
  - name: b6
    capture: outbound
    match: {{ destinations: ['fd77:0:0:{:x}::/64'], ports: [8080] }}
    upstream: original
    faults:
      - name: abort
        type: http_abort
        attributes: {{ status: 503 }}
",
        pair.subnet
    );
    // A dual-stack listener takes both families.
    let agent = start_agent_on(
        &pair,
        &config,
        "[::]:15001",
        "[::]:15006",
        &["--mark", MARK],
    );
    init_iptables(&pair, &["--mark", MARK, "--ipv6", "--no-inbound"]);

    let a = get_in(&pair.a, api).expect("the agent answers");
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(seen.count(), 0);
    let m = metrics(&pair, &agent);
    assert_eq!(metric(&m, "faultline_route_connections_total", "b6"), 1);
    // IPv4 still goes through the same (dual-stack) listener, untouched by the IPv6 route.
    http_server(&pair.b, pair.addr(2, 8080));
    let a = get_in(&pair.a, pair.addr(2, 8080)).expect("IPv4 goes through");
    assert_eq!(a.status, 200);
    let m = metrics(&pair, &agent);
    assert_eq!(
        metric(
            &m,
            "faultline_route_connections_total",
            "passthrough:outbound"
        ),
        1
    );

    init_iptables(&pair, &["--cleanup", "--ipv6"]);
    assert!(!iptables_save(&pair, "ip6tables-save").contains("FAULTLINE"));
}

#[test]
fn init_iptables_twice_writes_one_copy_and_cleanup_removes_all() {
    let Some(pair) = Pair::new() else { return };
    let flags = [
        "--uid",
        "1337",
        "--mark",
        MARK,
        "--ipv6",
        "--exclude-outbound-cidrs",
        "169.254.169.254/32,fd00::/8",
        "--exclude-inbound-ports",
        "8474",
    ];
    init_iptables(&pair, &flags);
    let once = (
        iptables_save(&pair, "iptables-save"),
        iptables_save(&pair, "ip6tables-save"),
    );
    init_iptables(&pair, &flags);
    let twice = (
        iptables_save(&pair, "iptables-save"),
        iptables_save(&pair, "ip6tables-save"),
    );
    let rules = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.contains("FAULTLINE"))
            .map(str::to_owned)
            .collect()
    };
    for (first, second) in [(&once.0, &twice.0), (&once.1, &twice.1)] {
        assert_eq!(rules(first), rules(second));
        assert_eq!(
            rules(second)
                .iter()
                .filter(|l| l.starts_with("-A OUTPUT") || l.starts_with("-A PREROUTING"))
                .count(),
            2,
            "{second}"
        );
        assert!(
            second.contains("-A FAULTLINE_OUTPUT -m mark --mark 0x1e7 -j RETURN"),
            "{second}"
        );
        assert!(second.contains("--uid-owner 1337 -j RETURN"), "{second}");
    }
    assert!(
        twice
            .0
            .contains("-A FAULTLINE_OUTPUT -d 169.254.169.254/32 -j RETURN")
    );
    assert!(
        twice
            .1
            .contains("-A FAULTLINE_OUTPUT -d fd00::/8 -j RETURN")
    );

    init_iptables(&pair, &["--cleanup", "--ipv6"]);
    assert!(!iptables_save(&pair, "iptables-save").contains("FAULTLINE"));
    assert!(!iptables_save(&pair, "ip6tables-save").contains("FAULTLINE"));
}
