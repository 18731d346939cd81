//! The balancing strategies at 100 backends: evenness (coefficient of
//! variation of request share), weights, slow start, latency awareness and
//! consistent hashing's stability.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use perf_scaling::{Backend, LoadBalancer, Strategy, coefficient_of_variation};

const BACKENDS: usize = 100;
const REQUESTS: usize = 1_000_000;

fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend::new(format!("10.0.{}.{}:8080", i / 250, i % 250)))
        .collect()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Sends `REQUESTS` through `lb` with 64 in flight, finishing a random one
/// each time (latency 1 to 5 ms, the same law for every backend, or a
/// constant 3 ms); the CV of the request counts.
fn evenness(lb: &LoadBalancer, keyed: bool, varied_latency: bool) -> f64 {
    let mut rng = Rng(7);
    let mut in_flight = VecDeque::new();
    for i in 0..REQUESTS {
        let key = keyed.then(|| format!("user-{}", rng.next()));
        in_flight.push_back(lb.pick(key.as_deref()).unwrap());
        if in_flight.len() >= 64 {
            let at = (rng.next() % in_flight.len() as u64) as usize;
            let done = in_flight.swap_remove_back(at).unwrap();
            let us = if varied_latency {
                1000 + rng.next() % 4000
            } else {
                3000
            };
            lb.finish(&done, Duration::from_micros(us));
        }
        let _ = i;
    }
    let counts: Vec<u64> = lb.shares().iter().map(|s| s.requests).collect();
    coefficient_of_variation(&counts)
}

#[test]
fn even_strategies_stay_under_two_percent_at_100_backends() {
    let mut report = BTreeMap::new();
    for (name, strategy, keyed) in [
        ("round_robin", Strategy::RoundRobin, false),
        ("weighted_round_robin", Strategy::WeightedRoundRobin, false),
        ("least_outstanding", Strategy::LeastOutstanding, false),
        ("peak_ewma", Strategy::PeakEwma, false),
        ("maglev", Strategy::Maglev, true),
    ] {
        let lb = LoadBalancer::new(strategy, backends(BACKENDS));
        let cv = evenness(&lb, keyed, strategy != Strategy::PeakEwma);
        report.insert(name, cv);
        assert!(cv < 0.02, "{name}: CV {cv:.4}");
    }
    // Peak EWMA is meant to follow latency, not to be even: with latencies
    // that differ at random it favours whoever was fast lately.
    let lb = LoadBalancer::new(Strategy::PeakEwma, backends(BACKENDS));
    report.insert("peak_ewma_varied_latency", evenness(&lb, false, true));
    eprintln!("CV of request share over {BACKENDS} backends, {REQUESTS} requests: {report:?}");
}

#[test]
fn weights_are_honoured_and_slow_start_ramps_a_new_backend() {
    let lb = LoadBalancer::new(
        Strategy::WeightedRoundRobin,
        vec![
            Backend {
                id: "a".into(),
                weight: 1,
            },
            Backend {
                id: "b".into(),
                weight: 2,
            },
            Backend {
                id: "c".into(),
                weight: 3,
            },
        ],
    );
    for _ in 0..6000 {
        let p = lb.pick(None).unwrap();
        lb.finish(&p, Duration::from_millis(1));
    }
    let shares: Vec<u64> = lb.shares().iter().map(|s| s.requests).collect();
    assert_eq!(shares, [1000, 2000, 3000]);

    let lb = LoadBalancer::new(Strategy::WeightedRoundRobin, backends(4))
        .with_slow_start(Duration::from_secs(60));
    let mut all = backends(4);
    all.push(Backend::new("new"));
    lb.set_backends(all);
    for _ in 0..50_000 {
        let p = lb.pick(None).unwrap();
        lb.finish(&p, Duration::from_millis(1));
    }
    let fresh = lb.shares().into_iter().find(|s| s.id == "new").unwrap();
    // At most 5 % of its weight during its first second of a 60 s ramp.
    assert!(fresh.share < 0.02, "{fresh:?}");
}

#[test]
fn peak_ewma_avoids_a_slow_backend() {
    let lb = LoadBalancer::new(Strategy::PeakEwma, backends(10));
    let slow = "10.0.0.3:8080";
    let mut rng = Rng(11);
    let mut in_flight = VecDeque::new();
    for _ in 0..100_000 {
        in_flight.push_back(lb.pick(None).unwrap());
        if in_flight.len() >= 16 {
            let done = in_flight.pop_front().unwrap();
            let ms = if done.id == slow {
                50
            } else {
                2 + rng.next() % 3
            };
            lb.finish(&done, Duration::from_millis(ms));
        }
    }
    let shares = lb.shares();
    let slow_share = shares.iter().find(|s| s.id == slow).unwrap().share;
    assert!(
        slow_share < 0.03,
        "the slow backend got {slow_share:.3} of requests"
    );
}

#[test]
fn maglev_keeps_keys_in_place_when_a_backend_goes() {
    let all = backends(BACKENDS);
    let lb = LoadBalancer::new(Strategy::Maglev, all.clone());
    let keys: Vec<String> = (0..100_000).map(|i| format!("session-{i}")).collect();
    let before: Vec<String> = keys.iter().map(|k| lb.pick(Some(k)).unwrap().id).collect();
    let again: Vec<String> = keys.iter().map(|k| lb.pick(Some(k)).unwrap().id).collect();
    assert_eq!(before, again, "the same key, the same backend");
    let gone = all[17].id.clone();
    lb.set_backends(all.into_iter().filter(|b| b.id != gone).collect());
    let after: Vec<String> = keys.iter().map(|k| lb.pick(Some(k)).unwrap().id).collect();
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let on_gone = before.iter().filter(|b| **b == gone).count();
    // Keys of the removed backend must move; Maglev moves few others.
    assert!(moved >= on_gone);
    assert!(
        (moved as f64) < 2.0 * on_gone as f64 + 1000.0,
        "moved {moved}, of which {on_gone} had to"
    );
}

#[test]
fn no_backends_means_no_pick() {
    let lb = LoadBalancer::new(Strategy::RoundRobin, Vec::new());
    assert!(lb.pick(None).is_none());
    let lb = LoadBalancer::new(Strategy::Maglev, Vec::new());
    assert!(lb.pick(Some("k")).is_none());
}
