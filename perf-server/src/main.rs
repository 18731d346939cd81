//! The `perf-server` binary: `perf-server [serve]` runs the API,
//! `perf-server openapi` prints its OpenAPI document.

use std::process::ExitCode;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options: heap profiling compiled in and enabled,
/// sampling (one sample per 512 KiB allocated on average) off until
/// `POST /performance/profiling/start {"kind": "heap"}` turns it on.
#[cfg(feature = "profiling")]
#[allow(unsafe_code)] // jemalloc reads its options from this exported symbol
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"prof:true,prof_active:false,lg_prof_sample:19\0";

fn main() -> ExitCode {
    perf_server::main()
}
