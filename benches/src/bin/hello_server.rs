//! A minimal keep-alive HTTP/1.1 server for load-generator benchmarks: every
//! request gets `200 hello`. Optional periodic stalls (`--stall-every 5s
//! --stall 500ms`) hold every answer during the first `stall` of each period,
//! like a stop-the-world pause, for the coordinated-omission benchmark.
//!
//! `--work-us 100` spends 100 µs of CPU on every request.
//!
//! `hello_server --listen 127.0.0.1:9100 --threads 1`

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";

#[derive(Clone, Copy)]
struct Stall {
    every: Duration,
    length: Duration,
    since: Instant,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:9100".to_owned();
    let mut threads = 1usize;
    let mut every = None;
    let mut length = Duration::ZERO;
    let mut work = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value,
            "--threads" => threads = value.parse()?,
            "--stall-every" => every = Some(perf_core::parse_duration(&value)?),
            "--stall" => length = perf_core::parse_duration(&value)?,
            "--work-us" => work = Duration::from_micros(value.parse()?),
            other => {
                return Err(format!(
                    "unknown flag {other}; use --listen, --threads, --stall-every, --stall"
                )
                .into());
            }
        }
    }
    let stall = every.map(|every| Stall {
        every,
        length,
        since: Instant::now(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&listen).await?;
        eprintln!(
            "hello_server listening on http://{}",
            listener.local_addr()?
        );
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream, stall, work));
        }
    })
}

async fn serve(mut stream: TcpStream, stall: Option<Stall>, work: Duration) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    loop {
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        // Answer every complete request head in the buffer (GET, no body).
        let mut answers = 0;
        let mut start = 0;
        while let Some(end) = buf[start..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            start += end + 4;
            answers += 1;
        }
        if answers == 0 {
            if filled == buf.len() {
                return;
            }
            continue;
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        if let Some(s) = stall {
            let phase = Duration::from_nanos(
                u64::try_from(s.since.elapsed().as_nanos() % s.every.as_nanos().max(1))
                    .unwrap_or(0),
            );
            if phase < s.length {
                tokio::time::sleep(s.length - phase).await;
            }
        }
        for _ in 0..answers {
            // CPU work per request (a busy wait), for benchmarks that need a
            // slower server without timer granularity.
            let until = Instant::now() + work;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            if stream.write_all(RESPONSE).await.is_err() {
                return;
            }
        }
    }
}
