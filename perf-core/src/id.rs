use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

/// A time-ordered identifier (UUID v7): ids created later sort later, which
/// keeps history listings and cursors simple.
///
/// ```
/// use perf_core::Id;
/// let a = Id::new();
/// let b = Id::new();
/// assert!(a < b);
/// let parsed: Id = a.to_string().parse()?;
/// assert_eq!(parsed, a);
/// assert!("not-an-id".parse::<Id>().is_err());
/// # Ok::<(), perf_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = Uuid))]
pub struct Id(Uuid);

impl Id {
    /// A new id for the current time.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for Id {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for Id {
    fn from(value: Uuid) -> Self {
        Self(value)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for Id {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| Error::InvalidId {
                input: s.to_owned(),
            })
    }
}
