//! HTTP scenarios as a [`Workload`]: targets resolved and checked against
//! the policy, the TLS client, the ALPN probe of `auto` targets, the request
//! mix and journeys; each iteration a request of the mix or a flow's steps
//! over the user's keep-alive connection. `start` hands the workload to the
//! generic executors of [`crate::run`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::http::{self, Connection, Dialer, Endpoint, Phases};
use crate::journey::{Answer, Journeys, Kept, UserState};
use crate::report::ReportMeta;
use crate::request::{Feeder, RequestMix};
use crate::run::{CountGuard, RunHandle, launch};
use crate::scenario::{LoadPlan, Scenario};
use crate::workload::{Iteration, Operations, Workload};
use crate::{Error, FeedAccess, Result};

/// An HTTP scenario as a [`Workload`]: a request of the mix, or an
/// iteration of a flow, per iteration.
struct HttpWorkload {
    mix: RequestMix,
    journeys: Arc<Journeys>,
    dialers: Vec<Dialer>,
    timeout: Duration,
    seed: u64,
}

/// An HTTP virtual user: its keep-alive connection, its journey state.
struct HttpUser {
    conn: Option<Connection>,
    state: UserState,
    rng: fastrand::Rng,
    endpoint: usize,
    index: usize,
}

impl Workload for HttpWorkload {
    type User = HttpUser;

    fn operations(&self) -> Vec<String> {
        self.mix.names()
    }

    fn user(&self, index: u64) -> HttpUser {
        HttpUser {
            conn: None,
            state: UserState::default(),
            rng: fastrand::Rng::with_seed(self.seed ^ (index << 17 | 0x9e37)),
            endpoint: usize::try_from(index % self.mix.endpoint_count().max(1) as u64).unwrap_or(0),
            index: usize::try_from(index).unwrap_or(usize::MAX),
        }
    }

    async fn iteration(&self, user: &mut HttpUser, ops: &Operations<'_>) -> Iteration {
        let unreachable = if self.journeys.flows.is_empty() {
            self.request(user, ops).await
        } else {
            self.iterate(user, ops).await
        };
        if unreachable {
            Iteration::Unreachable
        } else {
            Iteration::Done
        }
    }
}

/// What one send came to.
struct Sent {
    /// The connection (TCP or TLS) could not be opened: the caller backs off.
    connect_failed: bool,
    /// The status, when an answer came.
    status: Option<u16>,
    /// From the intended (or actual) send to the end of the answer.
    latency: Duration,
}

impl HttpWorkload {
    /// Sends request `name` (already rendered) on the user's connection and
    /// records it, from the iteration's intended time when it is the first
    /// request of an open-model arrival. What the answer says goes into
    /// `keep` when given. Stopping is the caller's business: it drops this
    /// future.
    async fn send(
        &self,
        ops: &Operations<'_>,
        conn: &mut Option<Connection>,
        name: usize,
        endpoint: usize,
        bytes: &[u8],
        keep: Option<&mut Kept>,
    ) -> Sent {
        let ctx = ops.ctx;
        let intended = ops.take_intended();
        let dialer = &self.dialers[endpoint % self.dialers.len()];
        let sent = Instant::now();
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = CountGuard(&ctx.in_flight);
        let note = |kind: http::FailureKind, e: &std::io::Error| {
            ctx.first_failure
                .get_or_init(|| format!("{}: {e} ({})", kind.name(), dialer.addr));
        };
        let mut phases = Phases::default();
        let outcome = match &dialer.h2 {
            Some(pool) => {
                pool.send(bytes, self.timeout, &mut phases, keep, &note)
                    .await
            }
            None => {
                http::send(
                    conn,
                    dialer,
                    bytes,
                    self.mix.is_head(name),
                    self.timeout,
                    &mut phases,
                    keep,
                    &note,
                )
                .await
            }
        };
        drop(in_flight);
        let done = Instant::now();
        let connect_failed = matches!(
            outcome,
            Err(http::FailureKind::Connect | http::FailureKind::Tls)
        );
        let status = outcome.as_ref().ok().map(|r| r.status);
        let from = crate::workload::latency_origin(intended, sent);
        ctx.recorder
            .record(name, from, sent, done, bytes.len(), outcome, &phases);
        Sent {
            connect_failed,
            status,
            latency: done.saturating_duration_since(from),
        }
    }

    /// One request of the mix, its checks counted. Whether the connection
    /// could not be opened.
    async fn request(&self, user: &mut HttpUser, ops: &Operations<'_>) -> bool {
        let name = self.mix.pick(&mut user.rng);
        let bytes = self
            .mix
            .render(name, user.endpoint, user.index, &mut user.rng);
        if !self.journeys.has_checks(name) {
            return self
                .send(ops, &mut user.conn, name, user.endpoint, &bytes, None)
                .await
                .connect_failed;
        }
        let mut kept = Kept::wanting_body(self.journeys.keeps(name));
        let sent = self
            .send(
                ops,
                &mut user.conn,
                name,
                user.endpoint,
                &bytes,
                Some(&mut kept),
            )
            .await;
        self.journeys.check(
            name,
            &Answer {
                status: sent.status,
                kept: &kept,
                latency: sent.latency,
                json: std::cell::OnceCell::new(),
            },
        );
        sent.connect_failed
    }

    /// One iteration of a flow: its steps in order, checks and captures
    /// applied, cookies kept, think time between steps. Whether a connection
    /// could not be opened (the iteration stops there).
    async fn iterate(&self, user: &mut HttpUser, ops: &Operations<'_>) -> bool {
        let f = self.journeys.pick(&mut user.rng);
        let Some(flow) = self.journeys.flows.get(f) else {
            return false;
        };
        for step in &flow.steps {
            let i = step.request;
            if step.once && user.state.done(i) {
                continue;
            }
            let bytes = self.mix.render_for(
                i,
                user.endpoint,
                user.index,
                &mut user.rng,
                Some(&user.state),
            );
            let mut kept = Kept::wanting_body(self.journeys.keeps(i));
            let sent = self
                .send(
                    ops,
                    &mut user.conn,
                    i,
                    user.endpoint,
                    &bytes,
                    Some(&mut kept),
                )
                .await;
            if sent.connect_failed {
                return true;
            }
            if sent.status.is_some() {
                user.state.take_cookies(&kept);
            }
            let answer = Answer {
                status: sent.status,
                kept: &kept,
                latency: sent.latency,
                json: std::cell::OnceCell::new(),
            };
            let checked = self.journeys.check(i, &answer);
            let captured = self.journeys.capture(step, &answer, &mut user.state);
            let ok = checked && captured;
            if ok && step.once {
                user.state.mark_done(i);
            }
            if !ok && flow.abort_on_failure {
                self.journeys.iteration(f, true);
                return false;
            }
            if let Some(think) = step.think {
                let pause = think.sample(&mut user.rng);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }
        self.journeys.iteration(f, false);
        false
    }
}

/// Starts `scenario` (named `name`) on the current tokio runtime.
///
/// Targets are resolved and the data file read before this returns, so a bad
/// target or file is an error here, not a run full of failures.
pub async fn start(name: &str, scenario: &Scenario) -> Result<RunHandle> {
    start_checked(name, scenario, None, &FeedAccess::Any).await
}

/// Like [`start`], for a service running scenarios on others' behalf:
/// every resolved target address is checked against `policy` first (the
/// addresses checked are the ones connected to, so a name that resolves
/// differently a moment later cannot slip past the check), and `data.file`
/// is read only as `feeds` allows.
pub async fn start_with_policy(
    name: &str,
    scenario: &Scenario,
    policy: &crate::TargetPolicy,
    feeds: &FeedAccess,
) -> Result<RunHandle> {
    start_checked(name, scenario, Some(policy), feeds).await
}

/// Checks `scenario` (named `name`) as [`start`] would, without resolving a
/// host or sending anything: its keys and ranges, that it has a target and
/// each target is a URL, that the data file loads and every `${column}` in
/// the requests is one of its columns. Returns the plan in words.
///
/// ```
/// use perf_loadgen::{check, ScenarioFile};
/// let file = ScenarioFile::from_yaml(
///     "load_tests:\n  s: {target: http://127.0.0.1:8080, duration: 10s, users: 5, think_time: 1s}",
/// )?;
/// let plan = check("s", file.get("s")?)?;
/// assert!(plan.starts_with("s: closed model, up to 5 users for 10s"), "{plan}");
/// # Ok::<(), perf_loadgen::Error>(())
/// ```
pub fn check(name: &str, scenario: &Scenario) -> Result<String> {
    check_with(name, scenario, &FeedAccess::Any)
}

/// [`check`], reading `data.file` only as `feeds` allows: what a service
/// calls when a scenario arrives, so that a placeholder the data lacks or a
/// file it may not read is refused then, not found when the run starts.
pub fn check_with(name: &str, scenario: &Scenario, feeds: &FeedAccess) -> Result<String> {
    scenario.validate(name)?;
    let plan = scenario.plan(name)?;
    let (urls, endpoints) = parse_targets(name, scenario)?;
    let tls = tls_client(name, scenario, &endpoints, feeds)?;
    let mix = request_mix(name, scenario, endpoints, feeds)?;
    let load = match &plan {
        LoadPlan::Closed { steps, total } => format!(
            "closed model, up to {} users for {}",
            steps.iter().map(|s| s.1).max().unwrap_or(0),
            perf_core::HumanDuration(*total)
        ),
        LoadPlan::Open {
            start,
            steps,
            total,
            max_in_flight,
            arrivals,
        } => format!(
            "open model, up to {} req/s for {} ({}at most {max_in_flight} in flight)",
            steps.iter().map(|s| s.1).fold(*start, f64::max),
            perf_core::HumanDuration(*total),
            match arrivals {
                crate::Arrivals::Uniform => "",
                crate::Arrivals::Poisson => "Poisson arrivals, ",
            }
        ),
    };
    let mut plan = format!(
        "{name}: {load}; requests {}; {} threshold(s); against {}",
        mix.names().join(", "),
        scenario.thresholds.len(),
        urls.join(", ")
    );
    if tls.as_ref().is_some_and(|t| t.insecure) {
        plan.push_str(
            "\n  warning: tls.insecure_skip_verify is on: server certificates are not verified",
        );
    }
    for t in &scenario.thresholds {
        if let Some(why) = t.never_fails() {
            plan.push_str(&format!(
                "\n  warning: threshold {:?} can never fail: {why}",
                t.expr()
            ));
        }
    }
    Ok(plan)
}

/// The scenario's target URLs and their parsed endpoints; a missing target
/// or one that is not a URL is an error naming `target` or `target[i]`.
fn parse_targets(name: &str, scenario: &Scenario) -> Result<(Vec<String>, Vec<Endpoint>)> {
    let targets = scenario.target.as_ref().ok_or_else(|| Error::Invalid {
        scenario: name.to_owned(),
        key: "target".to_owned(),
        value: "missing".to_owned(),
        allowed: "a base URL such as http://127.0.0.1:8080, in the scenario, the file or --target"
            .to_owned(),
    })?;
    let urls: Vec<String> = targets.urls().into_iter().map(str::to_owned).collect();
    let endpoints = urls
        .iter()
        .enumerate()
        .map(|(i, url)| Endpoint::parse(url).map_err(|allowed| target_error(name, i, url, allowed)))
        .collect::<Result<Vec<_>>>()?;
    Ok((urls, endpoints))
}

fn target_error(name: &str, i: usize, url: &str, allowed: String) -> Error {
    Error::Invalid {
        scenario: name.to_owned(),
        key: format!("target[{i}]"),
        value: url.to_owned(),
        allowed,
    }
}

/// The TLS client of a scenario with an `https://` target (files read as
/// `feeds` allows); `None` when every target is plain http. Errors name
/// the scenario and the `tls.*` key.
fn tls_client(
    name: &str,
    scenario: &Scenario,
    endpoints: &[Endpoint],
    feeds: &FeedAccess,
) -> Result<Option<crate::tls::TlsClient>> {
    if !endpoints.iter().any(|e| e.tls) {
        return Ok(None);
    }
    let alpn: Vec<Vec<u8>> = match scenario.protocol.unwrap_or_default() {
        crate::Protocol::H1 => vec![b"http/1.1".to_vec()],
        crate::Protocol::H2 => vec![b"h2".to_vec()],
        crate::Protocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    let client = crate::tls::TlsClient::build(scenario.tls.as_ref(), feeds, alpn)
        .map_err(|e| e.in_scenario(name))?;
    for (i, e) in endpoints.iter().enumerate() {
        if e.tls {
            client
                .server_name(&e.host)
                .map_err(|allowed| Error::Invalid {
                    scenario: name.to_owned(),
                    key: format!("target[{i}]"),
                    value: e.host.clone(),
                    allowed: format!("a host TLS can verify, or tls.server_name ({allowed})"),
                })?;
        }
    }
    Ok(Some(client))
}

/// The request mix over `endpoints`, with the data file loaded.
fn request_mix(
    name: &str,
    scenario: &Scenario,
    endpoints: Vec<Endpoint>,
    feeds: &FeedAccess,
) -> Result<RequestMix> {
    let feeder = scenario
        .data
        .as_ref()
        .map(|spec| Feeder::load(spec, feeds))
        .transpose()
        .map_err(|e| match e {
            Error::Invalid {
                key,
                value,
                allowed,
                ..
            } => Error::Invalid {
                scenario: name.to_owned(),
                key,
                value,
                allowed,
            },
            other => other,
        })?;
    let vars: Vec<String> = scenario
        .flows
        .iter()
        .flat_map(|f| &f.steps)
        .flat_map(|s| &s.captures)
        .map(|c| c.var.clone())
        .collect();
    Ok(
        RequestMix::with_vars(name, scenario.request_mix(), endpoints, feeder, &vars)?
            .with_trace_headers(scenario.trace_headers.unwrap_or(true)),
    )
}

/// Whether the TLS server at `addr` picks h2 in ALPN (`protocol: auto`);
/// a server that cannot be reached now is spoken to in HTTP/1.1.
async fn agrees_to_h2(
    addr: std::net::SocketAddr,
    client: &crate::tls::TlsClient,
    name: &rustls::pki_types::ServerName<'static>,
    within: Duration,
) -> bool {
    let probe = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let tls = client.connector.connect(name.clone(), tcp).await.ok()?;
        Some(tls.get_ref().1.alpn_protocol() == Some(b"h2"))
    };
    tokio::time::timeout(within, probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// How long the ALPN probes of `protocol: auto` may take in all before a run.
const PROBE_BUDGET: Duration = Duration::from_secs(10);

async fn start_checked(
    name: &str,
    scenario: &Scenario,
    policy: Option<&crate::TargetPolicy>,
    feeds: &FeedAccess,
) -> Result<RunHandle> {
    tracing::debug!(scenario = name, "load test starting");
    scenario.validate(name)?;
    let plan = scenario.plan(name)?;
    let (target_urls, endpoints) = parse_targets(name, scenario)?;
    let tls = tls_client(name, scenario, &endpoints, feeds)?;
    let probe_deadline = Instant::now() + PROBE_BUDGET;
    let mut dialers = Vec::new();
    for (i, (url, endpoint)) in target_urls.iter().zip(&endpoints).enumerate() {
        let resolved = tokio::time::timeout(Duration::from_secs(10), endpoint.resolve())
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer from the resolver within 10 s",
                ))
            })
            .map_err(|e| target_error(name, i, url, format!("a host that resolves ({e})")))?;
        if let Some(policy) = policy {
            for addr in &resolved {
                policy
                    .check_ip(addr.ip())
                    .map_err(|reason| Error::TargetRefused {
                        url: url.clone(),
                        reason,
                    })?;
            }
        }
        let tls = match &tls {
            Some(client) if endpoint.tls => {
                let server_name = client
                    .server_name(&endpoint.host)
                    .map_err(|allowed| target_error(name, i, url, allowed))?;
                Some((client.clone(), server_name))
            }
            _ => None,
        };
        let addr = resolved[0];
        let h2 = match scenario.protocol.unwrap_or_default() {
            crate::Protocol::H1 => false,
            crate::Protocol::H2 => true,
            crate::Protocol::Auto => match &tls {
                // All probes together take at most PROBE_BUDGET.
                Some((client, name)) => {
                    let left = probe_deadline.saturating_duration_since(Instant::now());
                    agrees_to_h2(addr, client, name, left.min(Duration::from_secs(5))).await
                }
                None => false,
            },
        };
        let h2 = h2.then(|| {
            Arc::new(crate::http2::Pool::new(
                addr,
                tls.clone(),
                scenario.connections.unwrap_or(1),
                scenario.max_streams_per_connection.unwrap_or(100),
            ))
        });
        dialers.push(Dialer { addr, tls, h2 });
    }
    let protocol = {
        let h2 = dialers.iter().filter(|d| d.h2.is_some()).count();
        if h2 == 0 {
            "http/1.1"
        } else if h2 == dialers.len() {
            "h2"
        } else {
            "h2, http/1.1"
        }
    };
    let mix = request_mix(name, scenario, endpoints, feeds)?;
    let names = mix.names();
    let meta = ReportMeta {
        tls: tls.as_ref().map(|t| crate::report::TlsReport {
            insecure_skip_verify: t.insecure,
            session_resumption: t.resumption,
        }),
        protocol: protocol.to_owned(),
        ..ReportMeta::new(name, &plan, scenario, target_urls)
    };
    let journeys = Arc::new(Journeys::new(scenario, &scenario.request_mix(), &names));
    let workload = HttpWorkload {
        mix,
        journeys: Arc::clone(&journeys),
        dialers,
        timeout: scenario.request_timeout(),
        seed: fastrand::u64(..),
    };
    Ok(launch(workload, journeys, names, meta, plan, scenario))
}
