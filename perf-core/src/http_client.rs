//! The one HTTP client of control traffic: a coordinator talking to its
//! workers, the autoscaler reading Prometheus and scraping instances, health
//! probes. hyper's pooled HTTP/1.1 client over rustls (the TLS stack of the
//! load engine), with what control traffic needs on top:
//!
//! - **a time limit** per exchange, headers and body together;
//! - **a size limit** on the answer's body, so a hostile or broken peer
//!   cannot exhaust memory;
//! - **pinned names**: [`ControlClient::pin`] makes a host name reach the
//!   address that was checked when it was resolved, so a name that resolves
//!   elsewhere later does not take a bearer token with it.
//!
//! The load engine keeps its own, faster client (perf-loadgen's `http`).
//!
//! ```no_run
//! use std::time::Duration;
//! use perf_core::http_client::{ControlClient, Limits};
//! # async fn demo() -> perf_core::Result<()> {
//! let client = ControlClient::new(None, Limits::default());
//! let answer = client.get("http://127.0.0.1:9090/metrics").await?;
//! assert_eq!(answer.status, 200);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;

use crate::{Error, Result};

/// Bounds of one exchange.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Limits {
    /// The whole exchange, from connecting to the last byte of the body.
    pub timeout: Duration,
    /// The largest body read; a longer answer is an error.
    pub max_body: usize,
    /// Keep connections open between exchanges (on by default). Off for
    /// health probes and scrapes, where each exchange should also prove
    /// that the peer still takes new connections.
    pub keep_alive: bool,
}

impl Default for Limits {
    /// 10 s and 16 MiB.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_body: 16 << 20,
            keep_alive: true,
        }
    }
}

impl Limits {
    /// `timeout` for the exchange and `max_body` bytes of answer.
    pub fn new(timeout: Duration, max_body: usize) -> Self {
        Self {
            timeout,
            max_body,
            keep_alive: true,
        }
    }

    /// The same limits, with a new connection for every exchange.
    pub fn without_keep_alive(self) -> Self {
        Self {
            keep_alive: false,
            ..self
        }
    }
}

/// An answer: its status and its whole body.
#[derive(Debug, Clone)]
pub struct ControlResponse {
    /// The status code.
    pub status: u16,
    /// The body (at most [`Limits::max_body`] bytes).
    pub body: Bytes,
}

impl ControlResponse {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Host names pinned to the address they were checked at.
type Pins = Arc<Mutex<HashMap<String, SocketAddr>>>;

/// Resolves a pinned name to its pin, any other through the system.
#[derive(Clone, Debug, Default)]
struct PinnedResolver {
    pins: Pins,
}

type Resolving =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for PinnedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let pinned = self
            .pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name.as_str())
            .copied();
        Box::pin(async move {
            if let Some(addr) = pinned {
                return Ok(vec![addr].into_iter());
            }
            // The connector sets the URL's port on each address.
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            Ok(found.into_iter())
        })
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<PinnedResolver>>;

/// hyper's client, with or without TLS.
#[derive(Clone)]
enum Inner {
    Plain(Client<HttpConnector<PinnedResolver>, Full<Bytes>>),
    Tls(Client<Connector, Full<Bytes>>),
}

/// The client: cheap to clone (clones share connections and pins).
#[derive(Clone)]
pub struct ControlClient {
    client: Inner,
    pins: Pins,
    limits: Limits,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("limits", &self.limits)
            .field("https", &matches!(self.client, Inner::Tls(_)))
            .finish_non_exhaustive()
    }
}

impl ControlClient {
    /// A client for `http://` URLs, and for `https://` ones verified with
    /// `tls` when given (without it an `https://` URL is refused).
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>, limits: Limits) -> Self {
        Self::build(tls.map(|config| (config, None)), limits)
    }

    /// A client whose `https://` peers are verified with `tls` as
    /// `server_name` (the name sent in SNI and looked for in the
    /// certificate) instead of their URL's host: for peers reached by an
    /// address their certificate does not name.
    pub fn verifying_as(
        tls: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
        limits: Limits,
    ) -> Self {
        Self::build(Some((tls, Some(server_name))), limits)
    }

    fn build(
        tls: Option<(
            Arc<rustls::ClientConfig>,
            Option<rustls::pki_types::ServerName<'static>>,
        )>,
        limits: Limits,
    ) -> Self {
        let pins = Pins::default();
        let mut http = HttpConnector::new_with_resolver(PinnedResolver {
            pins: Arc::clone(&pins),
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(limits.timeout));
        http.set_nodelay(true);
        let builder = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_max_idle_per_host(if limits.keep_alive { usize::MAX } else { 0 })
            .clone();
        let client = match tls {
            None => Inner::Plain(builder.build(http)),
            Some((config, server_name)) => {
                // The connector refuses a configuration with ALPN set (a
                // panic, not an error); without it no ALPN is offered, which
                // an HTTP/1.1 server reads as HTTP/1.1.
                let mut config = Arc::unwrap_or_clone(config);
                config.alpn_protocols.clear();
                let mut connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config)
                    .https_or_http();
                if let Some(name) = server_name {
                    connector = connector.with_server_name_resolver(
                        hyper_rustls::FixedServerNameResolver::new(name),
                    );
                }
                let connector = connector.enable_http1().wrap_connector(http);
                Inner::Tls(builder.build(connector))
            }
        };
        Self {
            client,
            pins,
            limits,
        }
    }

    /// Makes `host` (a name as it appears in URLs) reach `addr` from now on,
    /// whatever the name resolves to later.
    pub fn pin(&self, host: &str, addr: SocketAddr) {
        self.pins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(host.to_owned(), addr);
    }

    /// `GET url`.
    ///
    /// # Errors
    /// [`Error::Http`] naming the URL: not http(s), unreachable, too slow,
    /// or an answer longer than [`Limits::max_body`].
    pub async fn get(&self, url: &str) -> Result<ControlResponse> {
        self.send(http::Method::GET, url, None, None).await
    }

    /// `method url` with an optional bearer token and JSON body.
    ///
    /// # Errors
    /// As [`ControlClient::get`].
    pub async fn send(
        &self,
        method: http::Method,
        url: &str,
        token: Option<&str>,
        json: Option<String>,
    ) -> Result<ControlResponse> {
        let failed = |message: String| Error::Http {
            url: url.chars().take(200).collect(),
            message,
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e| failed(format!("not a URL ({e}): only http:// and https:// URLs")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") if matches!(self.client, Inner::Tls(_)) => {}
            Some("https") => return Err(failed("https is not configured here".to_owned())),
            _ => return Err(failed("only http:// and https:// URLs".to_owned())),
        }
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if json.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .map_err(|e| failed(e.to_string()))?;
        let exchange = async {
            let response = match &self.client {
                Inner::Plain(c) => c.request(request).await,
                Inner::Tls(c) => c.request(request).await,
            }
            .map_err(|e| failed(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), self.limits.max_body)
                .collect()
                .await
                .map_err(|e| {
                    failed(format!(
                        "reading the answer: {e} (at most {} bytes are read)",
                        self.limits.max_body
                    ))
                })?
                .to_bytes();
            Ok(ControlResponse { status, body })
        };
        tokio::time::timeout(self.limits.timeout, exchange)
            .await
            .map_err(|_| failed(format!("no answer within {:?}", self.limits.timeout)))?
    }
}

/// An error with its causes, `outer: inner: ...` (hyper's own message alone
/// says only "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-connection HTTP server answering `answer` after reading the
    /// request head; returns its address and the request it read.
    fn serve_once(answer: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            let _ = conn.write_all(&answer);
            String::from_utf8_lossy(&seen).into_owned()
        });
        (addr, handle)
    }

    #[tokio::test]
    async fn answers_are_read_whole_chunked_or_not_and_the_token_is_sent() {
        let (addr, seen) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        );
        let client = ControlClient::new(None, Limits::default());
        let answer = client
            .send(
                http::Method::POST,
                &format!("http://{addr}/x"),
                Some("t0k"),
                Some("{}".into()),
            )
            .await
            .unwrap();
        assert_eq!((answer.status, answer.text().as_str()), (200, "hello"));
        let request = seen.join().unwrap();
        assert!(request.starts_with("POST /x HTTP/1.1"), "{request}");
        assert!(request.contains("authorization: Bearer t0k"), "{request}");
    }

    #[tokio::test]
    async fn a_long_answer_a_silent_peer_and_https_without_tls_are_errors() {
        let (addr, _seen) = serve_once(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n{}",
                "x".repeat(4096)
            )
            .into_bytes(),
        );
        let small = ControlClient::new(None, Limits::new(Duration::from_secs(5), 1024));
        let err = small
            .get(&format!("http://{addr}/"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 1024 bytes"), "{err}");

        // Accepts, never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = listener.local_addr().unwrap();
        let quick = ControlClient::new(None, Limits::new(Duration::from_millis(200), 1024));
        let err = quick
            .get(&format!("http://{silent}/"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no answer within"), "{err}");
        drop(listener);

        let err = quick
            .get("https://127.0.0.1:1/")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("https is not configured"), "{err}");
        for bad in ["file:///etc/passwd", "ftp://127.0.0.1/", "127.0.0.1:80"] {
            let err = quick.get(bad).await.unwrap_err().to_string();
            assert!(err.contains("only http"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_pinned_name_reaches_its_pin() {
        let (addr, seen) = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec());
        let client = ControlClient::new(None, Limits::default());
        client.pin("worker.invalid", addr);
        let answer = client
            .get(&format!("http://worker.invalid:{}/ready", addr.port()))
            .await
            .unwrap();
        assert_eq!(answer.status, 204);
        assert!(seen.join().unwrap().contains("host: worker.invalid"));
    }
}
