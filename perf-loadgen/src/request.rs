//! The request mix, prepared: bytes written once per target when nothing
//! varies, `${column}` substitution from the data file when something does.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::http::Endpoint;
use crate::journey::UserState;
use crate::safety::{FeedAccess, MAX_FEED_BYTES};
use crate::scenario::{FeederMode, FeederSpec, RequestSpec};
use crate::{Error, Result};

/// Reads at most [`MAX_FEED_BYTES`] of a regular file (a device or a pipe
/// that never ends is refused before it is read).
fn read_bounded(label: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    read_bounded_with(label, path, MAX_FEED_BYTES)
}

/// Reads at most `limit` bytes of a regular file: opened, then checked
/// through the open handle (no swap between check and read), then read
/// with a bound. Errors carry no content.
pub(crate) fn read_bounded_with(
    label: &str,
    path: &std::path::Path,
    limit: u64,
) -> Result<Vec<u8>> {
    use std::io::Read;
    let fail = |message: String| Error::Feeder {
        path: label.to_owned(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(io_problem(&e)))?;
    let meta = file.metadata().map_err(|e| fail(io_problem(&e)))?;
    if !meta.is_file() {
        return Err(fail("is not a regular file".to_owned()));
    }
    if meta.len() > limit {
        return Err(fail(format!(
            "is {} bytes, over the limit of {limit}",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(io_problem(&e)))?;
    if bytes.len() as u64 > limit {
        return Err(fail(format!("is over the limit of {limit} bytes")));
    }
    Ok(bytes)
}

/// What went wrong opening or reading a file, without the OS's wording
/// (which is fine) or anything read from it (which would not be).
pub(crate) fn io_problem(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_owned(),
        std::io::ErrorKind::PermissionDenied => "cannot be read (permission denied)".to_owned(),
        other => format!("cannot be read ({other})"),
    }
}

/// Where a CSV is broken, never what it says.
fn csv_problem(e: &csv::Error) -> String {
    let line =
        |pos: Option<&csv::Position>| pos.map_or(String::new(), |p| format!("line {}: ", p.line()));
    match e.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => format!("{}not UTF-8", line(pos.as_ref())),
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => format!(
            "{}a row of {len} fields where the header has {expected_len}",
            line(pos.as_ref())
        ),
        csv::ErrorKind::Io(e) => io_problem(e),
        _ => "is not CSV with a header row".to_owned(),
    }
}

/// Rows of CSV data.
#[derive(Debug)]
pub(crate) struct Feeder {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    mode: FeederMode,
    next: AtomicUsize,
    /// The CSV came with the scenario (its columns may be named in errors;
    /// a file's content never is).
    inline: bool,
}

impl Feeder {
    /// Loads the data `spec` names, reading a file only as `access` allows.
    /// No error carries the data's content: only positions, sizes and kinds.
    pub(crate) fn load(spec: &FeederSpec, access: &FeedAccess) -> Result<Self> {
        let (label, text, inline) = match (&spec.file, &spec.csv) {
            (None, Some(csv)) => {
                if csv.len() as u64 > MAX_FEED_BYTES {
                    return Err(Error::Feeder {
                        path: "data.csv".to_owned(),
                        message: format!("larger than the limit of {MAX_FEED_BYTES} bytes"),
                    });
                }
                ("data.csv".to_owned(), Cow::Borrowed(csv.as_bytes()), true)
            }
            (Some(file), None) => {
                let path = access.resolve(file)?;
                (file.clone(), Cow::Owned(read_bounded(file, &path)?), false)
            }
            _ => {
                return Err(Error::Feeder {
                    path: "data".to_owned(),
                    message: "give exactly one of data.file or data.csv".to_owned(),
                });
            }
        };
        let fail = |message: String| Error::Feeder {
            path: label.clone(),
            message,
        };
        if text.starts_with(b"-----BEGIN") {
            // A certificate or a private key is never load-test data: refuse
            // it rather than send its lines to a target.
            return Err(fail(
                "looks like a PEM certificate or key, not CSV data".to_owned(),
            ));
        }
        let mut reader = csv::Reader::from_reader(&text[..]);
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| fail(csv_problem(&e)))?
            .iter()
            .map(str::to_owned)
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| fail(csv_problem(&e)))?;
            rows.push(record.iter().map(str::to_owned).collect());
        }
        if rows.is_empty() {
            return Err(fail("has a header but no data rows".to_owned()));
        }
        Ok(Self {
            columns,
            rows,
            mode: spec.mode,
            next: AtomicUsize::new(0),
            inline,
        })
    }

    /// Refuses a row whose value for a column in `in_path` has whitespace or
    /// control characters, or for a column in `in_headers` a line break, NUL
    /// or other control character (a smuggled header or request otherwise).
    fn check_values(
        &self,
        scenario: &str,
        request: usize,
        in_path: &[&str],
        in_headers: &[&str],
    ) -> Result<()> {
        let index = |name: &&str| self.columns.iter().position(|c| c == name);
        let path_cols: Vec<usize> = in_path.iter().filter_map(index).collect();
        let header_cols: Vec<usize> = in_headers.iter().filter_map(index).collect();
        for (r, row) in self.rows.iter().enumerate() {
            let bad_path = path_cols.iter().find(|&&c| {
                row.get(c)
                    .is_some_and(|v| v.chars().any(|ch| ch.is_whitespace() || ch.is_control()))
            });
            let bad_header = header_cols.iter().find(|&&c| {
                row.get(c)
                    .is_some_and(|v| !crate::scenario::is_field_value(v))
            });
            if let Some((&c, place)) = bad_path
                .map(|c| (c, "path"))
                .or(bad_header.map(|c| (c, "header")))
            {
                return Err(Error::Invalid {
                    scenario: scenario.to_owned(),
                    key: format!("requests[{request}]"),
                    value: format!(
                        "data row {} column {:?} (used in a {place})",
                        r + 1,
                        self.columns.get(c).map_or("", String::as_str)
                    ),
                    allowed: if place == "path" {
                        "values without spaces or control characters in a path (percent-encode them)"
                            .to_owned()
                    } else {
                        "values without line breaks, NUL or control characters in a header"
                            .to_owned()
                    },
                });
            }
        }
        Ok(())
    }

    fn row(&self, user: usize, rng: &mut fastrand::Rng) -> &[String] {
        let i = match self.mode {
            FeederMode::Sequential => self.next.fetch_add(1, Ordering::Relaxed),
            FeederMode::Random => rng.usize(..self.rows.len()),
            FeederMode::PerUser => user,
        } % self.rows.len();
        &self.rows[i]
    }

    fn value<'r>(&self, row: &'r [String], column: &str) -> Option<&'r str> {
        let i = self.columns.iter().position(|c| c == column)?;
        row.get(i).map(String::as_str)
    }
}

/// Replaces `${name}` with `lookup(name)`; unknown names are left as written.
fn substitute<'a>(template: &'a str, lookup: &dyn Fn(&str) -> Option<&'a str>) -> Cow<'a, str> {
    substitute_with(template, &|name| lookup(name).map(Cow::Borrowed))
}

/// An index drawn by weight from running totals of the weights (0 when all are 0).
pub(crate) fn pick_weighted(cumulative: &[u64], rng: &mut fastrand::Rng) -> usize {
    let total = cumulative.last().copied().unwrap_or(0);
    if total == 0 {
        return 0;
    }
    let x = rng.u64(..total);
    cumulative.partition_point(|&c| c <= x)
}

/// Names `${...}` used in a template.
fn placeholders(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        names.push(&after[..end]);
        rest = &after[end + 1..];
    }
    names
}

#[derive(Debug)]
struct Prepared {
    spec: RequestSpec,
    head: bool,
    /// Complete bytes per endpoint when nothing is substituted.
    fixed: Option<Vec<Vec<u8>>>,
}

/// The weighted request mix of a scenario.
#[derive(Debug)]
pub(crate) struct RequestMix {
    trace_headers: bool,
    prepared: Vec<Prepared>,
    cumulative: Vec<u64>,
    endpoints: Vec<(Endpoint, String)>,
    feeder: Option<Feeder>,
}

impl RequestMix {
    #[cfg(test)]
    pub(crate) fn new(
        scenario_name: &str,
        specs: Vec<RequestSpec>,
        endpoints: Vec<Endpoint>,
        feeder: Option<Feeder>,
    ) -> Result<Self> {
        Self::with_vars(scenario_name, specs, endpoints, feeder, &[])
    }

    /// [`RequestMix::new`] where `${name}` may also be one of `vars` (the
    /// variables a journey captures).
    pub(crate) fn with_vars(
        scenario_name: &str,
        specs: Vec<RequestSpec>,
        endpoints: Vec<Endpoint>,
        feeder: Option<Feeder>,
        vars: &[String],
    ) -> Result<Self> {
        let endpoints: Vec<(Endpoint, String)> = endpoints
            .into_iter()
            .map(|e| {
                let authority = e.authority();
                (e, authority)
            })
            .collect();
        let mut prepared = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0u64;
        for (i, spec) in specs.into_iter().enumerate() {
            let mut used: Vec<&str> = placeholders(&spec.path);
            for (k, v) in &spec.headers {
                used.extend(placeholders(k));
                used.extend(placeholders(v));
            }
            if let Some(b) = &spec.body {
                used.extend(placeholders(b));
            }
            let key = if spec.weight == 0 && !vars.is_empty() {
                format!("step {}", spec.display_name())
            } else {
                format!("requests[{i}]")
            };
            for name in &used {
                let known = vars.iter().any(|v| v == name)
                    || feeder
                        .as_ref()
                        .is_some_and(|f| f.columns.iter().any(|c| c == name));
                if !known {
                    let captured = if vars.is_empty() {
                        String::new()
                    } else {
                        format!(" or a captured variable ({})", vars.join(", "))
                    };
                    return Err(Error::Invalid {
                        scenario: scenario_name.to_owned(),
                        key,
                        value: format!("${{{name}}}"),
                        allowed: match &feeder {
                            Some(f) if f.inline => {
                                format!("columns of data.csv: {}{captured}", f.columns.join(", "))
                            }
                            Some(f) => format!(
                                "a column of the data file's header row (it has {} columns){captured}",
                                f.columns.len()
                            ),
                            None if vars.is_empty() => "no placeholders without `data`".to_owned(),
                            None => format!("a captured variable ({})", vars.join(", ")),
                        },
                    });
                }
            }
            if let Some(f) = &feeder {
                // What lands in the request line or a header must not break
                // the request: checked once for every row, not per request.
                let in_path = placeholders(&spec.path);
                let in_headers: Vec<&str> = spec
                    .headers
                    .values()
                    .flat_map(|v| placeholders(v))
                    .collect();
                f.check_values(scenario_name, i, &in_path, &in_headers)?;
            }
            let head = spec.method == "HEAD";
            let fixed = used.is_empty().then(|| {
                endpoints
                    .iter()
                    .map(|(e, authority)| {
                        assemble(
                            &spec,
                            e,
                            authority,
                            &spec.path,
                            &spec.headers_vec(),
                            spec.body.as_deref(),
                        )
                    })
                    .collect()
            });
            total += u64::from(spec.weight);
            cumulative.push(total);
            prepared.push(Prepared { spec, head, fixed });
        }
        Ok(Self {
            trace_headers: true,
            prepared,
            cumulative,
            endpoints,
            feeder,
        })
    }

    /// Report names, in mix order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.prepared
            .iter()
            .map(|p| p.spec.display_name())
            .collect()
    }

    /// Picks a request by weight.
    pub(crate) fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        pick_weighted(&self.cumulative, rng)
    }

    /// Whether request `i` is a HEAD.
    pub(crate) fn is_head(&self, i: usize) -> bool {
        self.prepared.get(i).is_some_and(|p| p.head)
    }

    /// Whether each request carries `traceparent` and `x-request-id` (default on).
    pub(crate) fn with_trace_headers(mut self, on: bool) -> Self {
        self.trace_headers = on;
        self
    }

    /// The bytes of request `i` for endpoint `e`, with data of `user`'s
    /// row, and a fresh trace id when trace headers are on.
    pub(crate) fn render(
        &self,
        i: usize,
        e: usize,
        user: usize,
        rng: &mut fastrand::Rng,
    ) -> Cow<'_, [u8]> {
        self.render_for(i, e, user, rng, None)
    }

    /// [`RequestMix::render`] for a journey's user: its variables replace
    /// `${name}` (percent-encoded in the path) and its cookies are sent.
    pub(crate) fn render_for(
        &self,
        i: usize,
        e: usize,
        user: usize,
        rng: &mut fastrand::Rng,
        state: Option<&UserState>,
    ) -> Cow<'_, [u8]> {
        let bytes = self.render_plain(i, e, user, rng, state);
        let cookie = state.and_then(UserState::cookie_header);
        if (!self.trace_headers && cookie.is_none()) || bytes.is_empty() {
            return bytes;
        }
        let mut extra = String::new();
        if let Some(c) = cookie {
            extra.push_str("Cookie: ");
            extra.push_str(&c);
            extra.push_str("\r\n");
        }
        if self.trace_headers {
            let (trace, span) = (rng.u128(1..), rng.u64(1..));
            extra.push_str(&format!(
                "traceparent: 00-{trace:032x}-{span:016x}-01\r\nx-request-id: {trace:032x}\r\n"
            ));
        }
        with_headers(&bytes, &extra).into()
    }

    fn render_plain(
        &self,
        i: usize,
        e: usize,
        user: usize,
        rng: &mut fastrand::Rng,
        state: Option<&UserState>,
    ) -> Cow<'_, [u8]> {
        let Some(p) = self.prepared.get(i) else {
            return Cow::Borrowed(&[]);
        };
        if let Some(fixed) = &p.fixed {
            return Cow::Borrowed(fixed.get(e).map_or(&[][..], Vec::as_slice));
        }
        let (endpoint, authority) = &self.endpoints[e % self.endpoints.len()];
        let row = self.feeder.as_ref().map(|f| (f, f.row(user, rng)));
        let vars = state.map(|s| &s.vars);
        let lookup = |name: &str| {
            vars.and_then(|v| v.get(name).map(String::as_str))
                .or_else(|| row.and_then(|(f, row)| f.value(row, name)))
        };
        let path_lookup = |name: &str| match vars.and_then(|v| v.get(name)) {
            Some(v) => Some(Cow::Owned(percent_encode_path(v))),
            None => row
                .and_then(|(f, row)| f.value(row, name))
                .map(Cow::Borrowed),
        };
        let path = substitute_with(&p.spec.path, &path_lookup);
        let headers: Vec<(String, String)> = p
            .spec
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    substitute(k, &lookup).into_owned(),
                    substitute(v, &lookup).into_owned(),
                )
            })
            .collect();
        let body = p.spec.body.as_deref().map(|b| substitute(b, &lookup));
        Cow::Owned(assemble(
            &p.spec,
            endpoint,
            authority,
            &path,
            &headers,
            body.as_deref(),
        ))
    }

    /// Number of targets.
    pub(crate) fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }
}

impl RequestSpec {
    fn headers_vec(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The request with `extra` (complete header lines) added at the end of its headers.
fn with_headers(request: &[u8], extra: &str) -> Vec<u8> {
    let end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(request.len(), |p| p + 2);
    let mut out = Vec::with_capacity(request.len() + extra.len());
    out.extend_from_slice(&request[..end]);
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(&request[end..]);
    out
}

/// A captured value made safe for a path: it is data, not path structure,
/// so bytes outside the unreserved and sub-delimiter set of RFC 3986 (and
/// `:@`) are percent-encoded, `/` and `%` included (a value cannot add path
/// segments or pre-encoded bytes).
fn percent_encode_path(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// [`substitute`] with values that may be owned.
fn substitute_with<'a>(
    template: &'a str,
    lookup: &dyn Fn(&str) -> Option<Cow<'a, str>>,
) -> Cow<'a, str> {
    if !template.contains("${") {
        return Cow::Borrowed(template);
    }
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        match lookup(name) {
            Some(v) => out.push_str(&v),
            None => {
                out.push_str("${");
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn assemble(
    spec: &RequestSpec,
    e: &Endpoint,
    authority: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.map_or(0, str::len));
    out.extend_from_slice(spec.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(e.base_path.as_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: perf-loadgen\r\n");
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("host") {
            continue;
        }
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = body {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        if !has("content-type") {
            out.extend_from_slice(b"Content-Type: application/json\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(path: &str, weight: u32) -> RequestSpec {
        RequestSpec {
            name: None,
            method: "GET".into(),
            path: path.into(),
            headers: BTreeMap::new(),
            body: None,
            weight,
            checks: Vec::new(),
        }
    }

    #[test]
    fn every_request_carries_its_own_trace_headers() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        let mut s = spec("/a", 1);
        s.body = Some("{}".into());
        let mix = RequestMix::new("t", vec![s], vec![e], None).unwrap();
        let mut rng = fastrand::Rng::with_seed(3);
        let one = String::from_utf8(mix.render(0, 0, 0, &mut rng).into_owned()).unwrap();
        let two = String::from_utf8(mix.render(0, 0, 0, &mut rng).into_owned()).unwrap();
        let header = |text: &str, name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::to_owned)
                .unwrap()
        };
        let parent = header(&one, "traceparent: ");
        let parts: Vec<&str> = parent.split('-').collect();
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
        assert_eq!(header(&one, "x-request-id: "), parts[1]);
        assert_ne!(
            header(&two, "traceparent: "),
            parent,
            "a new trace per request"
        );
        assert!(one.ends_with("\r\n\r\n{}"), "{one:?}");
        let plain = RequestMix::new(
            "t",
            vec![spec("/a", 1)],
            vec![Endpoint::parse("http://h:1").unwrap()],
            None,
        )
        .unwrap()
        .with_trace_headers(false);
        let text = String::from_utf8(plain.render(0, 0, 0, &mut rng).into_owned()).unwrap();
        assert!(!text.contains("traceparent"));
    }

    #[test]
    fn weights_shape_the_mix() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        let mix = RequestMix::new(
            "t",
            vec![spec("/a", 3), spec("/b", 1), spec("/never", 0)],
            vec![e],
            None,
        )
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[mix.pick(&mut rng)] += 1;
        }
        assert_eq!(counts[2], 0);
        let share = f64::from(counts[0]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{counts:?}");
        let mix = mix.with_trace_headers(false);
        let bytes = mix.render(0, 0, 0, &mut rng);
        assert_eq!(
            &bytes[..],
            b"GET /a HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: perf-loadgen\r\n\r\n"
        );
    }

    #[test]
    fn data_rows_fill_path_headers_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.csv");
        std::fs::write(&file, "id,name\n1,ann\n2,bob\n").unwrap();
        let feeder = Feeder::load(
            &FeederSpec {
                file: Some(file.to_string_lossy().into_owned()),
                csv: None,
                mode: FeederMode::PerUser,
            },
            &FeedAccess::Any,
        )
        .unwrap();
        let mut s = spec("/users/${id}", 1);
        s.method = "POST".into();
        s.headers.insert("X-User".into(), "${name}".into());
        s.body = Some(r#"{"name":"${name}"}"#.into());
        let e = Endpoint::parse("http://h:1/base").unwrap();
        let mix = RequestMix::new("t", vec![s], vec![e], Some(feeder)).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let text = String::from_utf8(mix.render(0, 0, 1, &mut rng).into_owned()).unwrap();
        assert!(
            text.starts_with("POST /base/users/2 HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(
            text.contains("X-User: bob\r\n") && text.ends_with(r#"{"name":"bob"}"#),
            "{text}"
        );
        assert!(text.contains("Content-Length: 14\r\n"), "{text}");
    }

    #[test]
    fn captured_values_are_data_in_a_path() {
        assert_eq!(
            percent_encode_path("a b/../%0D%0Ax"),
            "a%20b%2F..%2F%250D%250Ax"
        );
        assert_eq!(percent_encode_path("tok-Az09_~"), "tok-Az09_~");
    }

    #[test]
    fn unknown_columns_are_named() {
        let e = Endpoint::parse("http://h:1").unwrap();
        let err =
            RequestMix::new("checkout", vec![spec("/x/${sku}", 1)], vec![e], None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("checkout") && msg.contains("${sku}"), "{msg}");
    }

    fn file_spec(file: &str) -> FeederSpec {
        FeederSpec {
            file: Some(file.to_owned()),
            csv: None,
            mode: FeederMode::Sequential,
        }
    }

    #[test]
    fn a_service_reads_no_file_outside_its_feeds_directory_and_never_echoes_content() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.csv");
        std::fs::write(&secret, "root:SECRET-HASH:19000\nx\n").unwrap();
        let secret = secret.to_string_lossy().into_owned();
        // Inline only: a path is refused before the file system is asked.
        for path in [secret.as_str(), "/etc/shadow", "/no/such/file", "users.csv"] {
            let e = Feeder::load(&file_spec(path), &FeedAccess::InlineOnly).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("data.csv") && !msg.contains("SECRET"), "{msg}");
        }
        // Within a directory: plain names only, no escape by .. or a link.
        let feeds = tempfile::tempdir().unwrap();
        std::fs::write(feeds.path().join("users.csv"), "id\n1\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&secret, feeds.path().join("link.csv")).unwrap();
        let within = FeedAccess::Within(feeds.path().to_owned());
        assert!(Feeder::load(&file_spec("users.csv"), &within).is_ok());
        let missing = Feeder::load(&file_spec("nope.csv"), &within).unwrap_err();
        let absent = Feeder::load(&file_spec("/etc/shadow"), &within).unwrap_err();
        assert!(absent.to_string().contains("feeds directory"), "{absent}");
        for name in ["../secret.csv", "link.csv", ".hidden", "a/b.csv", "x\0.csv"] {
            let msg = Feeder::load(&file_spec(name), &within)
                .unwrap_err()
                .to_string();
            assert!(!msg.contains("SECRET"), "{msg}");
        }
        assert!(missing.to_string().contains("feeds directory"), "{missing}");
        // On the command line any file, but a placeholder the header lacks
        // does not print the header.
        let feeder = Feeder::load(&file_spec(&secret), &FeedAccess::Any).unwrap();
        let e = Endpoint::parse("http://h:1").unwrap();
        let msg = RequestMix::new("t", vec![spec("/${zz}", 1)], vec![e], Some(feeder))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("${zz}") && !msg.contains("SECRET"), "{msg}");
    }

    #[test]
    fn devices_and_oversized_files_are_refused_before_they_are_read() {
        #[cfg(unix)]
        {
            let e = Feeder::load(&file_spec("/dev/zero"), &FeedAccess::Any).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        let inline = FeederSpec {
            file: None,
            csv: Some("a\n".repeat(usize::try_from(MAX_FEED_BYTES).unwrap() / 2 + 1)),
            mode: FeederMode::Sequential,
        };
        let e = Feeder::load(&inline, &FeedAccess::InlineOnly).unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        let broken = FeederSpec {
            file: None,
            csv: Some("a,b\nSECRET\n".to_owned()),
            mode: FeederMode::Sequential,
        };
        let msg = Feeder::load(&broken, &FeedAccess::InlineOnly)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2") && !msg.contains("SECRET"), "{msg}");
    }

    #[test]
    fn data_values_that_would_split_a_request_are_refused_at_load() {
        let e = Endpoint::parse("http://h:1").unwrap();
        for (csv, request) in [
            ("id\n1 HTTP/1.1\r\nHost: x\n", spec("/users/${id}", 1)),
            ("v\n\"a\r\nX-Injected: 1\"\n", {
                let mut s = spec("/", 1);
                s.headers.insert("X-V".into(), "${v}".into());
                s
            }),
        ] {
            let feeder = Feeder::load(
                &FeederSpec {
                    file: None,
                    csv: Some(csv.to_owned()),
                    mode: FeederMode::Sequential,
                },
                &FeedAccess::InlineOnly,
            )
            .unwrap();
            let err = RequestMix::new("t", vec![request], vec![e.clone()], Some(feeder))
                .unwrap_err()
                .to_string();
            assert!(err.contains("data row 1"), "{err}");
        }
        // In a body a line break is data.
        let feeder = Feeder::load(
            &FeederSpec {
                file: None,
                csv: Some("v\n\"a\r\nb\"\n".to_owned()),
                mode: FeederMode::Sequential,
            },
            &FeedAccess::InlineOnly,
        )
        .unwrap();
        let mut s = spec("/", 1);
        s.body = Some("${v}".into());
        assert!(RequestMix::new("t", vec![s], vec![e], Some(feeder)).is_ok());
    }
}
