//! Server-Sent Events of the real binary over real sockets: a late
//! subscriber's history, many subscribers against one test's throughput, a
//! stalled subscriber dropped, and the cap on open streams.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::ServerProcess;
use serde_json::Value;
use testkit::http;

/// A subscriber reading an event stream from a plain socket.
struct EventClient {
    reader: BufReader<TcpStream>,
    /// Decoded body bytes not yet split into events.
    pending: Vec<u8>,
    ended: bool,
}

/// One event: its name, its data parsed as JSON, and when it arrived.
#[derive(Debug)]
struct Event {
    name: String,
    data: Value,
    at: Instant,
}

impl EventClient {
    /// Opens `path`; the status and the client (reading its body) or the answer's body.
    fn open(addr: SocketAddr, path: &str) -> Result<Self, (u16, String)> {
        let mut socket = TcpStream::connect(addr).unwrap();
        write!(
            socket,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(socket);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        let mut client = Self {
            reader,
            pending: Vec::new(),
            ended: false,
        };
        if status == 200 {
            Ok(client)
        } else {
            // An error answer has a length, not chunks; the socket closes after it.
            let mut body = String::new();
            let _ = client.reader.read_to_string(&mut body);
            Err((status, body))
        }
    }

    /// Reads one chunk of the chunked body into `pending`; false at its end.
    fn read_chunk(&mut self) -> bool {
        let mut size = String::new();
        if self.reader.read_line(&mut size).unwrap_or(0) == 0 {
            return false;
        }
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return false;
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).unwrap();
        self.pending.extend_from_slice(&chunk[..size]);
        true
    }

    /// The next event, skipping comments; `None` once the stream ended.
    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let (mut name, mut data) = (None, None);
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                if let (Some(name), Some(data)) = (name, data) {
                    return Some(Event {
                        name,
                        data,
                        at: Instant::now(),
                    });
                }
                continue;
            }
            if self.ended || !self.read_chunk() {
                self.ended = true;
                return None;
            }
        }
    }

    /// Every event until the stream ends.
    fn all(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.next()).collect()
    }
}

fn start_test(server: &ServerProcess, seconds: u32, users: u32) -> String {
    let target = format!("http://{}", server.addr);
    let started = server.send_json(
        "POST",
        "/performance/tests",
        &format!(
            r#"{{"name": "live", "target": "{target}", "duration": "{seconds}s", "users": {users},
                "requests": [{{"name": "health", "path": "/health"}}], "thresholds": ["p95 < 1000ms"]}}"#
        ),
    );
    assert_eq!(started.status, 202, "{}", started.body);
    serde_json::from_str::<Value>(&started.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn rps_of(server: &ServerProcess, id: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let test: Value = serde_json::from_str(
            &http::get(server.addr, &format!("/performance/tests/{id}"))
                .unwrap()
                .body,
        )
        .unwrap();
        if test["status"] == "completed" {
            let report: Value = serde_json::from_str(
                &http::get(server.addr, &format!("/performance/tests/{id}/results"))
                    .unwrap()
                    .body,
            )
            .unwrap();
            return report["rps"].as_f64().unwrap();
        }
        assert!(Instant::now() < deadline, "{test}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric(server: &ServerProcess, name: &str) -> f64 {
    let body = http::get(server.addr, "/metrics").unwrap().body;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Joining a running test late, the subscriber first gets what happened
/// (queued, running, the snapshots so far) at once, then a snapshot each
/// second, then the end with the verdict, and the stream closes; joining
/// after the end gets the last event only.
#[test]
fn a_late_subscriber_gets_the_history_then_live_snapshots_then_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let id = start_test(&server, 5, 2);
    std::thread::sleep(Duration::from_millis(2600));
    let joined = Instant::now();
    let mut client =
        EventClient::open(server.addr, &format!("/performance/tests/{id}/events")).unwrap();
    let events = client.all();
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(&names[..2], ["status", "status"], "{names:?}");
    assert_eq!(events[0].data["status"], "queued");
    assert_eq!(events[1].data["status"], "running");
    assert_eq!(names.last(), Some(&"completed"), "{names:?}");
    let snapshots: Vec<&Event> = events.iter().filter(|e| e.name == "snapshot").collect();
    assert!(snapshots.len() >= 5, "{names:?}");
    // The history (two snapshots at least) arrived at once, the rest live.
    let at_once = snapshots
        .iter()
        .filter(|e| e.at.duration_since(joined) < Duration::from_millis(300))
        .count();
    assert!(
        at_once >= 2,
        "{at_once} snapshots at once of {}",
        snapshots.len()
    );
    assert!(snapshots.last().unwrap().at.duration_since(joined) > Duration::from_secs(2));
    // Snapshots carry the live figures and only grow.
    for pair in snapshots.windows(2) {
        assert!(pair[1].data["requests"].as_u64() >= pair[0].data["requests"].as_u64());
    }
    let last = snapshots.last().unwrap();
    for field in [
        "rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "users",
        "dropped",
        "generator_bound",
        "errors_by_kind",
        "last_second",
    ] {
        assert!(
            last.data.get(field).is_some(),
            "{field} missing: {}",
            last.data
        );
    }
    let end = events.last().unwrap();
    assert_eq!(end.data["status"], "completed");
    assert_eq!(end.data["passed"], true);
    assert!(end.data["requests"].as_u64().unwrap() > 0);
    assert_eq!(end.data["thresholds"][0]["passed"], true);

    // After the end: the last event, then the stream closes.
    let mut late =
        EventClient::open(server.addr, &format!("/performance/tests/{id}/events")).unwrap();
    let events = late.all();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].name, "completed");
    // No such test: 404, not a stream.
    let (status, _) = EventClient::open(
        server.addr,
        "/performance/tests/01900000-0000-7000-8000-000000000000/events",
    )
    .err()
    .unwrap();
    assert_eq!(status, 404);
    assert_eq!(metric(&server, "perf_event_streams_open"), 0.0);
}

/// 200 subscribers on one test: each gets every snapshot and the end, and
/// the test's throughput stays that of a test nobody watches (the figure is
/// printed; BENCHMARKS.md keeps it). Events are rendered once and queued
/// without waiting, so the load engine never waits for a subscriber.
#[test]
fn two_hundred_subscribers_do_not_slow_the_test_they_watch() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let mut alone = Vec::new();
    let mut watched = Vec::new();
    for _ in 0..2 {
        let id = start_test(&server, 4, 4);
        alone.push(rps_of(&server, &id));

        let id = start_test(&server, 4, 4);
        let path = format!("/performance/tests/{id}/events");
        let subscribers: Vec<_> = (0..200)
            .map(|_| {
                let client = EventClient::open(server.addr, &path);
                std::thread::spawn(move || client.unwrap().all())
            })
            .collect();
        watched.push(rps_of(&server, &id));
        let mut counts = Vec::new();
        for s in subscribers {
            let events = s.join().unwrap();
            assert_eq!(events.last().map(|e| e.name.as_str()), Some("completed"));
            counts.push(events.iter().filter(|e| e.name == "snapshot").count());
        }
        // Every subscriber got every snapshot (the history covers the whole test).
        assert!(counts[0] >= 3, "{counts:?}");
        assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0] + v[v.len() - 1]) / 2.0
    };
    let (alone, watched) = (median(&mut alone), median(&mut watched));
    println!(
        "throughput alone {alone:.0} req/s, with 200 subscribers {watched:.0} req/s, ratio {:.3}",
        watched / alone
    );
    assert!(
        watched > alone * 0.7,
        "200 subscribers cost the test too much: {watched:.0} against {alone:.0} req/s"
    );
    assert_eq!(metric(&server, "perf_event_streams_dropped_total"), 0.0);
}

/// Beyond `max_event_streams` a subscription is refused with 503 and
/// `Retry-After`; a subscriber that stops reading is dropped once the
/// server cannot write to it (its slot freed, counted on /metrics), and the
/// host sampler that feeds it never waits.
#[test]
fn a_stalled_subscriber_is_dropped_and_the_cap_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("perf.yaml");
    std::fs::write(
        &config,
        "sample_interval: 100ms\nmax_event_streams: 3\nsocket_send_buffer: 32KiB\n",
    )
    .unwrap();
    let server = ServerProcess::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let mut readers: Vec<EventClient> = (0..3)
        .map(|_| EventClient::open(server.addr, "/performance/metrics/events").unwrap())
        .collect();
    for r in &mut readers {
        let sample = r.next().unwrap();
        assert_eq!(sample.name, "sample");
        assert!(sample.data["cpu"]["cores"].as_u64().unwrap() >= 1);
    }
    let refused = http::get(server.addr, "/performance/metrics/events").unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.header("retry-after").is_some());
    assert!(
        refused.body.contains("max_event_streams"),
        "{}",
        refused.body
    );
    drop(readers);
    // Their slots come back once the server notices the closed sockets (its next write).
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "perf_event_streams_open") > 0.0 {
        assert!(Instant::now() < deadline, "closed streams kept their slots");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A subscriber that never reads: the socket's buffers fill (32 KiB sent,
    // doubled by the kernel, plus the client's 128 KiB window, at ~25 KB/s
    // of samples), then its queue, then it is dropped.
    let stalled = EventClient::open(server.addr, "/performance/metrics/events").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&server, "perf_event_streams_dropped_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stalled subscriber was never dropped"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(metric(&server, "perf_event_streams_open"), 0.0);
    // The sampler kept its pace meanwhile, and new subscribers are served.
    let mut fresh = EventClient::open(server.addr, "/performance/metrics/events").unwrap();
    assert_eq!(fresh.next().unwrap().name, "sample");
    assert!(
        server.log_text().contains("dropped an event stream"),
        "{}",
        server.log_text()
    );
    drop(stalled);
}

/// SIGTERM with event streams open: they end at once and the server stops
/// without waiting its graceful-shutdown timeout for them.
#[test]
fn sigterm_ends_open_event_streams_and_the_server_stops_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[]);
    let mut clients: Vec<EventClient> = (0..3)
        .map(|_| EventClient::open(server.addr, "/performance/metrics/events").unwrap())
        .collect();
    for c in &mut clients {
        assert_eq!(c.next().unwrap().name, "sample");
    }
    let signalled = Instant::now();
    server.signal("TERM");
    for c in &mut clients {
        // What was queued, then the end.
        while c.next().is_some() {}
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", server.log_text());
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "took {:?} (the graceful timeout is 30 s)",
        signalled.elapsed()
    );
}
