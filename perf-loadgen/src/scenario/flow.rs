//! User journeys: weighted `flows` of ordered `steps`, each a request with
//! `checks` on its response and `captures` into the user's variables.

use std::collections::BTreeMap;

use perf_core::HumanDuration;
use serde::{Deserialize, Serialize};

use super::{RequestSpec, ThinkTime};

/// Most flows of one scenario.
pub const MAX_FLOWS: usize = 20;
/// Most checks (or captures) of one step.
pub const MAX_CHECKS: usize = 20;
/// Longest captured value, bytes; a longer one fails its capture.
pub const MAX_VAR_BYTES: usize = 4096;
/// Most of a response body that checks and captures look at (the rest is
/// counted, not kept).
pub const MAX_KEPT_BODY: usize = 64 * 1024;

/// What a failed check does to the rest of the iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnCheckFailure {
    /// Go on with the next step (the failure is counted).
    #[default]
    Continue,
    /// Skip the remaining steps of this iteration (counted as aborted).
    AbortIteration,
}

/// One journey: steps run in order by a virtual user, once per iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Name in the report (default `flow<i>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Share of iterations relative to the other flows (default 1).
    #[serde(default = "super::default_weight")]
    pub weight: u32,
    /// What a failed check does.
    #[serde(default)]
    pub on_check_failure: OnCheckFailure,
    /// The requests, in order.
    pub steps: Vec<StepSpec>,
}

/// One step of a flow: a request, what must hold of its answer, what to keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Name of its latency figures and checks (default `METHOD path`).
    #[serde(default)]
    pub name: Option<String>,
    /// HTTP method (default GET).
    #[serde(default = "super::default_method")]
    pub method: String,
    /// Path and query; `${var}` and data columns are replaced.
    #[serde(default = "super::default_path")]
    pub path: String,
    /// Extra headers (`${var}` allowed).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body (`${var}` allowed).
    #[serde(default)]
    pub body: Option<String>,
    /// What must hold of the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckSpec>,
    /// Values taken from the answer into the user's variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<CaptureSpec>,
    /// Pause after this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think_time: Option<ThinkTime>,
    /// Run only until it has succeeded once for this user (a login whose
    /// token and cookie are reused by the user's later iterations).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub once: bool,
}

impl StepSpec {
    /// The step as a request of the mix (its latency figures' name).
    pub(crate) fn request(&self) -> RequestSpec {
        RequestSpec {
            name: self.name.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            weight: 0,
            checks: self.checks.clone(),
        }
    }
}

/// One status or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum StatusSet {
    /// One status.
    One(u16),
    /// Any of these.
    Any(Vec<u16>),
}

impl StatusSet {
    /// The statuses.
    pub fn codes(&self) -> Vec<u16> {
        match self {
            Self::One(c) => vec![*c],
            Self::Any(v) => v.clone(),
        }
    }
}

/// What must hold of a response. Give exactly one subject: `status`,
/// `header`, `body_contains`, `body_regex`, `json` (a JSON pointer) or
/// `max_latency`; `header` and `json` take `equals` or `exists`
/// (default: exists).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Name in the report (default: the check in words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The status is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusSet>,
    /// A response header (case-insensitive name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The body contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// The body matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<String>,
    /// A JSON pointer into the body, e.g. `/user/id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    /// The header's value (a string) or the JSON value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// The header or JSON value is there (`true`) or not (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// The response took at most this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<HumanDuration>,
}

/// A value taken from a response into a variable: give `var` and exactly
/// one of `json` (pointer), `regex` (its first group, or the whole match),
/// `header` or `cookie`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CaptureSpec {
    /// Variable name: a letter or `_`, then letters, digits or `_` (at most 64).
    pub var: String,
    /// JSON pointer into the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    /// Regular expression over the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Response header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Cookie set by the response (`Set-Cookie`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// Whether `name` may name a variable.
fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl CheckSpec {
    /// The check in words, e.g. `status in [200, 201]`.
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        let expect = || match (&self.equals, self.exists) {
            (Some(v), _) => format!(" = {v}"),
            (None, Some(false)) => " absent".to_owned(),
            _ => " exists".to_owned(),
        };
        if let Some(s) = &self.status {
            format!("status in {:?}", s.codes())
        } else if let Some(h) = &self.header {
            format!("header {}{}", h.to_ascii_lowercase(), expect())
        } else if let Some(t) = &self.body_contains {
            format!("body contains {t:?}")
        } else if let Some(r) = &self.body_regex {
            format!("body matches {r:?}")
        } else if let Some(p) = &self.json {
            format!("json {p}{}", expect())
        } else if let Some(d) = &self.max_latency {
            format!("latency <= {d}")
        } else {
            "check".to_owned()
        }
    }

    /// Checks the shape; `Err((key, value, allowed))` names what is wrong.
    pub(crate) fn validate(&self) -> Result<(), (String, String, String)> {
        let subjects = [
            self.status.is_some(),
            self.header.is_some(),
            self.body_contains.is_some(),
            self.body_regex.is_some(),
            self.json.is_some(),
            self.max_latency.is_some(),
        ];
        let fail = |k: &str, v: String, a: &str| Err((k.to_owned(), v, a.to_owned()));
        if subjects.iter().filter(|s| **s).count() != 1 {
            return fail(
                "",
                format!("{} subjects", subjects.iter().filter(|s| **s).count()),
                "exactly one of status, header, body_contains, body_regex, json, max_latency",
            );
        }
        if (self.equals.is_some() || self.exists.is_some())
            && self.header.is_none()
            && self.json.is_none()
        {
            return fail(
                "equals",
                "without header or json".to_owned(),
                "equals and exists only with header or json",
            );
        }
        if self.equals.is_some() && self.exists.is_some() {
            return fail(
                "exists",
                "with equals".to_owned(),
                "one of equals or exists",
            );
        }
        if let Some(s) = &self.status {
            let codes = s.codes();
            if codes.is_empty()
                || codes.len() > 100
                || codes.iter().any(|c| !(100..=599).contains(c))
            {
                return fail(
                    "status",
                    format!("{codes:?}"),
                    "1 to 100 statuses from 100 to 599",
                );
            }
        }
        if let Some(h) = &self.header
            && !super::is_token(h)
        {
            return fail("header", format!("{h:?}"), "a header name (an HTTP token)");
        }
        if let Some(p) = &self.json
            && !is_pointer(p)
        {
            return fail(
                "json",
                format!("{p:?}"),
                "a JSON pointer such as /user/id (or empty for the whole body)",
            );
        }
        if let Some(r) = &self.body_regex {
            compile_regex(r).map_err(|why| ("body_regex".to_owned(), format!("{r:?}"), why))?;
        }
        for (k, text) in [("body_contains", &self.body_contains), ("name", &self.name)] {
            if let Some(t) = text
                && (t.is_empty() || t.len() > 1024)
            {
                return fail(k, format!("{} bytes", t.len()), "1 to 1024 bytes");
            }
        }
        if let Some(d) = self.max_latency
            && (d.0.is_zero() || d.0 > std::time::Duration::from_secs(3600))
        {
            return fail("max_latency", d.to_string(), "above 0 and at most 1h");
        }
        Ok(())
    }
}

impl CaptureSpec {
    /// Checks the shape; `Err((key, value, allowed))` names what is wrong.
    pub(crate) fn validate(&self) -> Result<(), (String, String, String)> {
        let fail = |k: &str, v: String, a: &str| Err((k.to_owned(), v, a.to_owned()));
        if !is_var_name(&self.var) {
            return fail(
                "var",
                format!("{:?}", self.var),
                "a letter or _, then letters, digits or _ (at most 64)",
            );
        }
        let sources = [
            self.json.is_some(),
            self.regex.is_some(),
            self.header.is_some(),
            self.cookie.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return fail(
                "",
                "not one source".to_owned(),
                "exactly one of json, regex, header, cookie",
            );
        }
        if let Some(p) = &self.json
            && !is_pointer(p)
        {
            return fail("json", format!("{p:?}"), "a JSON pointer such as /token");
        }
        if let Some(r) = &self.regex {
            compile_regex(r).map_err(|why| ("regex".to_owned(), format!("{r:?}"), why))?;
        }
        if let Some(h) = self.header.as_ref().or(self.cookie.as_ref())
            && !super::is_token(h)
        {
            return fail(
                if self.header.is_some() {
                    "header"
                } else {
                    "cookie"
                },
                format!("{h:?}"),
                "a name that is an HTTP token",
            );
        }
        Ok(())
    }
}

fn is_pointer(p: &str) -> bool {
    (p.is_empty() || p.starts_with('/')) && p.len() <= 1024 && !p.chars().any(char::is_control)
}

/// Compiles a pattern with bounded size (the regex crate runs in linear
/// time; the bound keeps a hostile pattern from taking much memory).
pub(crate) fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > 1024 {
        return Err("a pattern of at most 1024 bytes".to_owned());
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(256 << 10)
        .dfa_size_limit(256 << 10)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => {
                "a smaller pattern (it compiles to over 1 MiB)".to_owned()
            }
            other => format!(
                "a valid regular expression ({})",
                other.to_string().lines().last().unwrap_or("syntax error")
            ),
        })
}
