use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::fault::Flow;

fn view<'a>(route: &'a str, metrics: &'a RouteMetrics) -> RouteMetricsView<'a> {
    RouteMetricsView {
        route,
        metrics,
        faults: Vec::new(),
        workers: None,
    }
}

/// The text families that existed before request-level metrics, unchanged to the byte.
const CONNECTION_FAMILIES: &str = r#"# HELP faultline_route_connections_total Client connections accepted by the route.
# TYPE faultline_route_connections_total counter
faultline_route_connections_total{route="db"} 2
# HELP faultline_route_connections_active Client connections open now.
# TYPE faultline_route_connections_active gauge
faultline_route_connections_active{route="db"} 1
# HELP faultline_route_bytes_total Bytes delivered, by direction (upstream = client to server).
# TYPE faultline_route_bytes_total counter
faultline_route_bytes_total{route="db",direction="upstream"} 10
faultline_route_bytes_total{route="db",direction="downstream"} 20
# HELP faultline_route_upstream_connect_errors_total Failed connections to the upstream (real failures, not injected ones).
# TYPE faultline_route_upstream_connect_errors_total counter
faultline_route_upstream_connect_errors_total{route="db"} 1
# HELP faultline_route_faults_injected_total Connections a fault was injected into, by fault kind.
# TYPE faultline_route_faults_injected_total counter
faultline_route_faults_injected_total{route="db",kind="latency"} 1
faultline_route_faults_injected_total{route="db",kind="bandwidth"} 0
faultline_route_faults_injected_total{route="db",kind="slicer"} 0
faultline_route_faults_injected_total{route="db",kind="slow_close"} 0
faultline_route_faults_injected_total{route="db",kind="timeout"} 0
faultline_route_faults_injected_total{route="db",kind="reset_peer"} 0
faultline_route_faults_injected_total{route="db",kind="limit_data"} 0
faultline_route_faults_injected_total{route="db",kind="down"} 0
faultline_route_faults_injected_total{route="db",kind="partition"} 0
faultline_route_faults_injected_total{route="db",kind="http_abort"} 0
faultline_route_faults_injected_total{route="db",kind="http_delay"} 0
faultline_route_faults_injected_total{route="db",kind="http_throttle"} 0
faultline_route_faults_injected_total{route="db",kind="http_reset"} 0
faultline_route_faults_injected_total{route="db",kind="grpc_abort"} 0
faultline_route_faults_injected_total{route="db",kind="grpc_stream"} 1
"#;

#[test]
fn connection_families_render_as_before() {
    let m = Arc::new(RouteMetrics::default());
    drop(m.connection());
    let _open = m.connection();
    m.add_bytes(Flow::Upstream, 10);
    m.add_bytes(Flow::Downstream, 20);
    m.upstream_error(1);
    m.injected(KindTag::Latency);
    m.injected(KindTag::GrpcStream);
    let text = render(&[view("db", &m)]);
    assert!(text.starts_with(CONNECTION_FAMILIES), "{text}");
}

#[test]
fn fault_counters_render_by_outcome() {
    let m = RouteMetrics::default();
    let (slow, broken) = (FaultCounters::default(), FaultCounters::default());
    slow.record(true);
    slow.record(false);
    slow.record(true);
    let routes = [RouteMetricsView {
        route: "api",
        metrics: &m,
        faults: vec![("slow", &slow), ("broken", &broken)],
        workers: None,
    }];
    let text = render(&routes);
    let family: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("faultline_fault_requests_total{"))
        .collect();
    assert_eq!(
        family,
        [
            r#"faultline_fault_requests_total{route="api",fault="slow",outcome="matched"} 3"#,
            r#"faultline_fault_requests_total{route="api",fault="slow",outcome="injected"} 2"#,
            r#"faultline_fault_requests_total{route="api",fault="slow",outcome="passed"} 1"#,
            r#"faultline_fault_requests_total{route="api",fault="broken",outcome="matched"} 0"#,
            r#"faultline_fault_requests_total{route="api",fault="broken",outcome="injected"} 0"#,
            r#"faultline_fault_requests_total{route="api",fault="broken",outcome="passed"} 0"#,
        ]
    );
}

#[test]
fn label_values_are_escaped() {
    let m = RouteMetrics::default();
    m.http.record_reset(true);
    let c = FaultCounters::default();
    let routes = [RouteMetricsView {
        route: "a\"b\\c\nd",
        metrics: &m,
        faults: vec![("say \"hi\"\n", &c)],
        workers: None,
    }];
    let text = render(&routes);
    assert!(text.contains("faultline_route_connections_total{route=\"a\\\"b\\\\c\\nd\"} 0\n"));
    assert!(text.contains(
        "faultline_fault_requests_total{route=\"a\\\"b\\\\c\\nd\",fault=\"say \\\"hi\\\"\\n\",outcome=\"passed\"} 0\n"
    ));
    assert!(
        text.contains(
            "faultline_http_resets_total{route=\"a\\\"b\\\\c\\nd\",injected=\"true\"} 1\n"
        )
    );
    // Every sample is one line: nothing in a label broke one.
    for l in text.lines() {
        assert!(l.starts_with("# ") || l.starts_with("faultline_"), "{l:?}");
    }
}

#[test]
fn duration_histogram_is_cumulative_and_counts_every_response() {
    let m = RouteMetrics::default();
    let ms = Duration::from_millis;
    for (status, latency) in [
        (200, ms(0)),
        (200, ms(1)),
        (503, ms(30)),
        (200, ms(30)),
        (200, ms(20_000)),
    ] {
        m.http.record_response(status, status == 503, latency);
    }
    let text = render(&[view("web", &m)]);
    let bucket = |le: &str| -> u64 {
        let prefix =
            format!("faultline_http_request_duration_seconds_bucket{{route=\"web\",le=\"{le}\"}} ");
        let l = text.lines().find(|l| l.starts_with(&prefix)).unwrap();
        l[prefix.len()..].parse().unwrap()
    };
    assert_eq!(bucket("0.0005"), 1);
    assert_eq!(bucket("0.001"), 2, "1 ms is within le=\"0.001\"");
    assert_eq!(bucket("0.025"), 2);
    assert_eq!(bucket("0.05"), 4);
    assert_eq!(bucket("10"), 4);
    assert_eq!(bucket("+Inf"), 5);
    let les: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("faultline_http_request_duration_seconds_bucket{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(les.len(), 15);
    assert!(les.windows(2).all(|w| w[0] <= w[1]), "cumulative: {les:?}");
    assert!(text.contains("faultline_http_request_duration_seconds_count{route=\"web\"} 5\n"));
    assert!(text.contains("faultline_http_request_duration_seconds_sum{route=\"web\"} 20.061\n"));
    assert!(text.contains("# TYPE faultline_http_request_duration_seconds histogram\n"));
}

#[test]
fn request_families_show_every_class_for_routes_with_traffic_only() {
    let (tcp, web, rpc) = (
        RouteMetrics::default(),
        RouteMetrics::default(),
        RouteMetrics::default(),
    );
    web.http.record_response(502, true, Duration::ZERO);
    web.http.record_upstream_error();
    rpc.http.record_response(200, false, Duration::ZERO);
    rpc.http.record_grpc(14, true);
    let text = render(&[view("tcp", &tcp), view("web", &web), view("rpc", &rpc)]);
    assert!(!text.contains("faultline_http_requests_total{route=\"tcp\""));
    assert!(!text.contains("faultline_http_request_duration_seconds_count{route=\"tcp\""));
    let web_lines = |family: &str| -> Vec<&str> {
        let prefix = format!("{family}{{route=\"web\"");
        text.lines().filter(|l| l.starts_with(&prefix)).collect()
    };
    assert_eq!(web_lines("faultline_http_requests_total").len(), 10);
    assert!(text.contains(
        "faultline_http_requests_total{route=\"web\",class=\"5xx\",injected=\"true\"} 1\n"
    ));
    assert!(text.contains(
        "faultline_http_requests_total{route=\"web\",class=\"5xx\",injected=\"false\"} 0\n"
    ));
    assert!(text.contains("faultline_http_upstream_errors_total{route=\"web\"} 1\n"));
    assert_eq!(
        web_lines("faultline_grpc_requests_total"),
        Vec::<&str>::new()
    );
    let rpc_grpc: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("faultline_grpc_requests_total{route=\"rpc\""))
        .collect();
    assert_eq!(rpc_grpc.len(), 34, "17 codes, real and injected");
    assert!(rpc_grpc.contains(
        &"faultline_grpc_requests_total{route=\"rpc\",code=\"UNAVAILABLE\",injected=\"true\"} 1"
    ));
    assert!(rpc_grpc.contains(
        &"faultline_grpc_requests_total{route=\"rpc\",code=\"OK\",injected=\"false\"} 0"
    ));
}

#[test]
fn every_family_has_help_and_type_once() {
    let text = render(&[]);
    for family in [
        "faultline_route_connections_total",
        "faultline_fault_requests_total",
        "faultline_http_requests_total",
        "faultline_grpc_requests_total",
        "faultline_http_upstream_errors_total",
        "faultline_http_resets_total",
        "faultline_http_request_duration_seconds",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family}"
        );
        assert_eq!(
            text.matches(&format!("# HELP {family} ")).count(),
            1,
            "{family}"
        );
    }
    assert!(
        !text.lines().any(|l| !l.starts_with('#')),
        "no samples without routes"
    );
}

#[test]
fn cohort_arms_have_their_own_families_once_they_count() {
    use crate::fault::http::Arm;
    let m = RouteMetrics::default();
    let text = render(&[view("web", &m)]);
    assert!(
        !text.contains("faultline_http_cohort_"),
        "no arm counted yet"
    );

    m.recorder(Arm::Treatment)
        .response(503, true, Duration::from_millis(2));
    m.recorder(Arm::Control)
        .response(200, false, Duration::from_millis(1));
    m.recorder(Arm::Neither)
        .response(200, false, Duration::from_millis(1));
    let text = render(&[view("web", &m)]);
    for want in [
        "faultline_http_cohort_requests_total{route=\"web\",arm=\"treatment\",class=\"5xx\",injected=\"true\"} 1\n",
        "faultline_http_cohort_requests_total{route=\"web\",arm=\"treatment\",class=\"2xx\",injected=\"false\"} 0\n",
        "faultline_http_cohort_requests_total{route=\"web\",arm=\"control\",class=\"2xx\",injected=\"false\"} 1\n",
        "faultline_http_cohort_request_duration_seconds_count{route=\"web\",arm=\"treatment\"} 1\n",
        "faultline_http_cohort_request_duration_seconds_bucket{route=\"web\",arm=\"control\",le=\"+Inf\"} 1\n",
        // The route as a whole counts all three.
        "faultline_http_request_duration_seconds_count{route=\"web\"} 3\n",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    assert_eq!(
        text.matches("# TYPE faultline_http_cohort_requests_total counter")
            .count(),
        1
    );
}

#[test]
fn a_listening_route_shows_its_connections_per_worker_and_hand_overs() {
    let m = RouteMetrics::default();
    let w = crate::tcp::balance::WorkerLoad {
        open: vec![3, 2],
        handed_over: 7,
    };
    let routes = [RouteMetricsView {
        workers: Some(&w),
        ..view("api", &m)
    }];
    let text = render(&routes);
    assert!(text.contains("faultline_route_worker_connections{route=\"api\",worker=\"0\"} 3\n"));
    assert!(text.contains("faultline_route_worker_connections{route=\"api\",worker=\"1\"} 2\n"));
    assert!(text.contains("faultline_route_connections_handed_over_total{route=\"api\"} 7\n"));
    // A route whose listener is closed shows neither.
    let text = render(&[view("api", &m)]);
    assert!(!text.contains("faultline_route_worker_connections{"));
    assert!(!text.contains("faultline_route_connections_handed_over_total{"));
}
