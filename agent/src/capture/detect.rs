//! What a captured connection speaks, told from its first bytes without consuming them.
//!
//! An HTTP/2 connection preface (`PRI * HTTP/2.0`) is HTTP/2; a request line (a method token,
//! a space, a target, a space, `HTTP/1.`) is HTTP/1; anything else, or nothing within the
//! detection timeout (server-first protocols), is TCP.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    Tcp,
}

/// Bytes peeked at most; a request line this long without its version is taken as HTTP/1.
pub const MAX_PEEK: usize = 1024;
/// The longest method token considered (`PROPPATCH`, `MKCALENDAR`, extension methods).
const MAX_METHOD: usize = 24;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const VERSION: &[u8] = b"HTTP/1.";

/// Classifies a prefix of the client's bytes; `None` when more bytes are needed.
pub fn classify(buf: &[u8]) -> Option<Detected> {
    if buf.is_empty() {
        return None;
    }
    if buf.starts_with(PREFACE) {
        return Some(Detected::Http2);
    }
    if PREFACE.starts_with(buf) {
        return None;
    }
    let method = buf.iter().take_while(|b| is_tchar(**b)).count();
    if method == buf.len() {
        return (method > MAX_METHOD).then_some(Detected::Tcp);
    }
    if method == 0 || method > MAX_METHOD || buf[method] != b' ' {
        return Some(Detected::Tcp);
    }
    let rest = &buf[method + 1..];
    let target = rest.iter().take_while(|b| b.is_ascii_graphic()).count();
    if target == rest.len() {
        return (buf.len() >= MAX_PEEK).then_some(Detected::Http1);
    }
    if target == 0 || rest[target] != b' ' {
        return Some(Detected::Tcp);
    }
    let version = &rest[target + 1..];
    if version.len() < VERSION.len() {
        return (!VERSION.starts_with(version)).then_some(Detected::Tcp);
    }
    Some(if version.starts_with(VERSION) {
        Detected::Http1
    } else {
        Detected::Tcp
    })
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Peeks at the client's first bytes until they tell, the client closes, or `timeout` passes.
pub async fn detect(stream: &TcpStream, timeout: Duration) -> Detected {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; MAX_PEEK];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            // Nothing in time (a server-first protocol), closed, or failed: bytes it is.
            _ => return Detected::Tcp,
        };
        if let Some(d) = classify(&buf[..n]) {
            return d;
        }
        // Part of a request line: peek returns at once while bytes wait, so look again shortly.
        let now = Instant::now();
        if now >= deadline {
            return Detected::Tcp;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(2))).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn prefixes_classify() {
        use Detected::*;
        let cases: &[(&[u8], Option<Detected>)] = &[
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0", Some(Http2)),
            (b"PRI * HTTP/2", None),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Some(Http1)),
            (b"POST /v1/items?x=1 HTTP/1.0\r\n", Some(Http1)),
            (b"M-SEARCH * HTTP/1.1\r\n", Some(Http1)),
            (b"GET", None),
            (b"GET /", None),
            (b"GET / HTT", None),
            (b"GET / HTTP/2.0\r\n", Some(Tcp)),
            (b"GET / SSH\r\n", Some(Tcp)),
            (b"GET  / HTTP/1.1", Some(Tcp)),
            (b"\x16\x03\x01\x02\x00", Some(Tcp)), // TLS ClientHello
            (b"*1\r\n$4\r\nPING\r\n", Some(Tcp)), // Redis
            (b"SSH-2.0-OpenSSH_9.6\r\n", Some(Tcp)),
            (b"get\t/ HTTP/1.1", Some(Tcp)),
            (b"", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                classify(bytes),
                *want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let mut long = b"GET /".to_vec();
        long.resize(MAX_PEEK, b'a');
        assert_eq!(classify(&long), Some(Http1));
        assert_eq!(classify(&[b'A'; 30]), Some(Tcp));
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn a_silent_client_is_tcp_after_the_timeout() {
        let (_client, server) = pair().await;
        let started = std::time::Instant::now();
        assert_eq!(
            detect(&server, Duration::from_millis(50)).await,
            Detected::Tcp
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_request_line_in_two_writes_is_http_and_stays_unread() {
        let (mut client, server) = pair().await;
        client.write_all(b"GET /items ").await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(b"HTTP/1.1\r\n\r\n").await.unwrap();
            client
        });
        assert_eq!(
            detect(&server, Duration::from_secs(5)).await,
            Detected::Http1
        );
        let _client = writer.await.unwrap();
        let mut buf = [0u8; 64];
        let n = server.peek(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"GET /items HTTP/1.1"));
    }
}
