//! Whether the running kernel can confine processes with Landlock.

use serde::Serialize;

/// The oldest Landlock ABI concord confines with: ABI 3 (Linux 6.2) is the first that
/// controls truncation; below it a confined process could still truncate any file.
pub const MIN_ABI: u32 = 3;

/// The first ABI that restricts TCP bind and connect (Linux 6.7).
pub const NET_ABI: u32 = 4;

/// The first ABI with scopes (Linux 6.12): signals and abstract Unix sockets stay within a
/// process's Landlock domain.
pub const SCOPE_ABI: u32 = 6;

/// What the running kernel offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LandlockStatus {
    /// The kernel's Landlock ABI version (0 when Landlock is missing or disabled).
    pub abi: u32,
    /// Whether concord can confine processes (`abi >= MIN_ABI`).
    pub available: bool,
    /// Whether TCP rules can be enforced (`abi >= NET_ABI`).
    pub network: bool,
    /// In words, for logs and `/api/status`.
    pub detail: String,
}

/// Ask the kernel (one `landlock_create_ruleset` call with the version flag).
pub fn status() -> LandlockStatus {
    let (abi, detail) = probe();
    LandlockStatus {
        abi,
        available: abi >= MIN_ABI,
        network: abi >= NET_ABI,
        detail: match detail {
            Some(why) => why,
            None if abi >= MIN_ABI => format!("Landlock ABI {abi}"),
            None => format!(
                "Landlock ABI {abi} is too old (concord needs ABI {MIN_ABI}, Linux 6.2 or later)"
            ),
        },
    }
}

#[cfg(target_os = "linux")]
fn probe() -> (u32, Option<String>) {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer, size 0 and the version flag the call only
    // returns a number; it creates nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v >= 0 {
        return (v as u32, None);
    }
    let err = std::io::Error::last_os_error();
    let why = match err.raw_os_error() {
        Some(libc::ENOSYS) => "Landlock is not built into this kernel".to_string(),
        Some(libc::EOPNOTSUPP) => {
            "Landlock is built in but not enabled (add landlock to the lsm= boot parameter)"
                .to_string()
        }
        _ => format!("Landlock probe failed: {err}"),
    };
    (0, Some(why))
}

#[cfg(not(target_os = "linux"))]
fn probe() -> (u32, Option<String>) {
    (0, Some("Landlock exists only on Linux".to_string()))
}
