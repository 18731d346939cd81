//! A local HTTP/1.1 target for load tests: keep-alive, a thread per
//! connection, a configurable delay, status and periodic stalls, optionally
//! over TLS (the test certificates of [`crate::certs`]) and with a handler
//! that answers by route (a login that sets a cookie, calls that need a
//! token). It counts what it served so tests can check the load generator's
//! own figures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A request as the target saw it (for a [`Handler`]).
#[derive(Debug, Clone, Default)]
pub struct TargetRequest {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Path and query as sent.
    pub path: String,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl TargetRequest {
    /// The first header of that (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer from a [`Handler`].
#[derive(Debug, Clone)]
pub struct TargetReply {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Length is added).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

/// Answers requests by route; replaces `status` and `body` of [`Behavior`].
#[derive(Clone)]
pub struct Handler(pub Arc<dyn Fn(&TargetRequest) -> TargetReply + Send + Sync>);

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler(..)")
    }
}

/// TLS on the target, with the certificates of [`crate::certs`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TargetTls {
    /// Require a client certificate signed by the test CA.
    pub client_auth: bool,
    /// Serve the self-signed certificate no test trusts.
    pub untrusted: bool,
}

/// How the target answers.
#[derive(Debug, Clone)]
pub struct Behavior {
    /// Time spent before answering each request.
    pub delay: Duration,
    /// Status code of every answer.
    pub status: u16,
    /// Body of every answer.
    pub body: String,
    /// `(period, stall)`: during the first `stall` of every `period` since
    /// start, answers wait until the stall ends (a GC pause, a lock).
    pub stall: Option<(Duration, Duration)>,
    /// Answer with `Transfer-Encoding: chunked` instead of a Content-Length.
    pub chunked: bool,
    /// Serve over TLS.
    pub tls: Option<TargetTls>,
    /// Answer by route instead of `status` and `body`.
    pub handler: Option<Handler>,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            status: 200,
            body: "hello".to_owned(),
            stall: None,
            chunked: false,
            tls: None,
            handler: None,
        }
    }
}

/// A running target; stopped on drop (its threads end with their connections).
#[derive(Debug)]
pub struct TargetServer {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    resumed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tls: bool,
}

impl TargetServer {
    /// Starts on 127.0.0.1 and a free port.
    pub fn start(behavior: Behavior) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let resumed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tls_config = behavior.tls.map(server_config).transpose()?;
        let tls = tls_config.is_some();
        let behavior = Arc::new(behavior);
        let started = Instant::now();
        {
            let (served, connections, resumed, stop) = (
                Arc::clone(&served),
                Arc::clone(&connections),
                Arc::clone(&resumed),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_nodelay(true);
                    connections.fetch_add(1, Ordering::Relaxed);
                    let (served, resumed, behavior, tls_config) = (
                        Arc::clone(&served),
                        Arc::clone(&resumed),
                        Arc::clone(&behavior),
                        tls_config.clone(),
                    );
                    std::thread::spawn(move || match tls_config {
                        None => serve(stream, &behavior, &served, started),
                        Some(config) => {
                            let Ok(conn) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            let mut tls = rustls::StreamOwned::new(conn, stream);
                            // Finish the handshake first, to count resumptions.
                            while tls.conn.is_handshaking() {
                                if tls.conn.complete_io(&mut tls.sock).is_err() {
                                    return;
                                }
                            }
                            if tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                                resumed.fetch_add(1, Ordering::Relaxed);
                            }
                            serve(&mut tls, &behavior, &served, started);
                            // A clean TLS close: clients that read to the end see it.
                            tls.conn.send_close_notify();
                            let _ = tls.flush();
                        }
                    });
                }
            });
        }
        Ok(Self {
            addr,
            served,
            connections,
            resumed,
            stop,
            tls,
        })
    }

    /// `http://127.0.0.1:port`, or `https://` when the target speaks TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// TLS handshakes that resumed an earlier session.
    pub fn resumed_handshakes(&self) -> u64 {
        self.resumed.load(Ordering::Relaxed)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Responses written so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for TargetServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The rustls server configuration of `tls` (ring provider, test certificates).
pub(crate) fn server_config(tls: TargetTls) -> std::io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let (cert, key) = if tls.untrusted {
        ("other.pem", "other.key")
    } else {
        ("server.pem", "server.key")
    };
    let chain = vec![CertificateDer::from_pem_file(crate::certs::path(cert)).map_err(|e| bad(&e))?];
    let key = PrivateKeyDer::from_pem_file(crate::certs::path(key)).map_err(|e| bad(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?;
    let builder = if tls.client_auth {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(crate::certs::path("ca.pem")).map_err(|e| bad(&e))?)
            .map_err(|e| bad(&e))?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(&e))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| bad(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn serve<S: Read + Write>(stream: S, behavior: &Behavior, served: &AtomicU64, started: Instant) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // Request line and headers.
        let mut content_length = 0usize;
        let mut first = true;
        let mut request = TargetRequest::default();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                if first {
                    continue;
                }
                break;
            }
            if first {
                let mut parts = line.split_whitespace();
                request.method = parts.next().unwrap_or_default().to_owned();
                request.path = parts.next().unwrap_or_default().to_owned();
            } else if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if name == "content-length" {
                    content_length = value.trim().parse().unwrap_or(0);
                }
                request.headers.push((name, value.trim().to_owned()));
            }
            first = false;
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        request.body = body;
        if let Some((period, stall)) = behavior.stall {
            let phase = Duration::from_nanos(
                u64::try_from(started.elapsed().as_nanos() % period.as_nanos().max(1)).unwrap_or(0),
            );
            if phase < stall {
                std::thread::sleep(stall - phase);
            }
        }
        if !behavior.delay.is_zero() {
            std::thread::sleep(behavior.delay);
        }
        let response = if let Some(handler) = &behavior.handler {
            let reply = (handler.0)(&request);
            let mut head = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
                reply.status,
                reply.body.len()
            );
            for (k, v) in &reply.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            format!("{head}\r\n{}", reply.body)
        } else if behavior.chunked {
            let half = behavior.body.len() / 2;
            let (a, b) = behavior.body.split_at(half);
            format!(
                "HTTP/1.1 {} X\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                behavior.status,
                a.len().max(1),
                b.len().max(1)
            )
        } else {
            format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{}",
                behavior.status,
                behavior.body.len(),
                behavior.body
            )
        };
        let writer = reader.get_mut();
        if writer.write_all(response.as_bytes()).is_err() || writer.flush().is_err() {
            return;
        }
        served.fetch_add(1, Ordering::Relaxed);
        if request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            return;
        }
    }
}
