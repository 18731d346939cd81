//! The shape every crate gives its advice in, so a server can gather them
//! into one list: what kind of advice, how urgent, the measured values that
//! triggered it, and the concrete action (a config snippet or SQL).

use serde::{Deserialize, Serialize};

/// How urgent a recommendation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Costs money or latency now.
    Warning,
    /// Breaks a target or will soon.
    Critical,
}

/// One piece of advice.
///
/// ```
/// use perf_core::{Recommendation, Severity};
/// let r = Recommendation::new("pool_size", Severity::Warning, "the pool is oversized")
///     .evidence("configured", 50)
///     .evidence("busy_connections", 3.2)
///     .action("database_pool_size: 6");
/// assert_eq!(r.evidence["configured"], 50);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recommendation {
    /// What it is about: `add_index`, `drop_index`, `pool_size`, `cache_size`,
    /// `allocator_tuning`, `scaling_policy`, `capacity`, ...
    pub kind: String,
    /// How urgent.
    pub severity: Severity,
    /// In a sentence.
    pub title: String,
    /// The measured values that triggered it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub evidence: serde_json::Map<String, serde_json::Value>,
    /// What to do: a config snippet, SQL, a command.
    pub action: String,
}

impl Recommendation {
    /// A recommendation without evidence or action yet.
    pub fn new(kind: impl Into<String>, severity: Severity, title: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            severity,
            title: title.into(),
            evidence: serde_json::Map::new(),
            action: String::new(),
        }
    }

    /// Adds a measured value.
    pub fn evidence(mut self, name: &str, value: impl Serialize) -> Self {
        self.evidence.insert(
            name.to_owned(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
        self
    }

    /// Sets the action.
    pub fn action(mut self, action: impl Into<String>) -> Self {
        self.action = action.into();
        self
    }
}
