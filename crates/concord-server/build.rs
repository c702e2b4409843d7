//! Link options of the `concord` binary.
//!
//! Packed relative relocations (`-z pack-relative-relocs`, DT_RELR): a position-independent
//! executable carries one relocation per pointer in its read-only data (about 40,000 here:
//! vtables, string tables), which the dynamic loader reads at start-up and which then stay
//! resident, 1 MiB of them; packed, they take 20 KiB. The loader must understand them (glibc
//! 2.36 and later), so they are used only when building on such a glibc for the same machine
//! type: the binary needs the build machine's glibc version anyway.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let native = var("TARGET") == var("HOST");
    let glibc = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if native && glibc && host_glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bin=concord=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the glibc this build script runs on is at least `major.minor`.
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    glibc_version().is_some_and(|v| v >= (major, minor))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_version() -> Option<(u32, u32)> {
    use std::ffi::{c_char, CStr};
    extern "C" {
        fn gnu_get_libc_version() -> *const c_char;
    }
    // SAFETY: glibc returns a pointer to a static NUL-terminated string such as "2.36".
    let text = unsafe { CStr::from_ptr(gnu_get_libc_version()) }
        .to_str()
        .ok()?;
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_version() -> Option<(u32, u32)> {
    None
}
