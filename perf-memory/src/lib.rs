//! # perf-memory
//!
//! Memory efficiency for Rust services: what the allocator holds and why.
//! Today it reads jemalloc's statistics ([`AllocatorStats`]); pools, caches,
//! allocator tuning, profiling, leak detection and memory budgets build on it.
//!
//! Reading statistics needs the `jemalloc` feature *and* `tikv-jemallocator`
//! installed as the program's global allocator:
//!
//! ```
//! # #[cfg(feature = "jemalloc")]
//! #[global_allocator]
//! static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
//!
//! # #[cfg(feature = "jemalloc")]
//! # fn main() -> Result<(), perf_memory::Error> {
//! let block = vec![7u8; 8 << 20];
//! let stats = perf_memory::AllocatorStats::read()?;
//! assert!(stats.allocated_bytes >= 8 << 20);
//! assert!(stats.resident_bytes >= stats.active_bytes);
//! println!("fragmentation: {} bytes", stats.fragmentation_bytes);
//! # drop(block);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "jemalloc"))]
//! # fn main() {}
//! ```

mod allocator;
mod error;

pub use allocator::AllocatorStats;
pub use error::{Error, Result};
