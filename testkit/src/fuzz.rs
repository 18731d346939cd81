//! A small structure-aware fuzzer for bounded runs in CI: seeded, so a
//! failure names the seed that reproduces it, and timed by `FUZZ_SECONDS`
//! (`scripts/fuzz.sh DURATION` sets it for long runs).
//!
//! ```
//! let mut budget = testkit::fuzz::Budget::from_env("demo", 0.05);
//! let mut inputs = 0;
//! while let Some(mut rng) = budget.next_input() {
//!     let value = testkit::fuzz::mutate_json(&serde_json::json!({"a": 1}), &mut rng, 3);
//!     assert!(value.is_object() || !value.is_object());
//!     inputs += 1;
//! }
//! assert!(inputs > 0);
//! budget.report();
//! ```

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a fuzz target runs and how many inputs it tried.
#[derive(Debug)]
pub struct Budget {
    name: String,
    until: Instant,
    seed: u64,
    inputs: u64,
    started: Instant,
}

impl Budget {
    /// A budget of `FUZZ_SECONDS` (or `default_s`) for target `name`;
    /// `FUZZ_SEED` fixes the first seed (to reproduce a failure).
    pub fn from_env(name: &str, default_s: f64) -> Self {
        let secs = std::env::var("FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(default_s);
        let seed = std::env::var("FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        Self {
            name: name.to_owned(),
            until: Instant::now() + Duration::from_secs_f64(secs.min(86_400.0)),
            seed,
            inputs: 0,
            started: Instant::now(),
        }
    }

    /// The generator of the next input, or `None` when the time is up. A
    /// panic while it is used names its seed through [`Budget::seed`].
    pub fn next_input(&mut self) -> Option<fastrand::Rng> {
        if Instant::now() >= self.until {
            return None;
        }
        self.inputs += 1;
        let seed = self.seed.wrapping_add(self.inputs);
        CURRENT_SEED.with(|s| s.set(seed));
        Some(fastrand::Rng::with_seed(seed))
    }

    /// The seed of the current input.
    pub fn seed(&self) -> u64 {
        CURRENT_SEED.with(std::cell::Cell::get)
    }

    /// Inputs tried so far.
    pub fn inputs(&self) -> u64 {
        self.inputs
    }

    /// Prints `fuzz <name>: N inputs in S s (first seed X)` for the record.
    pub fn report(&self) {
        eprintln!(
            "fuzz {}: {} inputs in {:.1} s, no crash (seeds from {})",
            self.name,
            self.inputs,
            self.started.elapsed().as_secs_f64(),
            self.seed.wrapping_add(1)
        );
    }
}

thread_local! {
    static CURRENT_SEED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Values that break naive code: extremes, odd numbers, hostile strings.
pub fn interesting(rng: &mut fastrand::Rng) -> Value {
    let strings = [
        "",
        " ",
        "0",
        "-1",
        "1e-30/s",
        "5e-324",
        "1e308",
        "NaN",
        "inf",
        "-0",
        "0.0001/s",
        "18446744073709551616",
        "99999999999h",
        "1ns",
        "10m",
        "500ms",
        "2000/s",
        "1/h",
        "http://127.0.0.1:0",
        "http://127.0.0.1:1/x HTTP/1.1\r\nHost: evil\r\n\r\nDELETE / HTTP/1.1\r\n",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:1",
        "https://127.0.0.1:1",
        "/etc/passwd",
        "../../etc/shadow",
        "/dev/zero",
        "${zz}",
        "${",
        "a\u{0}b",
        "\r\n",
        "p95 < 1ms",
        "error_rate < 0.1%",
        "rps > 1e309",
        "√∂∆",
        "GET",
        "DELETE",
        "baseline",
    ];
    match rng.u8(..10) {
        0 => json!(rng.i64(..)),
        1 => json!(rng.u64(..)),
        2 => json!(f64::from_bits(rng.u64(..)))
            .as_f64()
            .map_or(Value::Null, |f| json!(f)),
        3 => json!([0_i64, -1, 1, i64::from(u32::MAX), i64::MIN][rng.usize(..5)]),
        4 => Value::Bool(rng.bool()),
        5 => Value::Null,
        6 => json!("x".repeat(rng.usize(..5000))),
        7 => json!([]),
        8 => json!({}),
        _ => json!(strings[rng.usize(..strings.len())]),
    }
}

/// `value` with up to `edits` random edits: a value replaced by an
/// interesting one, a key removed or added, an array entry duplicated.
pub fn mutate_json(value: &Value, rng: &mut fastrand::Rng, edits: usize) -> Value {
    let mut v = value.clone();
    for _ in 0..rng.usize(1..=edits.max(1)) {
        edit(&mut v, rng, 0);
    }
    v
}

fn edit(v: &mut Value, rng: &mut fastrand::Rng, depth: usize) {
    match v {
        Value::Object(map) if !map.is_empty() && rng.u8(..4) > 0 && depth < 6 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.usize(..keys.len())];
            match rng.u8(..8) {
                0 => {
                    map.remove(key);
                }
                1 => {
                    map.insert(random_key(rng, &keys), interesting(rng));
                }
                _ => {
                    if let Some(child) = map.get_mut(key) {
                        edit(child, rng, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && rng.u8(..4) > 0 && depth < 6 => {
            let i = rng.usize(..items.len());
            match rng.u8(..6) {
                0 => {
                    let copy = items[i].clone();
                    items.extend(std::iter::repeat_n(copy, rng.usize(1..50)));
                }
                1 => {
                    items.remove(i);
                }
                _ => edit(&mut items[i], rng, depth + 1),
            }
        }
        other => *other = interesting(rng),
    }
}

fn random_key(rng: &mut fastrand::Rng, known: &[String]) -> String {
    const KEYS: [&str; 12] = [
        "target",
        "duration",
        "users",
        "rate",
        "stages",
        "requests",
        "data",
        "timeout",
        "think_time",
        "thresholds",
        "workers",
        "zz",
    ];
    if rng.bool() && !known.is_empty() {
        known[rng.usize(..known.len())].clone()
    } else {
        KEYS[rng.usize(..KEYS.len())].to_owned()
    }
}

/// `text` with up to `edits` byte-level edits (insert, delete, duplicate a
/// span, or splice a hostile fragment), kept as valid UTF-8.
pub fn mutate_text(text: &str, rng: &mut fastrand::Rng, edits: usize) -> String {
    let fragments = [
        "\n",
        ":",
        "- ",
        "{",
        "}",
        "[",
        "]",
        "'",
        "\"",
        "&a",
        "*a",
        "!!binary",
        "\t",
        "\0",
        "\r\n",
        "${x}",
        "1e-30/s",
        "  ",
        "#",
        "|",
        ">",
        "~",
        "null",
        "9999999999999999999",
    ];
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.usize(1..=edits.max(1)) {
        let at = rng.usize(..=chars.len());
        match rng.u8(..4) {
            0 if !chars.is_empty() => {
                let end = (at + rng.usize(1..8)).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            1 if !chars.is_empty() => {
                let start = rng.usize(..chars.len());
                let end = (start + rng.usize(1..32)).min(chars.len());
                let span: Vec<char> = chars[start..end].to_vec();
                chars.splice(at..at, span);
            }
            _ => {
                let f = fragments[rng.usize(..fragments.len())];
                chars.splice(at..at, f.chars());
            }
        }
    }
    chars.into_iter().collect()
}

/// Resident memory of this process, bytes (Linux), to bound growth.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
