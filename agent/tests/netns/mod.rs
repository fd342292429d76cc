//! Two network namespaces joined by a veth pair, made by a test and deleted when it ends, and
//! the small servers and clients the transparent-capture tests run inside them.
//!
//! Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns); [`Pair::new`] returns
//! `None`, after printing why, when that is missing.

#![allow(dead_code)] // each test uses its own part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a client waits for a connection or an answer.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub const SKIP: &str = "skipped: needs root (CAP_NET_ADMIN) for network namespaces";

/// Namespaces `a` and `b`, with `a` at 10.77.N.1 and `b` at 10.77.N.2 and 10.77.N.3 (a second
/// destination), on a veth pair that exists only inside them.
pub struct Pair {
    pub a: String,
    pub b: String,
    pub subnet: u8,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

impl Pair {
    /// Creates the pair, or prints why it cannot and returns `None` (the test then skips).
    pub fn new() -> Option<Pair> {
        if effective_uid() != Some(0) {
            println!("{SKIP}");
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // Unique among parallel tests and test binaries; the subnet only exists inside.
        let pair = Pair {
            a: format!("fl{pid}-{n}a"),
            b: format!("fl{pid}-{n}b"),
            subnet: ((pid.wrapping_mul(7).wrapping_add(n)) % 250 + 1) as u8,
        };
        if !ip(&["netns", "add", &pair.a]) {
            println!("{SKIP} (ip netns add failed)");
            return None;
        }
        assert!(ip(&["netns", "add", &pair.b]), "ip netns add {}", pair.b);
        let (a, b, s) = (&pair.a, &pair.b, pair.subnet);
        for args in [
            vec![
                "-n", a, "link", "add", "fl0", "type", "veth", "peer", "name", "fl1", "netns", b,
            ],
            vec![
                "-n",
                a,
                "addr",
                "add",
                &format!("10.77.{s}.1/24"),
                "dev",
                "fl0",
            ],
            vec![
                "-n",
                b,
                "addr",
                "add",
                &format!("10.77.{s}.2/24"),
                "dev",
                "fl1",
            ],
            vec![
                "-n",
                b,
                "addr",
                "add",
                &format!("10.77.{s}.3/24"),
                "dev",
                "fl1",
            ],
            vec!["-n", a, "link", "set", "fl0", "up"],
            vec!["-n", b, "link", "set", "fl1", "up"],
            vec!["-n", a, "link", "set", "lo", "up"],
            vec!["-n", b, "link", "set", "lo", "up"],
        ] {
            assert!(ip(&args), "ip {args:?}");
        }
        Some(pair)
    }

    /// Adds `fd77:0:0:N::1/64` in `a` and `::2` in `b` (no duplicate address detection, so
    /// they work at once); false when IPv6 is not available.
    pub fn add_ipv6(&self) -> bool {
        let s = self.subnet;
        ip(&[
            "-n",
            &self.a,
            "addr",
            "add",
            &format!("fd77:0:0:{s:x}::1/64"),
            "dev",
            "fl0",
            "nodad",
        ]) && ip(&[
            "-n",
            &self.b,
            "addr",
            "add",
            &format!("fd77:0:0:{s:x}::2/64"),
            "dev",
            "fl1",
            "nodad",
        ])
    }

    /// `[fd77:0:0:N::host]:port`.
    pub fn addr6(&self, host: u16, port: u16) -> SocketAddr {
        SocketAddr::from(([0xfd77, 0, 0, u16::from(self.subnet), 0, 0, 0, host], port))
    }

    /// `10.77.N.host:port`.
    pub fn addr(&self, host: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 77, self.subnet, host], port))
    }

    /// Runs `program args` inside namespace `ns`; returns its exit status and output.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .output()
            .expect("ip netns exec runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "delete", ns]);
        }
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `f` on a thread inside namespace `ns` and returns what it returns.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_ns(ns, f)
        .join()
        .expect("the namespaced thread ends")
}

/// Starts `f` on a thread inside namespace `ns` (threads it starts stay there too).
pub fn spawn_in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace exists");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

// === servers ===

/// Connections a test server accepted, and the peers they came from.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    pub peers: std::sync::Mutex<Vec<SocketAddr>>,
}

impl Seen {
    pub fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// An HTTP/1.1 server in `ns` on `addr` answering every request `200` with the body
/// `hello from ADDR`, one connection at a time per thread. Returns once it listens.
pub fn http_server(ns: &str, addr: SocketAddr) -> Arc<Seen> {
    serve(ns, addr, |mut s, addr| {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let body = format!("hello from {addr}");
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    })
}

/// A TCP echo server in `ns` on `addr`.
pub fn echo_server(ns: &str, addr: SocketAddr) -> Arc<Seen> {
    serve(ns, addr, |mut s, _| {
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

fn serve(
    ns: &str,
    addr: SocketAddr,
    conn: impl Fn(TcpStream, SocketAddr) + Send + Sync + Copy + 'static,
) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let (tx, rx) = mpsc::channel();
    let counter = seen.clone();
    // The thread outlives the test (blocked in accept); the namespace goes when it ends.
    drop(spawn_in_ns(ns, move || {
        let listener = TcpListener::bind(addr).expect("the test server binds");
        tx.send(()).expect("the test waits");
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            counter.connections.fetch_add(1, Ordering::SeqCst);
            if let Ok(peer) = s.peer_addr() {
                counter.peers.lock().unwrap().push(peer);
            }
            std::thread::spawn(move || conn(s, addr));
        }
    }));
    rx.recv_timeout(PATIENCE).expect("the test server listens");
    seen
}

// === clients ===

/// An HTTP/1.1 answer: status, body, and how long it took from connect to the last byte.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub took: Duration,
}

/// `METHOD path` to `addr` with an optional JSON body, from the calling thread's namespace.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<Answer> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE)?;
    s.set_read_timeout(Some(PATIENCE))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok(Answer {
        status,
        body,
        took: started.elapsed(),
    })
}

/// `GET /` to `addr` from namespace `ns`.
pub fn get_in(ns: &str, addr: SocketAddr) -> std::io::Result<Answer> {
    in_ns(ns, move || request(addr, "GET", "/", ""))
}

/// Sends `ping` to `addr` from namespace `ns` and returns what comes back before the
/// connection ends (or an error: refused, reset, timed out).
pub fn ping_in(ns: &str, addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    in_ns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, PATIENCE)?;
        s.set_read_timeout(Some(PATIENCE))?;
        s.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match s.read(&mut buf[got..])? {
                0 => break,
                n => got += n,
            }
        }
        Ok(buf[..got].to_vec())
    })
}

// === the agent's admin API, inside its namespace ===

/// Calls the admin API at `admin` from namespace `ns`; panics on a transport error.
pub fn admin(ns: &str, admin: SocketAddr, method: &str, path: &str, body: &str) -> Answer {
    let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_owned());
    in_ns(ns, move || request(admin, &method, &path, &body))
        .unwrap_or_else(|e| panic!("admin API at {admin}: {e}"))
}

/// Polls `/ready` until it answers 200, for at most `PATIENCE`.
pub fn wait_ready(ns: &str, admin_addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    let ns = ns.to_owned();
    loop {
        let n = ns.clone();
        if in_ns(&n, move || request(admin_addr, "GET", "/ready", ""))
            .is_ok_and(|a| a.status == 200)
        {
            return;
        }
        assert!(Instant::now() < deadline, "the agent never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A counter of the agent's `/metrics` for one route (0 when absent).
pub fn metric(text: &str, name: &str, route: &str) -> u64 {
    let prefix = format!("{name}{{route=\"{route}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().expect("a counter value"))
}

/// The sum of a counter over every route.
pub fn metric_sum(text: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
