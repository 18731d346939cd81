//! A minimal HTTP/1.1 client made for load: one keep-alive connection per
//! virtual user (plain TCP or TLS), requests written from prepared bytes,
//! responses parsed with `httparse` and their bodies counted, not kept.
//! Small buffers keep the memory of an idle user in the hundreds of bytes.
//! Each exchange reports its phases: TCP connect, TLS handshake (full or
//! resumed) and time to first byte.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::journey::Kept;
use crate::tls::TlsClient;

/// Read buffer given to a new connection; it grows for large responses.
const INITIAL_BUFFER: usize = 512;
/// Above this capacity a buffer is shrunk back after the response.
const KEEP_BUFFER: usize = 16 * 1024;

/// `http[s]://host[:port][/base]`, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `https://`.
    pub(crate) tls: bool,
    /// Host as written.
    pub(crate) host: String,
    /// Port (default 80, or 443 with TLS).
    pub(crate) port: u16,
    /// Path prefix without a trailing slash (may be empty).
    pub(crate) base_path: String,
}

impl Endpoint {
    /// Parses a base URL; the error says what is allowed.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        if url.len() > 2048 {
            return Err("a base URL of at most 2048 characters".to_owned());
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            // CR, LF, NUL or a space would end the request line and let the
            // rest of the "URL" be sent as headers or a second request.
            return Err(
                "a base URL without spaces, line breaks or control characters (percent-encode them)"
                    .to_owned(),
            );
        }
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(
                "a base URL such as http://127.0.0.1:8080 or https://localhost:8443".to_owned(),
            );
        };
        let default_port = if tls { 443 } else { 80 };
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        if authority.is_empty() || authority.contains('@') {
            return Err(
                "a base URL with a host, such as http://127.0.0.1:8080 (no user info)".to_owned(),
            );
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("a closing ] for an IPv6 host")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("a port number, not {p:?}"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("unexpected {after:?} after the IPv6 host")),
            };
            (format!("[{h}]"), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| format!("a port number, not {p:?}"))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = if host.starts_with('[') {
            bare.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !bare.is_empty()
                && bare.len() <= 253
                && bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        };
        if !host_ok {
            return Err(format!(
                "a host name of letters, digits, - and ., an IPv4 address or [an IPv6 address], not {host:?}"
            ));
        }
        if port == 0 {
            return Err("a port from 1 to 65535 (port 0 cannot be connected to)".to_owned());
        }
        if path.contains(['?', '#']) {
            return Err(
                "a base URL without query or fragment (put those in the request path)".to_owned(),
            );
        }
        Ok(Self {
            tls,
            host,
            port,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The `Host` header value.
    pub(crate) fn authority(&self) -> String {
        if self.port == if self.tls { 443 } else { 80 } {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Resolves the host to socket addresses.
    pub(crate) async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, self.port)).await?.collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ));
        }
        Ok(addrs)
    }
}

/// Why a request failed before an HTTP status arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum FailureKind {
    /// The TCP connection could not be opened.
    Connect,
    /// The TLS handshake failed (an untrusted certificate, a name mismatch,
    /// no common protocol version or ALPN).
    Tls,
    /// No complete response within the request timeout.
    Timeout,
    /// The server closed or reset the connection mid-exchange.
    Reset,
    /// The response was not valid HTTP/1.1.
    Protocol,
    /// A failure a [`crate::Workload`] named.
    Other(&'static str),
}

impl FailureKind {
    /// Name used in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Protocol => "protocol",
            Self::Other(kind) => kind,
        }
    }
}

/// What came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    /// Status code.
    pub(crate) status: u16,
    /// Bytes of head and body received.
    pub(crate) bytes_received: u64,
}

/// Where and how one target is reached: its address, and for `https://`
/// the TLS client and the name to verify.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Option<(TlsClient, ServerName<'static>)>,
    /// HTTP/2: the target's connections (requests go there, not to a
    /// connection of the user's own).
    pub(crate) h2: Option<std::sync::Arc<crate::http2::Pool>>,
}

/// How long the phases of one exchange took (each only when it happened).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Phases {
    /// TCP connect of a connection opened for this request: `Ok` when it
    /// opened, `Err` with the time the failed attempt took.
    pub(crate) connect: Option<Result<Duration, Duration>>,
    /// TLS handshake of that connection, and whether it resumed a session.
    pub(crate) handshake: Option<(Duration, bool)>,
    /// From the request's first byte written to the response's first byte read.
    pub(crate) ttfb: Option<Duration>,
}

/// A plain or a TLS stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    // Vectored writes pass through: the h2 codec writes frame chains without
    // first copying them into one buffer when the stream takes them.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a connection did not open.
#[derive(Debug)]
pub(crate) struct OpenError {
    pub(crate) kind: FailureKind,
    pub(crate) error: io::Error,
}

/// Opens TCP (TCP_NODELAY set) to `addr` and, with `tls`, does the TLS
/// handshake; the phases it took go into `phases`. Shared by the HTTP/1.1
/// connections and the HTTP/2 pool.
pub(crate) async fn dial(
    addr: SocketAddr,
    tls: Option<&(TlsClient, ServerName<'static>)>,
    phases: &mut Phases,
) -> Result<Stream, OpenError> {
    let started = Instant::now();
    let tcp = match TcpStream::connect(addr).await {
        Ok(tcp) => tcp,
        Err(error) => {
            phases.connect = Some(Err(started.elapsed()));
            return Err(OpenError {
                kind: FailureKind::Connect,
                error,
            });
        }
    };
    phases.connect = Some(Ok(started.elapsed()));
    let _ = tcp.set_nodelay(true);
    let Some((client, name)) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let begun = Instant::now();
    let tls = client
        .connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|error| OpenError {
            kind: FailureKind::Tls,
            error,
        })?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    phases.handshake = Some((begun.elapsed(), resumed));
    Ok(Stream::Tls(Box::new(tls)))
}

/// One keep-alive connection.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: Stream,
    buf: Vec<u8>,
    reusable: bool,
}

impl Connection {
    /// Opens a connection (TCP_NODELAY set), with the TLS handshake for an
    /// `https://` target; the phases it took go into `phases`.
    pub(crate) async fn open(dialer: &Dialer, phases: &mut Phases) -> Result<Self, OpenError> {
        let stream = dial(dialer.addr, dialer.tls.as_ref(), phases).await?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(INITIAL_BUFFER),
            reusable: true,
        })
    }

    /// Whether the server allowed this connection to carry another request.
    pub(crate) fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Sends `request` (complete HTTP/1.1 bytes) and reads the whole response.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        head: bool,
        phases: &mut Phases,
        keep: Option<&mut Kept>,
    ) -> Result<Response, (FailureKind, bool)> {
        // The bool says whether nothing at all came back (a stale keep-alive
        // connection closed by the server: safe to retry on a new one).
        let written = Instant::now();
        // TLS buffers records: flush them. Plain TCP has nothing to flush.
        let tls = matches!(self.stream, Stream::Tls(_));
        if self.stream.write_all(request).await.is_err()
            || (tls && self.stream.flush().await.is_err())
        {
            self.reusable = false;
            return Err((FailureKind::Reset, true));
        }
        let result = self.read_response(head, written, phases, keep).await;
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::with_capacity(INITIAL_BUFFER);
        }
        if result.is_err() {
            self.reusable = false;
        }
        result
    }

    async fn fill(&mut self) -> Result<usize, FailureKind> {
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve(self.buf.capacity().max(INITIAL_BUFFER));
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(n) => Ok(n),
            Err(_) => Err(FailureKind::Reset),
        }
    }

    async fn read_response(
        &mut self,
        head: bool,
        written: Instant,
        phases: &mut Phases,
        mut keep: Option<&mut Kept>,
    ) -> Result<Response, (FailureKind, bool)> {
        self.buf.clear();
        let mut received = 0u64;
        // Head. What is buffered is parsed before reading more: an interim
        // (1xx) answer may have come in the same read as the final one.
        let mut interim = 0;
        let (status, head_len, framing) = loop {
            if !self.buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; 48];
                let mut parsed = httparse::Response::new(&mut headers);
                match parsed.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = parsed.code.unwrap_or(0);
                        if (100..200).contains(&status) {
                            // Interim response: drop it and read the final one
                            // (a few at most: a peer sending them forever is broken).
                            interim += 1;
                            if interim > 16 {
                                return Err((FailureKind::Protocol, false));
                            }
                            self.buf.drain(..len);
                            continue;
                        }
                        let framing = framing_of(&parsed, status, head);
                        self.reusable = !closes(&parsed);
                        if let Some(k) = keep.as_deref_mut() {
                            k.set_headers(parsed.headers.iter().map(|h| (h.name, h.value)));
                        }
                        break (status, len, framing);
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.buf.len() > 64 * 1024 {
                            return Err((FailureKind::Protocol, false));
                        }
                    }
                    Err(_) => return Err((FailureKind::Protocol, false)),
                }
            }
            let n = self.fill().await.map_err(|k| (k, received == 0))?;
            if n == 0 {
                return Err((FailureKind::Reset, received == 0));
            }
            if received == 0 {
                phases.ttfb = Some(written.elapsed());
            }
            received += n as u64;
        };
        self.buf.drain(..head_len);
        // Body: counted and dropped.
        match framing {
            Framing::Empty => {}
            Framing::Length(mut remaining) => loop {
                let have = (self.buf.len() as u64).min(remaining);
                if let Some(k) = keep.as_deref_mut() {
                    k.body_part(&self.buf[..usize::try_from(have).unwrap_or(usize::MAX)]);
                }
                remaining -= have;
                self.buf.clear();
                if remaining == 0 {
                    break;
                }
                let n = self.fill().await.map_err(|k| (k, false))?;
                if n == 0 {
                    return Err((FailureKind::Reset, false));
                }
                received += n as u64;
            },
            Framing::Chunked => {
                let mut decoder = ChunkDecoder::default();
                loop {
                    let mut sink = |data: &[u8]| {
                        if let Some(k) = keep.as_deref_mut() {
                            k.body_part(data);
                        }
                    };
                    match decoder.feed(&self.buf, &mut sink) {
                        Ok(Some(_)) => break,
                        Ok(None) => self.buf.clear(),
                        Err(()) => return Err((FailureKind::Protocol, false)),
                    }
                    let n = self.fill().await.map_err(|k| (k, false))?;
                    if n == 0 {
                        return Err((FailureKind::Reset, false));
                    }
                    received += n as u64;
                }
            }
            Framing::UntilClose => {
                self.reusable = false;
                loop {
                    if let Some(k) = keep.as_deref_mut() {
                        k.body_part(&self.buf);
                    }
                    self.buf.clear();
                    let n = self.fill().await.map_err(|k| (k, false))?;
                    if n == 0 {
                        break;
                    }
                    received += n as u64;
                }
            }
        }
        self.buf.clear();
        Ok(Response {
            status,
            bytes_received: received,
        })
    }
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

fn header<'a>(r: &'a httparse::Response<'_, '_>, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn framing_of(r: &httparse::Response<'_, '_>, status: u16, head: bool) -> Framing {
    if head || status == 204 || status == 304 {
        return Framing::Empty;
    }
    if header(r, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().ends_with(b"chunked"))
    {
        return Framing::Chunked;
    }
    match header(r, "content-length").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
    {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    }
}

fn closes(r: &httparse::Response<'_, '_>) -> bool {
    let close = header(r, "connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
    close
        || r.version == Some(0)
            && !header(r, "connection").is_some_and(|v| v.eq_ignore_ascii_case(b"keep-alive"))
}

/// Incremental chunked-body decoder that only needs to find the end.
#[derive(Debug, Default)]
struct ChunkDecoder {
    state: ChunkState,
    line: Vec<u8>,
}

#[derive(Debug, Default)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd(u8),
    Trailer,
}

impl ChunkDecoder {
    /// Consumes `input`, handing the body's data to `sink`; `Some(())` at
    /// the end of the body.
    fn feed(&mut self, input: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<Option<()>, ()> {
        let mut i = 0;
        while i < input.len() {
            match &mut self.state {
                ChunkState::Size | ChunkState::Trailer => {
                    let b = input[i];
                    i += 1;
                    if b != b'\n' {
                        if self.line.len() > 1024 {
                            return Err(());
                        }
                        self.line.push(b);
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    if matches!(self.state, ChunkState::Trailer) {
                        if line.is_empty() {
                            return Ok(Some(()));
                        }
                        continue;
                    }
                    let size_text = line.split(|&c| c == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(size_text)
                        .ok()
                        .and_then(|t| u64::from_str_radix(t.trim(), 16).ok())
                        .ok_or(())?;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(remaining) => {
                    let take = (*remaining).min((input.len() - i) as u64);
                    sink(&input[i..i + usize::try_from(take).unwrap_or(usize::MAX)]);
                    *remaining -= take;
                    i += usize::try_from(take).unwrap_or(usize::MAX);
                    if *remaining == 0 {
                        self.state = ChunkState::DataEnd(2);
                    }
                }
                ChunkState::DataEnd(left) => {
                    i += 1;
                    *left -= 1;
                    if *left == 0 {
                        self.state = ChunkState::Size;
                    }
                }
            }
        }
        Ok(None)
    }
}

/// Sends on `conn`, opening it first when needed and retrying once on a new
/// connection when a reused one turns out closed before any byte came back.
/// The phases of the exchange go into `phases`, what the answer says into
/// `keep` when given.
#[allow(clippy::too_many_arguments)] // one caller (http_workload::HttpWorkload::send)
pub(crate) async fn send(
    conn: &mut Option<Connection>,
    dialer: &Dialer,
    request: &[u8],
    head: bool,
    timeout: Duration,
    phases: &mut Phases,
    mut keep: Option<&mut Kept>,
    on_connect_error: &(dyn Fn(FailureKind, &io::Error) + Sync),
) -> Result<Response, FailureKind> {
    let attempt = async {
        for retry in 0..2 {
            let reused = conn.is_some();
            if conn.is_none() {
                *conn = Some(Connection::open(dialer, phases).await.map_err(|e| {
                    on_connect_error(e.kind, &e.error);
                    e.kind
                })?);
            }
            let Some(c) = conn.as_mut() else {
                return Err(FailureKind::Connect);
            };
            if let Some(k) = keep.as_deref_mut() {
                k.headers.clear();
                k.body.clear();
            }
            match c.exchange(request, head, phases, keep.as_deref_mut()).await {
                Ok(response) => {
                    if !c.is_reusable() {
                        *conn = None;
                    }
                    return Ok(response);
                }
                Err((kind, nothing_back)) => {
                    *conn = None;
                    if !(reused && nothing_back && retry == 0) {
                        return Err(kind);
                    }
                }
            }
        }
        Err(FailureKind::Reset)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => {
            *conn = None;
            Err(FailureKind::Timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_refuse_what_is_not_supported() {
        let e = Endpoint::parse("http://127.0.0.1:8080/api/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.base_path.as_str()),
            ("127.0.0.1", 8080, "/api")
        );
        assert_eq!(Endpoint::parse("http://localhost").unwrap().port, 80);
        let secure = Endpoint::parse("https://localhost/api").unwrap();
        assert_eq!((secure.tls, secure.port), (true, 443));
        assert_eq!(secure.authority(), "localhost");
        assert!(Endpoint::parse("https://[::1]").is_ok_and(|e| e.port == 443));
        let v6 = Endpoint::parse("http://[::1]:9000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("[::1]", 9000));
        for bad in [
            "ftp://x",
            "http://",
            "http://h:port",
            "127.0.0.1:80",
            "http://u@h",
            "http://h/?q",
            "http://127.0.0.1:0",
            "http://127.0.0.1:8/x HTTP/1.1\r\nHost: injected\r\n\r\nDELETE /admin HTTP/1.1\r\nX-Pad:",
            "http://127.0.0.1:8/a\0b",
            "http://exa mple.com",
            "http://h%0d%0a:80",
            "http://[::1%0a]:80",
            "http://[not-v6]:80",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunked_bodies_end_where_they_end_whatever_the_split() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n";
        for split in 1..body.len() {
            let mut d = ChunkDecoder::default();
            let mut data = Vec::new();
            let first = d
                .feed(&body[..split], &mut |b| data.extend_from_slice(b))
                .unwrap();
            assert!(first.is_none(), "ended early at split {split}");
            let end = d.feed(&body[split..], &mut |b| data.extend_from_slice(b));
            assert_eq!(end.unwrap(), Some(()), "split {split}");
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.", "split {split}");
        }
        assert!(
            ChunkDecoder::default()
                .feed(b"zz\r\n", &mut |_| {})
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_interim_answer_read_with_the_final_one_does_not_wait() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            // Both answers in one write: the final one is already buffered.
            let _ = s
                .write_all(
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                )
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let dialer = Dialer {
            addr,
            tls: None,
            h2: None,
        };
        let mut conn = None;
        let started = std::time::Instant::now();
        let r = send(
            &mut conn,
            &dialer,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            false,
            Duration::from_secs(3),
            &mut Phases::default(),
            None,
            &|_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
