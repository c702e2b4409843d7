//! How the server's heap gives memory back to the system (glibc's malloc).
//!
//! By default glibc gives threads their own arenas (up to eight per core) and, each time a
//! large block is freed, raises the threshold below which an arena keeps its free memory
//! (up to 64 MiB). A burst of directory listings on tokio's blocking threads then leaves
//! each of 16 arenas holding ~6 MiB it no longer uses (bench: 1,000-entry listings from 32
//! clients and a 10,000-entry one take an idle server from 13 to 112 MiB, for good).
//!
//! Instead the server uses one arena, with fixed thresholds generous enough that the
//! buffers of a 10,000-entry listing or a 5 MB notebook stay mapped from one request to the
//! next (no page faults per request), and a task hands free memory back every
//! [`TRIM_INTERVAL`], so what a burst used is returned once it is over.

use std::time::Duration;

/// How often free heap memory is returned to the system.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Blocks at least this large get their own mapping, returned when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 8 << 20;

/// Free memory at the top of the heap beyond this is returned at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 16 << 20;

/// Configure the allocator; `false` if it refused a setting (its default then stays,
/// which is harmless). Call before any thread is started.
pub fn configure() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before other threads
    // exist.
    unsafe {
        // Threads share one heap: free memory anywhere is reusable by any thread, and
        // `release_free_memory` can return all of it (it cannot shrink other arenas' tops).
        let one_arena = libc::mallopt(libc::M_ARENA_MAX, 1) == 1;
        // Fixed thresholds (setting them turns glibc's sliding ones off).
        let mmap = libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1;
        let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1;
        one_arena && mmap && trim
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}

/// Return the heap's free pages to the system (they are mapped again, zeroed, when
/// reused). Takes the heap lock for a moment: well under a millisecond for a heap of tens
/// of MiB.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases pages of free chunks; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Release free memory every [`TRIM_INTERVAL`] for as long as the runtime runs.
pub fn spawn_periodic_release() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(TRIM_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            release_free_memory();
        }
    });
}
