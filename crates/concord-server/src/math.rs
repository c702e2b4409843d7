//! C's `pow`, the one function concord would otherwise import from glibc's `libm.so`
//! (tokio's scheduler statistics and minijinja's `**` call it). Loading and relocating
//! that library leaves about 0.55 MiB of it resident in the server process (bench
//! `kernels_rss`); with `pow` defined here the linker resolves the calls to it and drops
//! the library. The implementation is the `libm` crate's port of musl's (< 1 ulp).

/// `pow(x, y)`: `x` raised to the power `y`, with C99's special cases.
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pow_is_libms() {
        // Calls through the exported symbol, as tokio and minijinja do.
        let pow = super::pow as extern "C" fn(f64, f64) -> f64;
        assert_eq!(pow(2.0, 10.0), 1024.0);
        assert_eq!(pow(0.75, 3.0), 0.421875);
        assert_eq!(pow(4.0, 0.5), 2.0);
        assert_eq!(pow(2.0, -1.0), 0.5);
        assert_eq!(pow(0.0, 0.0), 1.0);
        assert!(pow(-8.0, 1.0 / 3.0).is_nan());
        assert_eq!(pow(f64::INFINITY, -1.0), 0.0);
    }
}
