//! A local HTTP/1.1 target for load tests: keep-alive, a thread per
//! connection, a configurable delay, status and periodic stalls. It counts
//! what it served so tests can check the load generator's own figures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            status: 200,
            body: "hello".to_owned(),
            stall: None,
            chunked: false,
        }
    }
}

/// A running target; stopped on drop (its threads end with their connections).
#[derive(Debug)]
pub struct TargetServer {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl TargetServer {
    /// Starts on 127.0.0.1 and a free port.
    pub fn start(behavior: Behavior) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let behavior = Arc::new(behavior);
        let started = Instant::now();
        {
            let (served, connections, stop) = (
                Arc::clone(&served),
                Arc::clone(&connections),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::Relaxed);
                    let (served, behavior) = (Arc::clone(&served), Arc::clone(&behavior));
                    std::thread::spawn(move || serve(stream, &behavior, &served, started));
                }
            });
        }
        Ok(Self {
            addr,
            served,
            connections,
            stop,
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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

fn serve(stream: TcpStream, behavior: &Behavior, served: &AtomicU64, started: Instant) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // Request line and headers.
        let mut content_length = 0usize;
        let mut first = true;
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
            first = false;
            if let Some((name, value)) = line.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Some((period, stall)) = behavior.stall {
            let phase = Duration::from_nanos(
                (started.elapsed().as_nanos() % period.as_nanos().max(1)) as u64,
            );
            if phase < stall {
                std::thread::sleep(stall - phase);
            }
        }
        if !behavior.delay.is_zero() {
            std::thread::sleep(behavior.delay);
        }
        let response = if behavior.chunked {
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
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
        served.fetch_add(1, Ordering::Relaxed);
    }
}
