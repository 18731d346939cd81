//! Small statistics every crate needs the same way.

/// The median of `values`, sorting them in place (the mean of the two
/// middle values for an even count; 0 for none). NaN sorts last, as
/// `f64::total_cmp` orders it.
///
/// ```
/// let mut v = [5.0, 1.0, 3.0, 2.0];
/// assert_eq!(perf_core::median(&mut v), 2.5);
/// assert_eq!(perf_core::median(&mut [7.0]), 7.0);
/// assert_eq!(perf_core::median(&mut []), 0.0);
/// ```
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}
