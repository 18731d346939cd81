//! Allocator tuning at run time: jemalloc's equivalent of a garbage
//! collector's target. Dirty pages (freed, still resident) are returned to
//! the OS after `dirty_decay_ms`, then muzzy pages (returned lazily) after
//! `muzzy_decay_ms`; background threads do that work off the request path;
//! [`purge_now`] returns everything unused at once. Shorter decay means a
//! smaller RSS and more page faults; longer, the opposite.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The longest decay time accepted: one hour.
pub const MAX_DECAY_MS: i64 = 3_600_000;

/// jemalloc settings to apply; a field left out is left as it is.
///
/// ```
/// use perf_memory::MemoryTuning;
/// let tuning = MemoryTuning::builder().dirty_decay_ms(1_000).build()?;
/// assert_eq!(tuning.dirty_decay_ms, Some(1_000));
/// let bad = MemoryTuning::builder().muzzy_decay_ms(-5).build();
/// assert!(bad.unwrap_err().to_string().contains("muzzy_decay_ms"));
/// # Ok::<(), perf_memory::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct MemoryTuning {
    /// Purge on jemalloc's background threads instead of on allocating threads.
    pub background_threads: Option<bool>,
    /// Milliseconds before dirty pages are returned (-1: never; 0: at once;
    /// at most one hour).
    pub dirty_decay_ms: Option<i64>,
    /// The same for muzzy pages.
    pub muzzy_decay_ms: Option<i64>,
}

impl MemoryTuning {
    /// Checks every field; the error names the first bad one and the range.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("dirty_decay_ms", self.dirty_decay_ms),
            ("muzzy_decay_ms", self.muzzy_decay_ms),
        ] {
            if let Some(v) = value
                && !(-1..=MAX_DECAY_MS).contains(&v)
            {
                return Err(Error::Invalid {
                    field,
                    message: format!(
                        "{v} is outside the allowed range -1 (never) to {MAX_DECAY_MS} ms"
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(feature = "jemalloc")]
mod jemalloc {
    use tikv_jemalloc_ctl::{Access, AsName, background_thread};

    use super::MemoryTuning;
    use crate::{Error, Result};

    fn fail(name: &'static str) -> impl FnOnce(tikv_jemalloc_ctl::Error) -> Error {
        move |e| Error::Allocator {
            name,
            message: e.to_string(),
        }
    }

    /// Number of arenas.
    fn arenas() -> Result<usize> {
        tikv_jemalloc_ctl::arenas::narenas::read()
            .map(|n| n as usize)
            .map_err(fail("arenas.narenas"))
    }

    /// Sets `arena.<i>.<what>` on every initialized arena, and the default
    /// for arenas created later.
    fn set_decay(what: &'static str, default: &'static [u8], value: isize) -> Result<()> {
        default.name().write(value).map_err(fail(what))?;
        let per_arena: &'static [u8] = if what == "dirty_decay_ms" {
            b"arena.0.dirty_decay_ms\0"
        } else {
            b"arena.0.muzzy_decay_ms\0"
        };
        let mut mib = per_arena.name().mib::<[usize; 3]>().map_err(fail(what))?;
        for i in 0..arenas()? {
            mib[1] = i;
            // Arenas never initialized answer EFAULT: nothing to tune there.
            let _ = mib.write(value);
        }
        Ok(())
    }

    pub(super) fn read_decay(what: &'static str, name: &'static [u8]) -> Result<i64> {
        let v: isize = name.name().read().map_err(fail(what))?;
        Ok(v as i64)
    }

    pub(super) fn apply(tuning: &MemoryTuning) -> Result<()> {
        tuning.validate()?;
        if let Some(on) = tuning.background_threads {
            background_thread::write(on).map_err(fail("background_thread"))?;
        }
        if let Some(ms) = tuning.dirty_decay_ms {
            set_decay(
                "dirty_decay_ms",
                b"arenas.dirty_decay_ms\0",
                isize::try_from(ms).unwrap_or(isize::MAX),
            )?;
        }
        if let Some(ms) = tuning.muzzy_decay_ms {
            set_decay(
                "muzzy_decay_ms",
                b"arenas.muzzy_decay_ms\0",
                isize::try_from(ms).unwrap_or(isize::MAX),
            )?;
        }
        Ok(())
    }

    pub(super) fn current() -> Result<MemoryTuning> {
        Ok(MemoryTuning {
            background_threads: Some(background_thread::read().map_err(fail("background_thread"))?),
            dirty_decay_ms: Some(read_decay("dirty_decay_ms", b"arenas.dirty_decay_ms\0")?),
            muzzy_decay_ms: Some(read_decay("muzzy_decay_ms", b"arenas.muzzy_decay_ms\0")?),
        })
    }

    /// Returns unused dirty and muzzy pages of every arena to the OS now: a
    /// decay time of 0 purges at once, then the previous times come back.
    pub(super) fn purge_now() -> Result<()> {
        let mut dirty_mib = b"arena.0.dirty_decay_ms\0"
            .name()
            .mib::<[usize; 3]>()
            .map_err(fail("dirty_decay_ms"))?;
        let mut muzzy_mib = b"arena.0.muzzy_decay_ms\0"
            .name()
            .mib::<[usize; 3]>()
            .map_err(fail("muzzy_decay_ms"))?;
        for i in 0..arenas()? {
            dirty_mib[1] = i;
            muzzy_mib[1] = i;
            let (Ok(before_dirty), Ok(before_muzzy)) = (
                Access::<isize>::read(&dirty_mib),
                Access::<isize>::read(&muzzy_mib),
            ) else {
                continue; // an arena never initialized
            };
            let _ = dirty_mib.write(0isize);
            let _ = muzzy_mib.write(0isize);
            let _ = dirty_mib.write(before_dirty);
            let _ = muzzy_mib.write(before_muzzy);
        }
        Ok(())
    }
}

impl MemoryTuning {
    /// Applies the fields that are set to the running jemalloc (needs the
    /// `jemalloc` feature and jemalloc as the global allocator).
    pub fn apply(&self) -> Result<()> {
        #[cfg(feature = "jemalloc")]
        {
            jemalloc::apply(self)
        }
        #[cfg(not(feature = "jemalloc"))]
        {
            self.validate()?;
            Err(Error::Unsupported(
                "allocator tuning needs the `jemalloc` feature".to_owned(),
            ))
        }
    }

    /// The settings in force now, every field set.
    pub fn current() -> Result<Self> {
        #[cfg(feature = "jemalloc")]
        {
            jemalloc::current()
        }
        #[cfg(not(feature = "jemalloc"))]
        {
            Err(Error::Unsupported(
                "allocator tuning needs the `jemalloc` feature".to_owned(),
            ))
        }
    }
}

/// Returns the allocator's unused pages to the OS now (what a soft memory
/// limit does first).
pub fn purge_now() -> Result<()> {
    #[cfg(feature = "jemalloc")]
    {
        jemalloc::purge_now()
    }
    #[cfg(not(feature = "jemalloc"))]
    {
        Err(Error::Unsupported(
            "purging needs the `jemalloc` feature".to_owned(),
        ))
    }
}

perf_core::config_builder! {
    /// Builds a [`MemoryTuning`]; unset options keep jemalloc's own.
    MemoryTuning => MemoryTuningBuilder, Error {
        background_threads: Option<bool> => into,
        dirty_decay_ms: Option<i64> => into,
        muzzy_decay_ms: Option<i64> => into,
    }
}
