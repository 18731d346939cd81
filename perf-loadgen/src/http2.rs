//! HTTP/2 for the load engine, with the `h2` crate on the run's own tokio
//! runtime: per target a bounded set of connections (`connections`), over
//! which requests go as streams, at most `max_streams_per_connection` at
//! once on each. Over TLS the protocol is agreed by ALPN; over plain http
//! it is h2c with prior knowledge. Requests are rendered as for HTTP/1.1
//! and turned into HTTP/2 requests (the `Host` header becomes `:authority`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::sync::{Mutex, Semaphore};

use crate::http::{FailureKind, Phases, Response, Stream};
use crate::journey::Kept;
use crate::tls::TlsClient;

/// One HTTP/2 connection and its stream budget.
#[derive(Clone)]
struct Conn {
    send: h2::client::SendRequest<Bytes>,
    streams: Arc<Semaphore>,
}

/// The HTTP/2 connections of one target.
pub(crate) struct Pool {
    /// Each connection as last opened: read under a short lock per request
    /// (never held across an await).
    ready: Vec<std::sync::Mutex<Option<Conn>>>,
    /// Held while a slot's connection is being opened, so one opens it.
    slots: Vec<Mutex<()>>,
    next: AtomicUsize,
    max_streams: u32,
    addr: SocketAddr,
    tls: Option<(TlsClient, ServerName<'static>)>,
    scheme: &'static str,
    /// The tasks driving the connections, aborted when the pool goes.
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("connections", &self.slots.len())
            .field("max_streams", &self.max_streams)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Why a connection did not open: its kind and the error.
type OpenFailure = (FailureKind, io::Error);

impl Pool {
    /// A pool of `connections` (opened when first needed) to `addr`.
    pub(crate) fn new(
        addr: SocketAddr,
        tls: Option<(TlsClient, ServerName<'static>)>,
        connections: u32,
        max_streams: u32,
    ) -> Self {
        Self {
            ready: (0..connections.max(1))
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
            slots: (0..connections.max(1)).map(|_| Mutex::new(())).collect(),
            next: AtomicUsize::new(0),
            max_streams: max_streams.max(1),
            scheme: if tls.is_some() { "https" } else { "http" },
            tasks: std::sync::Mutex::new(Vec::new()),
            addr,
            tls,
        }
    }

    async fn open(&self, phases: &mut Phases) -> Result<Conn, OpenFailure> {
        let io = crate::http::dial(self.addr, self.tls.as_ref(), phases)
            .await
            .map_err(|e| (e.kind, e.error))?;
        if let Stream::Tls(tls) = &io
            && tls.get_ref().1.alpn_protocol() != Some(b"h2")
        {
            return Err((
                FailureKind::Tls,
                io::Error::other("the server did not agree to h2 in ALPN"),
            ));
        }
        // A hostile target must not make the generator hold much: no server
        // push, and a bound on the decoded header list of a response.
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .max_header_list_size(64 << 10)
            .enable_push(false)
            .max_concurrent_streams(0)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| (FailureKind::Protocol, io::Error::other(e)))?;
        // The connection is driven by its own task until it closes or the
        // pool goes (the run ended).
        let task = tokio::spawn(async move {
            let _ = Batched::new(connection).await;
        });
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task.abort_handle());
        }
        Ok(Conn {
            send,
            streams: Arc::new(Semaphore::new(self.max_streams as usize)),
        })
    }

    /// A connection of the pool (opened when needed), round robin.
    async fn connection(&self, phases: &mut Phases) -> Result<(usize, Conn), OpenFailure> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        if let Some(c) = self.ready_connection(i) {
            return Ok((i, c));
        }
        let _opening = self.slots[i].lock().await;
        // Another user may have opened it while this one waited.
        if let Some(c) = self.ready_connection(i) {
            return Ok((i, c));
        }
        let c = self.open(phases).await?;
        *self.ready_slot(i) = Some(c.clone());
        Ok((i, c))
    }

    /// Slot `i`'s connection, locked (a panic elsewhere while it was held
    /// does not leave the slot unusable).
    fn ready_slot(&self, i: usize) -> std::sync::MutexGuard<'_, Option<Conn>> {
        self.ready[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connection `i` if it is open.
    fn ready_connection(&self, i: usize) -> Option<Conn> {
        self.ready_slot(i).clone()
    }

    /// Forgets connection `i` after a connection-level failure, if it is
    /// still the one that failed (`failed`, its stream budget): another
    /// user may have replaced it already with a healthy one.
    async fn drop_connection(&self, i: usize, failed: &Arc<Semaphore>) {
        let _opening = self.slots[i].lock().await;
        let mut ready = self.ready_slot(i);
        if ready
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.streams, failed))
        {
            *ready = None;
        }
    }

    /// Sends `request` (HTTP/1.1 bytes as rendered) as one stream and reads
    /// the whole answer; phases and kept parts as for HTTP/1.1.
    pub(crate) async fn send(
        &self,
        request: &[u8],
        timeout: Duration,
        phases: &mut Phases,
        keep: Option<&mut Kept>,
        on_connect_error: &(dyn Fn(FailureKind, &io::Error) + Sync),
    ) -> Result<Response, FailureKind> {
        // The connection in use (its slot and stream budget), for the
        // timeout to forget it.
        let used: std::sync::Mutex<Option<(usize, Arc<Semaphore>)>> = std::sync::Mutex::new(None);
        let exchange = async {
            let (i, conn) = self.connection(phases).await.map_err(|(kind, e)| {
                on_connect_error(kind, &e);
                kind
            })?;
            let streams = Arc::clone(&conn.streams);
            if let Ok(mut used) = used.lock() {
                *used = Some((i, Arc::clone(&streams)));
            }
            let result = self.exchange(conn, request, phases, keep).await;
            if let Err((_, true)) = result {
                self.drop_connection(i, &streams).await;
            }
            result.map_err(|(kind, _)| kind)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                // A connection whose peer stopped answering is not used again.
                let used = used.lock().ok().and_then(|mut u| u.take());
                if let Some((i, streams)) = used {
                    self.drop_connection(i, &streams).await;
                }
                Err(FailureKind::Timeout)
            }
        }
    }

    /// One stream; the error says whether the connection is gone.
    async fn exchange(
        &self,
        conn: Conn,
        request: &[u8],
        phases: &mut Phases,
        mut keep: Option<&mut Kept>,
    ) -> Result<Response, (FailureKind, bool)> {
        let (head, body) = self
            .to_request(request)
            .ok_or((FailureKind::Protocol, false))?;
        let _permit = conn
            .streams
            .acquire()
            .await
            .map_err(|_| (FailureKind::Reset, true))?;
        // The connection's handle was cloned once for this request; each
        // clone and drop of it takes the h2 connection's lock.
        let mut send = conn
            .send
            .ready()
            .await
            .map_err(|_| (FailureKind::Reset, true))?;
        let written = Instant::now();
        let lost = |e: h2::Error| {
            let gone = e.is_go_away() || e.is_io() || e.reason().is_none();
            (FailureKind::Reset, gone)
        };
        let (answer, mut stream) = send.send_request(head, body.is_empty()).map_err(lost)?;
        if !body.is_empty() {
            stream.send_data(body, true).map_err(lost)?;
        }
        let answer = answer.await.map_err(lost)?;
        phases.ttfb = Some(written.elapsed());
        let status = answer.status().as_u16();
        let mut received: u64 = answer
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().len() + v.len()) as u64)
            .sum();
        if let Some(k) = keep.as_deref_mut() {
            k.headers = answer
                .headers()
                .iter()
                .take(64)
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
        }
        let mut body = answer.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(lost)?;
            received += chunk.len() as u64;
            let _ = body.flow_control().release_capacity(chunk.len());
            if let Some(k) = keep.as_deref_mut() {
                k.body_part(&chunk);
            }
        }
        Ok(Response {
            status,
            bytes_received: received,
        })
    }

    /// The HTTP/2 request of rendered HTTP/1.1 bytes: method, path and
    /// headers (without the connection-specific ones), `Host` as authority.
    fn to_request(&self, raw: &[u8]) -> Option<(http::Request<()>, Bytes)> {
        // Most users send the same few requests again and again: the last
        // few conversions are kept per thread and reused when the rendered
        // bytes are the same (a comparison instead of a parse and a build).
        const KEPT: usize = 8;
        type Converted = (
            Vec<u8>,
            &'static str,
            http::Method,
            http::Uri,
            http::HeaderMap,
            Bytes,
        );
        thread_local! {
            static RECENT: std::cell::RefCell<std::collections::VecDeque<Converted>> =
                const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
        }
        // Misses in a row: requests that are all different (a feeder, a
        // unique id) are kept only one in 16 times, so they do not pay a
        // copy per request for a cache that never hits.
        thread_local! {
            static MISSES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let hit = RECENT.with_borrow_mut(|recent| {
            let at = recent.iter().position(|(bytes, scheme, ..)| {
                *scheme == self.scheme && bytes.as_slice() == raw
            })?;
            // The most used stay at the front (and are not evicted first).
            if at > 0 {
                recent.swap(at, at - 1);
            }
            recent
                .get(at.saturating_sub(1))
                .map(|(_, _, method, uri, headers, body)| {
                    let mut request = http::Request::new(());
                    *request.method_mut() = method.clone();
                    *request.uri_mut() = uri.clone();
                    *request.version_mut() = http::Version::HTTP_2;
                    *request.headers_mut() = headers.clone();
                    (request, body.clone())
                })
        });
        if hit.is_some() {
            MISSES.set(0);
            return hit;
        }
        let misses = MISSES.get().saturating_add(1);
        MISSES.set(misses);
        let (request, body) = self.convert(raw)?;
        // Requests of at most 4 KiB are kept (bounded memory per thread).
        if raw.len() <= 4096 && (misses <= 16 || misses.is_multiple_of(16)) {
            RECENT.with_borrow_mut(|recent| {
                if recent.len() == KEPT {
                    recent.pop_back();
                }
                recent.push_front((
                    raw.to_vec(),
                    self.scheme,
                    request.method().clone(),
                    request.uri().clone(),
                    request.headers().clone(),
                    body.clone(),
                ));
            });
        }
        Some((request, body))
    }

    /// The conversion itself (see `to_request`).
    fn convert(&self, raw: &[u8]) -> Option<(http::Request<()>, Bytes)> {
        let mut headers = [httparse::EMPTY_HEADER; 80];
        let mut parsed = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(len) = parsed.parse(raw).ok()? else {
            return None;
        };
        let host = parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .and_then(|h| std::str::from_utf8(h.value).ok())?;
        let uri = format!("{}://{host}{}", self.scheme, parsed.path?);
        let mut builder = http::Request::builder()
            .method(parsed.method?)
            .uri(uri)
            .version(http::Version::HTTP_2);
        for h in parsed.headers.iter() {
            let connection_specific = [
                "host",
                "connection",
                "keep-alive",
                "transfer-encoding",
                "upgrade",
                "te",
                "proxy-connection",
            ]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n));
            if !connection_specific {
                builder = builder.header(h.name, h.value);
            }
        }
        let request = builder.body(()).ok()?;
        Some((request, Bytes::copy_from_slice(&raw[len..])))
    }
}

/// Drives a connection so that its writes gather the streams of every user
/// ready to send: when woken, it first yields once (to the back of the run
/// queue), then polls. Without this, tokio runs a task woken by another right
/// after it (its LIFO slot): each user's request woke the connection, which
/// wrote it alone, about one `writev` per three requests against h2load's
/// one per fifteen, and a fifth of the generator's CPU in the kernel's send
/// path.
struct Batched<F> {
    inner: std::pin::Pin<Box<F>>,
    yielded: bool,
}

impl<F: std::future::Future> Batched<F> {
    fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            yielded: false,
        }
    }
}

impl<F: std::future::Future> std::future::Future for Batched<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        self.yielded = false;
        self.inner.as_mut().poll(cx)
    }
}
