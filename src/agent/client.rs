//! A client for the agent's admin API: one HTTP/1.1 request per connection (hyper's
//! connection-level client over a tokio `TcpStream`), JSON in and out, under one timeout.
//!
//! Errors say which agent and what failed: "cannot reach the agent at ADDR: ..." when the
//! connection fails, [`ApiError`] (the agent's message, naming the field) when it refuses.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use super::api::{ApiError, NewProxy, NewToxic, Proxy, ProxyEnabled, Toxic};

/// Where the admin API listens: a host name or IP address, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentAddr {
    /// Without brackets, also for IPv6.
    host: String,
    port: u16,
}

pub struct AgentClient {
    addr: AgentAddr,
    timeout: Duration,
    /// The admin API's bearer token, when the agent has one.
    token: Option<String>,
}

// === impl AgentClient ===

impl AgentClient {
    pub fn new(addr: AgentAddr, timeout: Duration) -> Self {
        AgentClient {
            addr,
            timeout,
            token: None,
        }
    }

    /// Sends `Authorization: Bearer TOKEN` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// `GET /proxies`, as the agent sent it.
    pub async fn proxies_raw(&self) -> anyhow::Result<Bytes> {
        self.send(Method::GET, "/proxies".into(), None).await
    }

    /// `GET /proxies`, sorted by name.
    pub async fn proxies(&self) -> anyhow::Result<Vec<Proxy>> {
        let body = self.proxies_raw().await?;
        let all: std::collections::BTreeMap<String, Proxy> = self.decode(&body, "route list")?;
        Ok(all.into_values().collect())
    }

    /// `POST /proxies`.
    pub async fn create_proxy(&self, proxy: &NewProxy<'_>) -> anyhow::Result<Proxy> {
        let body = self
            .send(Method::POST, "/proxies".into(), Some(json(proxy)?))
            .await?;
        self.decode(&body, "route")
    }

    /// `DELETE /proxies/{name}`.
    pub async fn delete_proxy(&self, name: &str) -> anyhow::Result<()> {
        self.send(Method::DELETE, proxy_path(name), None).await?;
        Ok(())
    }

    /// `POST /proxies/{name}` with `{"enabled": ...}`.
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> anyhow::Result<Proxy> {
        let body = json(&ProxyEnabled { enabled })?;
        let body = self
            .send(Method::POST, proxy_path(name), Some(body))
            .await?;
        self.decode(&body, "route")
    }

    /// `GET /proxies/{name}/toxics`, as the agent sent it.
    pub async fn toxics_raw(&self, proxy: &str) -> anyhow::Result<Bytes> {
        self.send(Method::GET, toxics_path(proxy), None).await
    }

    /// `GET /proxies/{name}/toxics`.
    pub async fn toxics(&self, proxy: &str) -> anyhow::Result<Vec<Toxic>> {
        let body = self.toxics_raw(proxy).await?;
        self.decode(&body, "fault list")
    }

    /// `POST /proxies/{name}/toxics`.
    pub async fn add_toxic(&self, proxy: &str, toxic: &NewToxic) -> anyhow::Result<Toxic> {
        let body = self
            .send(Method::POST, toxics_path(proxy), Some(json(toxic)?))
            .await?;
        self.decode(&body, "fault")
    }

    /// `DELETE /proxies/{name}/toxics/{toxic}`.
    pub async fn delete_toxic(&self, proxy: &str, toxic: &str) -> anyhow::Result<()> {
        let path = format!("{}/{}", toxics_path(proxy), encode_segment(toxic));
        self.send(Method::DELETE, path, None).await?;
        Ok(())
    }

    /// `POST /reset`.
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.send(Method::POST, "/reset".into(), None).await?;
        Ok(())
    }

    /// Sends one request and returns the body of a 2xx response; any other status becomes an
    /// [`ApiError`].
    async fn send(
        &self,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        let what = format!("{method} {path}");
        tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| {
                anyhow!(
                    "the agent at {} did not answer {what} within {:?}",
                    self.addr,
                    self.timeout
                )
            })?
    }

    async fn exchange(
        &self,
        method: Method,
        path: String,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        let addr = &self.addr;
        let stream = TcpStream::connect((addr.host.as_str(), addr.port))
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot reach the agent at {addr}: {e} (is faultline-agent running? \
                     give its admin address with --agent or FAULTLINE_AGENT)"
                )
            })?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("cannot talk HTTP to the agent at {addr}"))?;
        // The connection future does the I/O; it ends once the response is read and `sender`
        // is dropped (and the request asks the agent to close, too).
        let conn = tokio::spawn(conn);

        let mut request = Request::builder()
            .method(method)
            .uri(&path)
            .header(header::HOST, addr.to_string())
            .header(
                header::USER_AGENT,
                concat!("faultline/", env!("CARGO_PKG_VERSION")),
            )
            .header(header::ACCEPT, "application/json")
            .header(header::CONNECTION, "close");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .with_context(|| format!("cannot build the request {path}"))?;

        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("the request to the agent at {addr} failed"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("cannot read the agent's response from {addr}"))?
            .to_bytes();
        drop(sender);
        // The response is complete; how the connection closes does not change the outcome.
        let _ = conn.await;

        if status.is_success() {
            Ok(body)
        } else {
            Err(ApiError::from_response(status, &body).into())
        }
    }

    fn decode<T: DeserializeOwned>(&self, body: &[u8], what: &str) -> anyhow::Result<T> {
        serde_json::from_slice(body).with_context(|| {
            format!(
                "the agent at {} sent a {what} this CLI cannot read",
                self.addr
            )
        })
    }
}

fn json<T: Serialize>(body: &T) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(body).context("cannot encode the request body")
}

fn proxy_path(name: &str) -> String {
    format!("/proxies/{}", encode_segment(name))
}

fn toxics_path(proxy: &str) -> String {
    format!("{}/toxics", proxy_path(proxy))
}

/// Percent-encodes a name for use as one path segment (RFC 3986: all but unreserved bytes).
fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// === impl AgentAddr ===

impl FromStr for AgentAddr {
    type Err = String;

    /// `HOST:PORT`, `[IPV6]:PORT`, optionally behind `http://` and before a `/`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not HOST:PORT (e.g. 127.0.0.1:8474)");
        let text = s.trim();
        if text.starts_with("https://") {
            return Err(format!("{s:?}: the admin API speaks plain HTTP, not HTTPS"));
        }
        let text = text.strip_prefix("http://").unwrap_or(text);
        let text = text.strip_suffix('/').unwrap_or(text);
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        if host.is_empty() || host.contains(['/', ' ']) || port == 0 {
            return Err(bad());
        }
        Ok(AgentAddr {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for AgentAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Result<String, String> {
        s.parse::<AgentAddr>().map(|a| a.to_string())
    }

    #[test]
    fn agent_addresses() {
        assert_eq!(addr("127.0.0.1:8474").as_deref(), Ok("127.0.0.1:8474"));
        assert_eq!(addr("http://agent:8474/").as_deref(), Ok("agent:8474"));
        assert_eq!(addr("[::1]:8474").as_deref(), Ok("[::1]:8474"));
        for bad in [
            "127.0.0.1",
            "agent:http",
            ":8474",
            "::1:8474",
            "agent:0",
            "https://agent:8474",
            "agent:99999",
        ] {
            assert!(addr(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(proxy_path("api_v2-x.y~z"), "/proxies/api_v2-x.y~z");
        assert_eq!(toxics_path("a/b c"), "/proxies/a%2Fb%20c/toxics");
    }
}
