//! Float-to-integer conversions that say what they do.
//!
//! Rust's `as` from a float to an integer saturates at the integer's bounds
//! and maps NaN to 0; these functions are that conversion, named, so a
//! reader (and `clippy::cast_possible_truncation`) sees that truncation is
//! intended: the callers round (or mean to truncate) first, and a value
//! past the type's range means "as many as the type holds".
//!
//! ```
//! use perf_core::num::{saturating_u32, saturating_u64};
//! assert_eq!(saturating_u64(2.7), 2);
//! assert_eq!(saturating_u64(-3.0), 0);
//! assert_eq!(saturating_u64(f64::NAN), 0);
//! assert_eq!(saturating_u32(1e12), u32::MAX);
//! ```
#![allow(clippy::cast_possible_truncation)]

/// `x` as a `u64`: truncated toward zero, saturating, NaN to 0.
pub fn saturating_u64(x: f64) -> u64 {
    x as u64
}

/// `x` as a `u32`: truncated toward zero, saturating, NaN to 0.
pub fn saturating_u32(x: f64) -> u32 {
    x as u32
}

/// `x` as a `usize`: truncated toward zero, saturating, NaN to 0.
pub fn saturating_usize(x: f64) -> usize {
    x as usize
}

/// `x` as an `i64`: truncated toward zero, saturating, NaN to 0.
pub fn saturating_i64(x: f64) -> i64 {
    x as i64
}

/// `x` as an `i32`: truncated toward zero, saturating, NaN to 0.
pub fn saturating_i32(x: f64) -> i32 {
    x as i32
}
