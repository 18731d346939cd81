//! Bounded fuzzing (a few seconds in CI; `scripts/fuzz.sh DURATION` for long
//! runs): scenarios as JSON and YAML through validation, plan, memory
//! estimate and short real runs; and the engine's HTTP response reading
//! against hostile servers. Invariants: no panic, bounded memory, a refusal
//! names its key, every request counted once.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use perf_loadgen::{FeedAccess, Scenario, ScenarioFile};
use serde_json::{Value, json};
use testkit::fuzz::{Budget, mutate_json, mutate_text, rss_bytes};

fn corpus(target: &str) -> Vec<Value> {
    vec![
        json!({"target": target, "duration": "1s", "users": 3, "think_time": "10ms"}),
        json!({"target": target, "duration": "1s", "rate": "100/s", "max_in_flight": 10,
               "thresholds": ["p95 < 1s", "error_rate < 1%"]}),
        json!({"target": [target, target], "stages": [{"duration": "500ms", "rate": "50/s"},
               {"duration": "500ms", "rate": 0}]}),
        json!({"target": target, "duration": "1s", "users": 2, "ramp_up": "200ms",
               "think_time": {"exponential": {"mean": "20ms"}},
               "data": {"csv": "id,name\n1,a\n2,b\n", "mode": "random"},
               "requests": [{"name": "item", "path": "/items/${id}", "weight": 3},
                            {"method": "POST", "path": "/items", "body": "{\"n\": \"${name}\"}",
                             "headers": {"X-Name": "${name}"}}]}),
        json!({"target": target, "stages": [{"duration": "300ms", "users": 2},
               {"duration": "300ms", "users": 0}], "timeout": "200ms", "abort_on_fail": true}),
    ]
}

/// Keeps a valid scenario short and small enough to run here.
fn tame(s: &mut Scenario, target: &str) -> bool {
    let Ok(plan) = s.plan("f") else { return false };
    if plan.total() > Duration::from_secs(60) {
        return false;
    }
    s.target = Some(perf_loadgen::Targets::One(target.to_owned()));
    s.duration = Some(perf_core::HumanDuration(Duration::from_millis(300)));
    s.stages.clear();
    s.ramp_up = None;
    if s.users.is_some() {
        s.users = Some(s.users.unwrap_or(1).clamp(1, 4));
        s.think_time = None;
    } else {
        s.rate = Some(perf_loadgen::Rate::per_second_of(200.0));
        s.max_in_flight = Some(16);
    }
    s.timeout = Some(perf_core::HumanDuration(Duration::from_millis(500)));
    s.validate("f").is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_scenarios_through_validation_plan_and_short_runs() {
    let target =
        testkit::target::TargetServer::start(testkit::target::Behavior::default()).unwrap();
    let base = corpus(&target.url());
    let yaml: Vec<String> = base
        .iter()
        .enumerate()
        .map(|(i, s)| format!("load_tests:\n  s{i}: {s}\n"))
        .collect();
    let rss_before = rss_bytes();
    let mut budget = Budget::from_env("scenarios", 6.0);
    let (mut valid, mut runs, mut refused) = (0u64, 0u64, 0u64);
    while let Some(mut rng) = budget.next_input() {
        let seed = budget.seed();
        if rng.bool() {
            let text = mutate_text(&yaml[rng.usize(..yaml.len())], &mut rng, 4);
            match ScenarioFile::from_yaml(&text) {
                Ok(_) => valid += 1,
                Err(e) => {
                    assert!(!e.to_string().is_empty(), "seed {seed}");
                    refused += 1;
                }
            }
            continue;
        }
        let value = mutate_json(&base[rng.usize(..base.len())], &mut rng, 3);
        let Ok(mut scenario) = serde_json::from_value::<Scenario>(value) else {
            refused += 1;
            continue;
        };
        match scenario.validate("f") {
            Err(perf_loadgen::Error::Invalid { key, .. }) => {
                assert!(!key.is_empty(), "seed {seed}: a refusal names its key");
                refused += 1;
                continue;
            }
            Err(e) => panic!("seed {seed}: validation failed without naming a key: {e}"),
            Ok(()) => valid += 1,
        }
        let _ = scenario.estimated_memory("f").unwrap();
        let _ = perf_loadgen::check_with("f", &scenario, &FeedAccess::InlineOnly);
        if rng.u8(..20) == 0 && tame(&mut scenario, &target.url()) {
            let Ok(run) = perf_loadgen::start("f", &scenario).await else {
                continue;
            };
            let report = tokio::time::timeout(Duration::from_secs(10), run.report())
                .await
                .unwrap_or_else(|_| panic!("seed {seed}: the run did not end"))
                .unwrap();
            let statuses: u64 = report.status_codes.values().sum();
            let failures: u64 = report.error_kinds.values().sum();
            assert_eq!(report.requests, statuses + failures, "seed {seed}");
            runs += 1;
        }
    }
    budget.report();
    eprintln!("  {valid} valid, {refused} refused, {runs} short runs");
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(grown < 512 << 20, "RSS grew {grown} bytes");
}

/// Responses a broken or hostile server sends.
fn hostile_response(rng: &mut fastrand::Rng) -> Vec<u8> {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
    match rng.u8(..14) {
        0 => ok,
        1 => {
            let mut r = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
            r.extend(std::iter::repeat_n(b'a', rng.usize(1..200_000)));
            r.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
            r
        }
        2 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n".to_vec(),
        3 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nx"
            .to_vec(),
        4 => b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nshort".to_vec(),
        5 => Vec::new(),
        6 => b"HTTP/1.1 100 Continue\r\n\r\n".repeat(rng.usize(1..500)),
        7 => b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n".to_vec(),
        8 => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\nok".to_vec(),
        9 => (0..rng.usize(1..3000)).map(|_| rng.u8(..)).collect(),
        10 => b"HTTP/1.1 999 Weird\r\n\r\n".to_vec(),
        11 => b"HTTP/1.1 200 OK\r\n".repeat(rng.usize(1..5000)),
        12 => b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec(),
        _ => {
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..rng.usize(1..2000) {
                r.extend_from_slice(b"1;ext=x\r\na\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_the_response_reader_against_hostile_servers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seed = fastrand::u64(..);
    std::thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let response = hostile_response(&mut rng);
            let slow = rng.u8(..8) == 0;
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4096];
                // Answer each request on the connection until it closes.
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let sent = if slow {
                        response.chunks(7).take(40).try_for_each(|c| {
                            std::thread::sleep(Duration::from_millis(5));
                            s.write_all(c)
                        })
                    } else {
                        s.write_all(&response)
                    };
                    if sent.is_err() || response.is_empty() {
                        break;
                    }
                }
            });
        }
    });
    let rss_before = rss_bytes();
    let mut budget = Budget::from_env("responses", 6.0);
    let mut requests = 0u64;
    while let Some(mut rng) = budget.next_input() {
        let seed = budget.seed();
        let yaml = if rng.bool() {
            format!(
                "load_tests:\n  h: {{target: 'http://{addr}', duration: 400ms, users: 4, timeout: 300ms}}\n"
            )
        } else {
            format!(
                "load_tests:\n  h: {{target: 'http://{addr}', duration: 400ms, rate: 200/s, timeout: 300ms}}\n"
            )
        };
        let file = ScenarioFile::from_yaml(&yaml).unwrap();
        let started = Instant::now();
        let report = perf_loadgen::start("h", file.get("h").unwrap())
            .await
            .unwrap()
            .report()
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "seed {seed}: a hostile server held the run {:?}",
            started.elapsed()
        );
        let statuses: u64 = report.status_codes.values().sum();
        let failures: u64 = report.error_kinds.values().sum();
        assert_eq!(report.requests, statuses + failures, "seed {seed}");
        requests += report.requests;
    }
    budget.report();
    eprintln!("  {requests} requests against hostile responses (server seed {seed})");
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(grown < 256 << 20, "RSS grew {grown} bytes");
}
