//! Per-route counters, kept as atomics so the data path never takes a lock to count,
//! and rendered in the Prometheus text format by the admin API.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::fault::{Flow, KindTag};

/// Counters for one route. Shared (`Arc`) between the route's snapshot, its connections and
/// the admin API; every update is a single relaxed atomic add.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    pub connections_total: AtomicU64,
    pub connections_active: AtomicU64,
    pub bytes_upstream: AtomicU64,
    pub bytes_downstream: AtomicU64,
    pub upstream_connect_errors: AtomicU64,
    injected: [AtomicU64; KindTag::ALL.len()],
    /// Milliseconds since the agent started at which a connect error was last logged; used to
    /// log a storm of failures once a second rather than once per connection.
    last_error_log_ms: AtomicU64,
    suppressed_errors: AtomicU64,
}

impl RouteMetrics {
    pub fn add_bytes(&self, flow: Flow, n: usize) {
        let c = match flow {
            Flow::Upstream => &self.bytes_upstream,
            Flow::Downstream => &self.bytes_downstream,
        };
        c.fetch_add(n as u64, Relaxed);
    }

    pub fn injected(&self, kind: KindTag) {
        self.injected[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn injected_count(&self, kind: KindTag) -> u64 {
        self.injected[kind as usize].load(Relaxed)
    }

    /// Count an upstream connect error; returns `Some(n)` when this one should be logged,
    /// with `n` the number of errors not logged since the last logged one.
    pub fn upstream_error(&self, now_ms: u64) -> Option<u64> {
        self.upstream_connect_errors.fetch_add(1, Relaxed);
        let last = self.last_error_log_ms.load(Relaxed);
        if (last == 0 || now_ms >= last + 1000)
            && self
                .last_error_log_ms
                .compare_exchange(last, now_ms.max(1), Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.suppressed_errors.swap(0, Relaxed));
        }
        self.suppressed_errors.fetch_add(1, Relaxed);
        None
    }

    /// Marks a connection active until the guard is dropped.
    pub fn connection(self: &std::sync::Arc<Self>) -> ActiveGuard {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_active.fetch_add(1, Relaxed);
        ActiveGuard(self.clone())
    }
}

pub struct ActiveGuard(std::sync::Arc<RouteMetrics>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Relaxed);
    }
}

/// Renders the counters of every route in the Prometheus text exposition format.
pub fn render<'a>(routes: impl Iterator<Item = (&'a str, &'a RouteMetrics)> + Clone) -> String {
    let mut out = String::with_capacity(2048);
    let mut family = |name: &str, kind: &str, help: &str, f: &dyn Fn(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        f(&mut out);
    };
    family(
        "faultline_route_connections_total",
        "counter",
        "Client connections accepted by the route.",
        &|o| {
            for (r, m) in routes.clone() {
                line(
                    o,
                    "faultline_route_connections_total",
                    r,
                    &[],
                    m.connections_total.load(Relaxed),
                );
            }
        },
    );
    family(
        "faultline_route_connections_active",
        "gauge",
        "Client connections open now.",
        &|o| {
            for (r, m) in routes.clone() {
                line(
                    o,
                    "faultline_route_connections_active",
                    r,
                    &[],
                    m.connections_active.load(Relaxed),
                );
            }
        },
    );
    family(
        "faultline_route_bytes_total",
        "counter",
        "Bytes delivered, by direction (upstream = client to server).",
        &|o| {
            for (r, m) in routes.clone() {
                line(
                    o,
                    "faultline_route_bytes_total",
                    r,
                    &[("direction", "upstream")],
                    m.bytes_upstream.load(Relaxed),
                );
                line(
                    o,
                    "faultline_route_bytes_total",
                    r,
                    &[("direction", "downstream")],
                    m.bytes_downstream.load(Relaxed),
                );
            }
        },
    );
    family(
        "faultline_route_upstream_connect_errors_total",
        "counter",
        "Failed connections to the upstream (real failures, not injected ones).",
        &|o| {
            for (r, m) in routes.clone() {
                line(
                    o,
                    "faultline_route_upstream_connect_errors_total",
                    r,
                    &[],
                    m.upstream_connect_errors.load(Relaxed),
                );
            }
        },
    );
    family(
        "faultline_route_faults_injected_total",
        "counter",
        "Connections a fault was injected into, by fault kind.",
        &|o| {
            for (r, m) in routes.clone() {
                for k in KindTag::ALL {
                    line(
                        o,
                        "faultline_route_faults_injected_total",
                        r,
                        &[("kind", k.name())],
                        m.injected_count(k),
                    );
                }
            }
        },
    );
    out
}

fn line(out: &mut String, name: &str, route: &str, labels: &[(&str, &str)], v: u64) {
    let _ = write!(out, "{name}{{route=\"{}\"", escape(route));
    for (k, val) in labels {
        let _ = write!(out, ",{k}=\"{}\"", escape(val));
    }
    let _ = writeln!(out, "}} {v}");
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters() {
        let m = RouteMetrics::default();
        m.add_bytes(Flow::Upstream, 10);
        m.injected(KindTag::Latency);
        let text = render([("db", &m)].into_iter());
        assert!(
            text.contains("faultline_route_bytes_total{route=\"db\",direction=\"upstream\"} 10\n")
        );
        assert!(
            text.contains(
                "faultline_route_faults_injected_total{route=\"db\",kind=\"latency\"} 1\n"
            )
        );
        assert!(text.contains("# TYPE faultline_route_connections_active gauge\n"));
    }

    #[test]
    fn connect_errors_are_logged_at_most_once_a_second() {
        let m = RouteMetrics::default();
        assert_eq!(m.upstream_error(5), Some(0));
        assert_eq!(m.upstream_error(10), None);
        assert_eq!(m.upstream_error(900), None);
        assert_eq!(m.upstream_error(1100), Some(2));
        assert_eq!(m.upstream_connect_errors.load(Relaxed), 4);
    }
}
