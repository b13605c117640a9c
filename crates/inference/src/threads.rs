//! How many CPU threads the kernels use.
//!
//! candle reads `RAYON_NUM_THREADS` (falling back to counting physical cores through
//! `/proc/cpuinfo`) on every float matmul; fixing the value once at start-up removes that
//! cost from each decode step and gives one knob for both of candle's pools.

/// Sets `RAYON_NUM_THREADS` and `CANDLE_NUM_THREADS` to `threads`, or to candle's default
/// (physical cores) when `None` and neither is set; returns the count in effect.
///
/// Call it before any other thread starts (it writes the process environment).
pub fn configure_cpu_threads(threads: Option<usize>) -> usize {
    let n = match threads {
        Some(n) => n.max(1),
        None => candle_core::utils::get_num_threads(),
    };
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    n
}
