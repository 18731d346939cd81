//! Running checks and journeys: checks and captures compiled once per run,
//! their pass and fail counts, and a virtual user's own state (variables,
//! cookie jar, which `once` steps are done).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scenario::{
    CaptureSpec, CheckSpec, MAX_KEPT_BODY, MAX_VAR_BYTES, OnCheckFailure, RequestSpec, Scenario,
    ThinkTime, compile_regex,
};

/// Most cookies a virtual user keeps.
const MAX_COOKIES: usize = 32;
/// Most bytes of cookies (names and values) a virtual user keeps.
pub(crate) const MAX_COOKIE_BYTES: usize = 16 * 1024;
/// Most bytes of response headers kept for checks and captures.
pub(crate) const MAX_KEPT_HEADER_BYTES: usize = 16 * 1024;

/// The parts of a response that checks and captures look at.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// Headers, names lowercased (at most 64).
    pub(crate) headers: Vec<(String, String)>,
    /// The first [`MAX_KEPT_BODY`] bytes of the body (when wanted).
    pub(crate) body: Vec<u8>,
    /// Whether the body is kept (headers always are).
    want_body: bool,
}

impl Kept {
    /// Headers, and the body too when `body`.
    pub(crate) fn wanting_body(body: bool) -> Self {
        Self {
            want_body: body,
            ..Self::default()
        }
    }

    /// Keeps the headers of an answer: names lowercased, at most 64 of
    /// them and [`MAX_KEPT_HEADER_BYTES`] in all (the rest is dropped).
    pub(crate) fn set_headers<'h>(&mut self, headers: impl Iterator<Item = (&'h str, &'h [u8])>) {
        self.headers.clear();
        let mut room = MAX_KEPT_HEADER_BYTES;
        for (name, value) in headers.take(64) {
            let size = name.len() + value.len();
            if size > room {
                break;
            }
            room -= size;
            self.headers.push((
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    }

    /// Keeps what fits of `bytes`.
    pub(crate) fn body_part(&mut self, bytes: &[u8]) {
        if !self.want_body {
            return;
        }
        let room = MAX_KEPT_BODY.saturating_sub(self.body.len());
        self.body.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a check or capture is given: the status (none when the exchange
/// failed), what was kept and how long it took.
#[derive(Debug)]
pub(crate) struct Answer<'a> {
    pub(crate) status: Option<u16>,
    pub(crate) kept: &'a Kept,
    pub(crate) latency: Duration,
    /// The body as JSON, parsed once when a check or capture first asks.
    pub(crate) json: std::cell::OnceCell<Option<serde_json::Value>>,
}

impl Answer<'_> {
    fn json(&self) -> Option<&serde_json::Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(&self.kept.body).ok())
            .as_ref()
    }
}

#[derive(Debug)]
enum Expect {
    Exists(bool),
    Equals(serde_json::Value),
}

#[derive(Debug)]
enum CheckKind {
    Status(Vec<u16>),
    Header(String, Expect),
    BodyContains(String),
    BodyRegex(regex::Regex),
    Json(String, Expect),
    MaxLatency(Duration),
}

#[derive(Debug)]
struct Check {
    kind: CheckKind,
    /// Index of its counters.
    slot: usize,
}

#[derive(Debug)]
enum Source {
    Json(String),
    Regex(regex::Regex),
    Header(String),
    Cookie(String),
}

#[derive(Debug)]
struct Capture {
    var: String,
    source: Source,
    slot: usize,
}

/// One step of a flow as run.
#[derive(Debug)]
pub(crate) struct Step {
    /// Index of its request in the mix.
    pub(crate) request: usize,
    captures: Vec<Capture>,
    pub(crate) think: Option<ThinkTime>,
    pub(crate) once: bool,
}

/// One flow as run.
#[derive(Debug)]
pub(crate) struct Flow {
    pub(crate) steps: Vec<Step>,
    pub(crate) abort_on_failure: bool,
}

/// The checks of every request of the mix, the flows, and their counters.
#[derive(Debug, Default)]
pub(crate) struct Journeys {
    /// Checks per request of the mix.
    checks: Vec<Vec<Check>>,
    pub(crate) flows: Vec<Flow>,
    flow_names: Vec<String>,
    cumulative: Vec<u64>,
    /// `request name: check` for each counter slot.
    labels: Vec<String>,
    /// Per slot: passes, fails.
    counts: Vec<(AtomicU64, AtomicU64)>,
    /// Per flow: iterations completed, aborted.
    iterations: Vec<(AtomicU64, AtomicU64)>,
    /// Whether request i needs its headers or body kept.
    keeps: Vec<bool>,
}

fn expect(equals: &Option<serde_json::Value>, exists: Option<bool>) -> Expect {
    match equals {
        Some(v) => Expect::Equals(v.clone()),
        None => Expect::Exists(exists.unwrap_or(true)),
    }
}

fn compile_check(spec: &CheckSpec, slot: usize) -> Check {
    let kind = if let Some(s) = &spec.status {
        CheckKind::Status(s.codes())
    } else if let Some(h) = &spec.header {
        CheckKind::Header(h.to_ascii_lowercase(), expect(&spec.equals, spec.exists))
    } else if let Some(t) = &spec.body_contains {
        CheckKind::BodyContains(t.clone())
    } else if let Some(r) = &spec.body_regex {
        // Validated with the scenario: a pattern that does not compile never gets here.
        compile_regex(r).map_or(CheckKind::BodyContains(r.clone()), CheckKind::BodyRegex)
    } else if let Some(p) = &spec.json {
        CheckKind::Json(p.clone(), expect(&spec.equals, spec.exists))
    } else {
        CheckKind::MaxLatency(spec.max_latency.map_or(Duration::MAX, |d| d.0))
    };
    Check { kind, slot }
}

fn compile_capture(spec: &CaptureSpec, slot: usize) -> Capture {
    let source = if let Some(p) = &spec.json {
        Source::Json(p.clone())
    } else if let Some(r) = &spec.regex {
        compile_regex(r).map_or(Source::Json(String::from("/\u{0}")), Source::Regex)
    } else if let Some(h) = &spec.header {
        Source::Header(h.to_ascii_lowercase())
    } else {
        Source::Cookie(spec.cookie.clone().unwrap_or_default())
    };
    Capture {
        var: spec.var.clone(),
        source,
        slot,
    }
}

impl Journeys {
    /// Compiles the checks of `mix` (named `names`) and the flows of `scenario`.
    pub(crate) fn new(scenario: &Scenario, mix: &[RequestSpec], names: &[String]) -> Self {
        let mut j = Journeys::default();
        let slot = |j: &mut Journeys, label: String| {
            j.labels.push(label);
            j.counts.push((AtomicU64::new(0), AtomicU64::new(0)));
            j.labels.len() - 1
        };
        for (i, r) in mix.iter().enumerate() {
            let mut checks = Vec::new();
            for c in &r.checks {
                let s = slot(&mut j, format!("{}: {}", names[i], c.label()));
                checks.push(compile_check(c, s));
            }
            j.keeps.push(
                r.checks.iter().any(|c| {
                    c.body_contains.is_some() || c.body_regex.is_some() || c.json.is_some()
                }),
            );
            j.checks.push(checks);
        }
        let mut request = 0;
        let mut total = 0u64;
        for (f, name) in scenario.flows.iter().zip(scenario.flow_names()) {
            let mut steps = Vec::new();
            for s in &f.steps {
                let captures: Vec<Capture> = s
                    .captures
                    .iter()
                    .map(|c| {
                        let slot = slot(&mut j, format!("{}: capture {}", names[request], c.var));
                        compile_capture(c, slot)
                    })
                    .collect();
                if s.captures
                    .iter()
                    .any(|c| c.json.is_some() || c.regex.is_some())
                {
                    j.keeps[request] = true;
                }
                steps.push(Step {
                    request,
                    captures,
                    think: s.think_time,
                    once: s.once,
                });
                request += 1;
            }
            total += u64::from(f.weight);
            j.cumulative.push(total);
            j.flow_names.push(name);
            j.iterations.push((AtomicU64::new(0), AtomicU64::new(0)));
            j.flows.push(Flow {
                steps,
                abort_on_failure: f.on_check_failure == OnCheckFailure::AbortIteration,
            });
        }
        j
    }

    /// Whether request `i` needs its answer's body.
    pub(crate) fn keeps(&self, i: usize) -> bool {
        self.keeps.get(i).copied().unwrap_or(false)
    }

    /// Whether request `i` has checks.
    pub(crate) fn has_checks(&self, i: usize) -> bool {
        self.checks.get(i).is_some_and(|c| !c.is_empty())
    }

    /// Picks a flow by weight.
    pub(crate) fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        crate::request::pick_weighted(&self.cumulative, rng)
    }

    fn count(&self, slot: usize, passed: bool) {
        if let Some((pass, fail)) = self.counts.get(slot) {
            if passed { pass } else { fail }.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs the checks of request `i` on `answer`; whether all held.
    pub(crate) fn check(&self, i: usize, answer: &Answer<'_>) -> bool {
        let mut all = true;
        for c in self.checks.get(i).map_or(&[][..], Vec::as_slice) {
            let passed = holds(&c.kind, answer);
            self.count(c.slot, passed);
            all &= passed;
        }
        all
    }

    /// Takes the step's captures from `answer` into `user`; whether all were found.
    pub(crate) fn capture(&self, step: &Step, answer: &Answer<'_>, user: &mut UserState) -> bool {
        let mut all = true;
        for c in &step.captures {
            let value = answer.status.and_then(|_| take(&c.source, answer));
            let ok = value.is_some_and(|v| {
                // A value that would break the request it is put into is not taken.
                let fits = v.len() <= MAX_VAR_BYTES && !v.chars().any(char::is_control);
                if fits {
                    user.vars.insert(c.var.clone(), v);
                }
                fits
            });
            self.count(c.slot, ok);
            all &= ok;
        }
        all
    }

    /// Counts an iteration of flow `f`.
    pub(crate) fn iteration(&self, f: usize, aborted: bool) {
        if let Some((done, cut)) = self.iterations.get(f) {
            if aborted { cut } else { done }.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Checks passed and failed so far, all checks together.
    pub(crate) fn check_totals(&self) -> (u64, u64) {
        self.counts.iter().fold((0, 0), |(p, f), (cp, cf)| {
            (
                p + cp.load(Ordering::Relaxed),
                f + cf.load(Ordering::Relaxed),
            )
        })
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> (BTreeMap<String, CheckCount>, BTreeMap<String, FlowCount>) {
        let checks = self
            .labels
            .iter()
            .zip(&self.counts)
            .map(|(l, (p, f))| {
                (
                    l.clone(),
                    CheckCount::of(p.load(Ordering::Relaxed), f.load(Ordering::Relaxed)),
                )
            })
            .collect();
        let flows = self
            .flow_names
            .iter()
            .zip(&self.iterations)
            .map(|(n, (d, a))| {
                (
                    n.clone(),
                    FlowCount {
                        iterations: d.load(Ordering::Relaxed) + a.load(Ordering::Relaxed),
                        aborted: a.load(Ordering::Relaxed),
                    },
                )
            })
            .collect();
        (checks, flows)
    }
}

fn holds(kind: &CheckKind, a: &Answer<'_>) -> bool {
    let Some(status) = a.status else {
        return false;
    };
    match kind {
        CheckKind::Status(codes) => codes.contains(&status),
        CheckKind::Header(name, Expect::Exists(want)) => a.kept.header(name).is_some() == *want,
        CheckKind::Header(name, Expect::Equals(v)) => {
            let want = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            a.kept.header(name) == Some(want.as_str())
        }
        CheckKind::BodyContains(text) => {
            let t = text.as_bytes();
            !t.is_empty() && a.kept.body.windows(t.len()).any(|w| w == t)
        }
        CheckKind::BodyRegex(re) => re.is_match(&String::from_utf8_lossy(&a.kept.body)),
        CheckKind::Json(pointer, expect) => {
            let doc = a.json();
            let found = doc.and_then(|d| d.pointer(pointer));
            match expect {
                Expect::Exists(want) => doc.is_some() && found.is_some() == *want,
                Expect::Equals(v) => found == Some(v),
            }
        }
        CheckKind::MaxLatency(max) => a.latency <= *max,
    }
}

fn take(source: &Source, answer: &Answer<'_>) -> Option<String> {
    let kept = answer.kept;
    match source {
        Source::Json(pointer) => {
            let v = answer.json()?.pointer(pointer)?;
            Some(v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        }
        Source::Regex(re) => {
            let text = String::from_utf8_lossy(&kept.body);
            let caps = re.captures(&text)?;
            caps.get(1)
                .or_else(|| caps.get(0))
                .map(|m| m.as_str().to_owned())
        }
        Source::Header(name) => kept.header(name).map(str::to_owned),
        Source::Cookie(name) => kept
            .headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .filter_map(|(_, v)| parse_set_cookie(v))
            .find(|c| c.0 == *name)
            .map(|c| c.1),
    }
}

/// `name=value; attributes` → (name, value, deleted): a cookie whose
/// `Max-Age` is 0 or less is deleted.
fn parse_set_cookie(header: &str) -> Option<(String, String, bool)> {
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if !crate::scenario::is_token(name) {
        return None;
    }
    let deleted = parts.any(|p| {
        p.trim().split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("max-age") && v.trim().starts_with(['0', '-'])
        })
    });
    Some((
        name.to_owned(),
        value.trim().trim_matches('"').to_owned(),
        deleted,
    ))
}

/// A virtual user's own state across its iterations.
#[derive(Debug, Default)]
pub(crate) struct UserState {
    pub(crate) vars: HashMap<String, String>,
    cookies: Vec<(String, String)>,
    /// `once` steps (by request index) that have succeeded.
    done: Vec<usize>,
}

impl UserState {
    /// Takes the cookies an answer sets.
    pub(crate) fn take_cookies(&mut self, kept: &Kept) {
        for (_, v) in kept.headers.iter().filter(|(k, _)| k == "set-cookie") {
            let Some((name, value, deleted)) = parse_set_cookie(v) else {
                continue;
            };
            self.cookies.retain(|(n, _)| *n != name);
            let held: usize = self.cookies.iter().map(|(n, v)| n.len() + v.len()).sum();
            let fits = value.len() <= MAX_VAR_BYTES
                && !value.chars().any(|c| c.is_control() || c == ';')
                && self.cookies.len() < MAX_COOKIES
                && held + name.len() + value.len() <= MAX_COOKIE_BYTES;
            if !deleted && fits {
                self.cookies.push((name, value));
            }
        }
    }

    /// The `Cookie` header value, when the jar holds any.
    pub(crate) fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Whether the `once` step of request `i` has succeeded for this user.
    pub(crate) fn done(&self, i: usize) -> bool {
        self.done.contains(&i)
    }

    /// Marks it so.
    pub(crate) fn mark_done(&mut self, i: usize) {
        if !self.done(i) {
            self.done.push(i);
        }
    }
}

/// Pass and fail counts of one check (or capture).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckCount {
    /// Times it held.
    pub passes: u64,
    /// Times it did not.
    pub fails: u64,
    /// `passes / (passes + fails)` (1 when it never ran).
    pub pass_rate: f64,
}

impl CheckCount {
    pub(crate) fn of(passes: u64, fails: u64) -> Self {
        let n = passes + fails;
        Self {
            passes,
            fails,
            pass_rate: if n == 0 {
                1.0
            } else {
                passes as f64 / n as f64
            },
        }
    }
}

/// Iterations of one flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowCount {
    /// Iterations started and finished or cut (the run's end cuts none in the count).
    pub iterations: u64,
    /// Of which stopped after a failed check (`on_check_failure: abort_iteration`).
    pub aborted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_set_replaced_and_deleted() {
        let mut u = UserState::default();
        let kept = |v: &[&str]| Kept {
            headers: v
                .iter()
                .map(|c| ("set-cookie".to_owned(), (*c).to_owned()))
                .collect(),
            ..Kept::default()
        };
        u.take_cookies(&kept(&["sid=abc; Path=/; HttpOnly", "theme=dark"]));
        assert_eq!(u.cookie_header().unwrap(), "sid=abc; theme=dark");
        u.take_cookies(&kept(&[
            "sid=xyz",
            "theme=; Max-Age=0",
            "bad name=1",
            "x=a\u{1}b",
        ]));
        assert_eq!(u.cookie_header().unwrap(), "sid=xyz");
    }
}
