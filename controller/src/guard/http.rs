//! What the Prometheus and probe guards share: one pooled HTTP(S) client ([`Http`]) and the
//! poll loop that runs each guard's source at its interval and sends the hub [`Sample`]s.
//!
//! The client is hyper-util's legacy (pooled) client over rustls with the *ring* provider. It
//! trusts the Mozilla roots compiled in (webpki-roots, so no system store is read) plus any extra
//! roots the controller is given (a private CA, or a test's self-signed certificate). It is built
//! once and cloned into every poller: clones share the connection pool.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub use rustls::pki_types::CertificateDer;

use super::{Reading, Sample};

/// Idle connections kept per host: a guard polls one host once a second or less often.
const MAX_IDLE_PER_HOST: usize = 2;

/// The HTTP(S) client every Prometheus and probe guard uses. Cheap to clone.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

/// The client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("extra root certificate #{index} cannot be trusted: {source}")]
    BadRoot { index: usize, source: rustls::Error },
    #[error("no usable TLS protocol version: {0}")]
    Tls(#[source] rustls::Error),
    #[error("cannot read PEM certificates: {0}")]
    Pem(String),
    #[error("no certificate in the PEM data")]
    NoCertificate,
}

// === impl Http ===

impl Http {
    /// A client that trusts the Mozilla roots.
    pub fn new() -> Http {
        Http::with_roots([]).expect("the Mozilla roots and ring's protocol versions are valid")
    }

    /// A client that trusts the Mozilla roots and `extra` (DER certificates: a private CA, or a
    /// self-signed server certificate).
    pub fn with_roots(
        extra: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Http, HttpError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for (index, cert) in extra.into_iter().enumerate() {
            roots
                .add(cert)
                .map_err(|source| HttpError::BadRoot { index, source })?;
        }
        // The provider is passed explicitly rather than installed process-wide, so another
        // crate's choice (or none) cannot make this panic.
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(HttpError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false); // the TLS layer takes https URLs
        tcp.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(connector);
        Ok(Http { client })
    }

    /// The certificates in PEM `data` (`-----BEGIN CERTIFICATE-----` blocks), for
    /// [`with_roots`](Http::with_roots).
    pub fn pem_certificates(data: &[u8]) -> Result<Vec<CertificateDer<'static>>, HttpError> {
        let certs = CertificateDer::pem_slice_iter(data)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HttpError::Pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(HttpError::NoCertificate);
        }
        Ok(certs)
    }

    pub(crate) fn client(&self) -> &Client<HttpsConnector<HttpConnector>, Empty<Bytes>> {
        &self.client
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http").finish_non_exhaustive()
    }
}

/// Reads at most `limit` bytes of `body`; the flag says whether there was more (not read).
pub(crate) async fn read_prefix(
    mut body: Incoming,
    limit: usize,
) -> Result<(Vec<u8>, bool), hyper::Error> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        let room = limit - buf.len();
        if data.len() > room {
            buf.extend_from_slice(&data[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf, false))
}

/// An error and its causes, `: `-separated (hyper-util's own message is only "client error
/// (Connect)"; the cause says "Connection refused").
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !s.ends_with(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cause = c.source();
    }
    s
}

// === poll loop ===

/// One guard source that a poller runs at each tick.
pub(crate) trait Poll: Send + 'static {
    /// Runs the source once: the reading and its note.
    fn poll(&mut self) -> impl Future<Output = (Reading, Option<String>)> + Send + '_;
}

/// Runs `source` every `interval`, the first time at once, and sends each reading on `tx`.
/// A poll that outlasts the interval delays the next one rather than bunching them
/// ([`MissedTickBehavior::Delay`]). Stops when `stop` is cancelled or the receiver is gone.
pub(crate) fn spawn_poller(
    mut source: impl Poll,
    interval: Duration,
    experiment: String,
    guard: String,
    tx: mpsc::Sender<Sample>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // tokio's interval panics on 0; the spec parser allows nothing below 1s anyway.
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tx.closed() => return,
                _ = ticks.tick() => {}
            }
            let (reading, note) = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tx.closed() => return,
                r = source.poll() => r,
            };
            let sample = Sample {
                experiment: experiment.clone(),
                guard: guard.clone(),
                reading,
                note,
                at: Instant::now(),
            };
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                sent = tx.send(sample) => if sent.is_err() { return },
            }
        }
    })
}
