//! CPU profiles (pprof-rs: a SIGPROF sampler) and heap profiles (jemalloc's
//! sampling profiler through jemalloc_pprof), each as a pprof protobuf and a
//! flamegraph SVG. One profile at a time: running both at once is known to
//! deadlock, so a second start gets [`Error::ProfilerBusy`].
//!
//! Heap profiles need jemalloc built with profiling (this feature turns it
//! on) and started with `prof:true`; a binary sets that with
//!
//! ```ignore
//! #[unsafe(export_name = "_rjem_malloc_conf")]
//! pub static MALLOC_CONF: &[u8] = b"prof:true,prof_active:false,lg_prof_sample:19\0";
//! ```
//!
//! (or the environment variable `_RJEM_MALLOC_CONF`). Sampling stays off
//! until a heap profile starts.

use std::sync::Mutex;
use std::time::Instant;

use perf_core::{Id, unix_millis};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What to profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProfileKind {
    /// Where the CPU time goes (stack samples at a frequency).
    Cpu,
    /// Where live memory was allocated (sampled allocations).
    Heap,
}

impl std::fmt::Display for ProfileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Heap => "heap",
        })
    }
}

/// A request to start profiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileRequest {
    /// `cpu` or `heap`.
    pub kind: ProfileKind,
    /// Stop by itself after this many seconds (1 to 600); without it, runs
    /// until stopped (at most 600 s when a server enforces it).
    pub duration_s: Option<u64>,
    /// CPU samples per second (1 to 1000, default 99; the kernel tick caps
    /// what is really taken, about 250 here). Not for heap profiles.
    pub frequency_hz: Option<u32>,
}

/// The longest profile.
pub const MAX_PROFILE_S: u64 = 600;

impl ProfileRequest {
    /// Checks the fields; the error names the bad one and the range.
    pub fn validate(&self) -> Result<()> {
        if let Some(d) = self.duration_s
            && !(1..=MAX_PROFILE_S).contains(&d)
        {
            return Err(Error::Invalid {
                field: "duration_s",
                message: format!("{d} is outside the allowed range 1 to {MAX_PROFILE_S}"),
            });
        }
        match (self.kind, self.frequency_hz) {
            (ProfileKind::Heap, Some(_)) => Err(Error::Invalid {
                field: "frequency_hz",
                message: "applies to cpu profiles only (heap profiles sample by bytes)".to_owned(),
            }),
            (ProfileKind::Cpu, Some(f)) if !(1..=1000).contains(&f) => Err(Error::Invalid {
                field: "frequency_hz",
                message: format!("{f} is outside the allowed range 1 to 1000"),
            }),
            _ => Ok(()),
        }
    }
}

/// A profile being taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProfileSession {
    /// Its id.
    pub id: Id,
    /// What it profiles.
    pub kind: ProfileKind,
    /// When it started (Unix ms).
    pub started_ms: u64,
    /// CPU sampling frequency (cpu only).
    pub frequency_hz: Option<u32>,
    /// When it stops by itself, if it does.
    pub duration_s: Option<u64>,
}

/// A finished profile.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The session it came from.
    pub session: ProfileSession,
    /// How long it ran, ms.
    pub duration_ms: u64,
    /// pprof protobuf (`go tool pprof` reads it).
    pub pprof: Vec<u8>,
    /// Flamegraph, SVG.
    pub flamegraph_svg: Vec<u8>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("session", &self.session)
            .field("duration_ms", &self.duration_ms)
            .field("pprof_bytes", &self.pprof.len())
            .field("flamegraph_svg_bytes", &self.flamegraph_svg.len())
            .finish()
    }
}

enum Running {
    Cpu(Box<pprof::ProfilerGuard<'static>>),
    Heap,
}

struct Active {
    session: ProfileSession,
    started: Instant,
    running: Running,
}

/// Takes one profile at a time.
///
/// ```no_run
/// # async fn demo() -> Result<(), perf_memory::Error> {
/// use perf_memory::{Profiler, ProfileKind, ProfileRequest};
/// let profiler = Profiler::new();
/// let session = profiler
///     .start(ProfileRequest { kind: ProfileKind::Cpu, duration_s: None, frequency_hz: Some(250) })
///     .await?;
/// // ... the work to look at ...
/// let profile = profiler.stop(&session.id).await?;
/// std::fs::write("cpu.svg", &profile.flamegraph_svg).ok();
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct Profiler {
    active: Mutex<Option<Active>>,
}

impl std::fmt::Debug for Profiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiler")
            .field("running", &self.running())
            .finish()
    }
}

fn profiling_error(e: impl std::fmt::Display) -> Error {
    Error::Profiling(e.to_string())
}

/// The flamegraph, or when nothing was sampled (inferno refuses an empty
/// profile) an SVG that says so.
fn flamegraph_or_note(
    kind: ProfileKind,
    made: std::result::Result<Vec<u8>, String>,
) -> Result<Vec<u8>> {
    match made {
        Ok(svg) => Ok(svg),
        Err(e) if e.contains("No stack counts") => {
            let why = match kind {
                ProfileKind::Cpu => "the process used no CPU time while the profile ran",
                ProfileKind::Heap => {
                    "no allocation was sampled (about one sample per 2^lg_prof_sample bytes allocated)"
                }
            };
            Ok(format!(
                "<?xml version=\"1.0\" standalone=\"no\"?><svg version=\"1.1\" width=\"1200\" height=\"60\" xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"30\" font-family=\"Verdana\" font-size=\"14\">No samples: {why}.</text></svg>"
            )
            .into_bytes())
        }
        Err(e) => Err(Error::Profiling(e)),
    }
}

impl Profiler {
    /// A profiler with nothing running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether heap profiles can be taken (jemalloc started with `prof:true`).
    pub fn heap_available() -> bool {
        jemalloc_pprof::PROF_CTL.is_some()
    }

    /// The profile being taken, if any.
    pub fn running(&self) -> Option<ProfileSession> {
        self.active
            .lock()
            .ok()
            .and_then(|a| a.as_ref().map(|a| a.session.clone()))
    }

    /// Starts a profile; [`Error::ProfilerBusy`] when one is running.
    pub async fn start(&self, request: ProfileRequest) -> Result<ProfileSession> {
        request.validate()?;
        let session = ProfileSession {
            id: Id::new(),
            kind: request.kind,
            started_ms: unix_millis(),
            frequency_hz: match request.kind {
                ProfileKind::Cpu => Some(request.frequency_hz.unwrap_or(99)),
                ProfileKind::Heap => None,
            },
            duration_s: request.duration_s,
        };
        // Claim the slot first so two starts cannot both pass.
        {
            let mut slot = self
                .active
                .lock()
                .map_err(|_| profiling_error("profiler state poisoned"))?;
            if let Some(a) = slot.as_ref() {
                return Err(Error::ProfilerBusy {
                    running: a.session.kind.to_string(),
                    id: a.session.id.to_string(),
                });
            }
            let running = match request.kind {
                ProfileKind::Cpu => {
                    let frequency = i32::try_from(session.frequency_hz.unwrap_or(99)).unwrap_or(99);
                    let guard = pprof::ProfilerGuardBuilder::default()
                        .frequency(frequency)
                        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
                        .build()
                        .map_err(profiling_error)?;
                    Running::Cpu(Box::new(guard))
                }
                ProfileKind::Heap => Running::Heap,
            };
            *slot = Some(Active {
                session: session.clone(),
                started: Instant::now(),
                running,
            });
        }
        if request.kind == ProfileKind::Heap {
            let activated = match jemalloc_pprof::PROF_CTL.as_ref() {
                None => Err(Error::Unsupported(
                    "heap profiling needs jemalloc started with prof:true (perf-server's default build sets it; elsewhere export _rjem_malloc_conf or set _RJEM_MALLOC_CONF=prof:true,prof_active:false)".to_owned(),
                )),
                Some(ctl) => ctl.lock().await.activate().map_err(profiling_error),
            };
            if let Err(e) = activated {
                if let Ok(mut slot) = self.active.lock() {
                    *slot = None;
                }
                return Err(e);
            }
        }
        Ok(session)
    }

    /// Stops the profile `id` and returns it.
    pub async fn stop(&self, id: &Id) -> Result<Profile> {
        let active = {
            let mut slot = self
                .active
                .lock()
                .map_err(|_| profiling_error("profiler state poisoned"))?;
            match slot.as_ref() {
                Some(a) if a.session.id == *id => slot.take(),
                Some(a) => {
                    return Err(Error::Profiling(format!(
                        "profile {id} is not running (profile {} is)",
                        a.session.id
                    )));
                }
                None => {
                    return Err(Error::Profiling(format!("profile {id} is not running")));
                }
            }
        };
        let Some(active) = active else {
            return Err(Error::Profiling(format!("profile {id} is not running")));
        };
        let duration_ms = u64::try_from(active.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (pprof, flamegraph_svg) = match active.running {
            Running::Cpu(guard) => {
                let report = guard
                    .report()
                    .frames_post_processor(readable_frames)
                    .build()
                    .map_err(profiling_error)?;
                drop(guard); // stops the sampler
                let mut svg = Vec::new();
                let made = report
                    .flamegraph(&mut svg)
                    .map(|()| svg)
                    .map_err(|e| e.to_string());
                let svg = flamegraph_or_note(ProfileKind::Cpu, made)?;
                let proto = report.pprof().map_err(profiling_error)?;
                let bytes =
                    pprof::protos::Message::write_to_bytes(&proto).map_err(profiling_error)?;
                drop((report, proto));
                // Symbolizing parsed the binary's debug info into a global
                // cache that is never freed: ~290 MiB for perf-server's
                // release binary, held after every profile. Free it, and give
                // the pages back.
                backtrace::clear_symbol_cache();
                let _ = crate::tuning::purge_now();
                (bytes, svg)
            }
            Running::Heap => {
                let ctl = jemalloc_pprof::PROF_CTL.as_ref().ok_or_else(|| {
                    Error::Unsupported("heap profiling is not available".to_owned())
                })?;
                let mut ctl = ctl.lock().await;
                let pprof = ctl.dump_pprof().map_err(|e| e.to_string());
                let svg = ctl.dump_flamegraph().map_err(|e| e.to_string());
                let _ = ctl.deactivate();
                (
                    pprof.map_err(Error::Profiling)?,
                    flamegraph_or_note(ProfileKind::Heap, svg)?,
                )
            }
        };
        Ok(Profile {
            session: active.session,
            duration_ms,
            pprof,
            flamegraph_svg,
        })
    }
}

/// Makes each frame's name readable: generic arguments, which in async
/// Rust nest a whole service stack into every frame
/// (`poll<actix_server::service::{impl#1}::call::{async_block_env#0}<...>>`),
/// become `<…>`; a qualified path keeps its type and trait
/// (`<Foo<…> as Service<…>>::call`). Frames that differed only in generic
/// arguments merge, as a reader of a flamegraph wants.
fn readable_frames(frames: &mut pprof::Frames) {
    for stack in &mut frames.frames {
        for symbol in stack {
            let name = readable_name(&symbol.name());
            symbol.name = Some(name.into_bytes());
        }
    }
}

/// A symbol name with its generic argument lists shortened (see
/// [`readable_frames`]): a frame's own argument list keeps its first
/// argument (the debug info names a frame `poll<Type<…>>`, and the type is
/// what tells one `poll` from another), deeper lists become `<…>`.
fn readable_name(name: &str) -> String {
    rewrite(name, 1)
}

/// `name` with argument lists nested deeper than `keep` elided.
fn rewrite(name: &str, keep: usize) -> String {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len().min(200));
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        match bytes[i] {
            // `->` is not a bracket.
            b'-' if bytes.get(i + 1) == Some(&b'>') => i += 2,
            b'<' => {
                // An unclosed list (a truncated name) is left as it is.
                let Some(end) = closing_angle(bytes, i) else {
                    break;
                };
                let inner = &name[i + 1..end - 1];
                out.push_str(&name[last..i]);
                if i == 0 || name[..i].ends_with("::") {
                    // `<T as Trait>::`: a path, not arguments.
                    out.push('<');
                    out.push_str(&rewrite(inner, keep));
                    out.push('>');
                } else if keep > 0 {
                    let (first, more) = first_argument(inner);
                    out.push('<');
                    out.push_str(&rewrite(first, keep - 1));
                    if more {
                        out.push_str(", …");
                    }
                    out.push('>');
                } else {
                    out.push_str("<…>");
                }
                i = end;
                last = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&name[last..]);
    out
}

/// The first of comma-separated arguments, and whether others follow.
fn first_argument(list: &str) -> (&str, bool) {
    let mut depth = 0i32;
    let bytes = list.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' | b'(' | b'[' => depth += 1,
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b'>' | b')' | b']' => depth -= 1,
            b',' if depth == 0 => return (list[..i].trim(), true),
            _ => {}
        }
    }
    (list.trim(), false)
}

/// The index just past the `>` that closes the `<` at `open`.
fn closing_angle(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'>') => i += 1,
            b'<' => depth += 1,
            b'>' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_names_keep_their_first_type_argument_and_lose_the_nesting() {
        assert_eq!(
            readable_name(
                "poll<actix_server::service::{impl#1}::call::{async_block_env#0}<actix_service::and_then::AndThenService<A, B>>>"
            ),
            "poll<actix_server::service::{impl#1}::call::{async_block_env#0}<…>>"
        );
        assert_eq!(
            readable_name("tokio::runtime::task::harness::poll_future<F, S>::{{closure}}"),
            "tokio::runtime::task::harness::poll_future<F, …>::{{closure}}"
        );
        assert_eq!(
            readable_name(
                "<actix_web::app_service::AppRouting<X<Y>> as actix_service::Service<Req>>::call"
            ),
            "<actix_web::app_service::AppRouting<X<…>> as actix_service::Service<Req>>::call"
        );
        assert_eq!(
            readable_name("{async_block#0}<fn(actix_web::data::Data<S>) -> Fut<T>, (A, B)>"),
            "{async_block#0}<fn(actix_web::data::Data<…>) -> Fut<…>, …>"
        );
        assert_eq!(
            readable_name("perf_server::telemetry::record"),
            "perf_server::telemetry::record"
        );
        assert_eq!(readable_name("broken<unclosed"), "broken<unclosed");
        assert_eq!(readable_name("a<b>::c<d, e<f>>"), "a<b>::c<d, …>");
        assert_eq!(readable_name(""), "");
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let ok = ProfileRequest {
            kind: ProfileKind::Cpu,
            duration_s: Some(10),
            frequency_hz: Some(250),
        };
        ok.validate().unwrap();
        for (bad, field) in [
            (
                ProfileRequest {
                    duration_s: Some(0),
                    ..ok
                },
                "duration_s",
            ),
            (
                ProfileRequest {
                    frequency_hz: Some(5000),
                    ..ok
                },
                "frequency_hz",
            ),
            (
                ProfileRequest {
                    kind: ProfileKind::Heap,
                    ..ok
                },
                "frequency_hz",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
